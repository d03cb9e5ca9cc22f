"""``embedlab finetune --kind cross-encoder``: train a re-ranker for a first stage and judge the pipeline.

Same steps as the bi-encoder run (:mod:`embedlab.train.run`: output folder, training data,
leakage check, dev split, best checkpoint, card), with the first stage in the base model's
place wherever it ranks:

1. the first stage (``--first``, any pipeline string: ``bm25``, a bi-encoder, ``bm25 +
   all-MiniLM-L6-v2``) ranks the training passage pool for every training query, to depth
   max(mining window end, ``rerank_depth``);
2. hard negatives are mined from that ranking (:func:`embedlab.train.mining.mine_from_run`:
   the same rank window, margin and optional cross-encoder filter, the same audit);
3. dev queries (carved by :func:`embedlab.train.run.split_dev`) keep their first-stage top
   ``rerank_depth``; the dev score is NDCG@10 of those candidates re-ranked by the model;
4. verdict through the eval core on the held-out test split: ``FIRST`` against
   ``FIRST >> FOLDER@DEPTH`` (:func:`embedlab.train.verdict.compare_on_test`, paired test).

One process: the cross-encoder trains on one device (no torchrun data parallelism yet).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from embedlab import settings
from embedlab.atomic import atomic_dir
from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Document
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.resolve import resolve_model
from embedlab.errors import EmbedlabError
from embedlab.search.pipeline import PipelineSpec, Rerank, parse_pipeline
from embedlab.train.cross import CROSS_LOSSES, RerankDev, load_cross_encoder, train_cross_encoder
from embedlab.train.data import TrainingSet
from embedlab.train.distributed import Cluster
from embedlab.train.loop import DEV_METRIC
from embedlab.train.mining import MiningAudit, mine_from_run
from embedlab.train.verdict import compare_on_test

if TYPE_CHECKING:
    from embedlab.train.run import FinetuneResult, FinetuneSpec, _Timer

log = logging.getLogger(__name__)
DEFAULT_FIRST = "bm25"


def first_stage(spec: FinetuneSpec) -> PipelineSpec:
    first = parse_pipeline(spec.first or DEFAULT_FIRST)
    if first.rerank:
        raise EmbedlabError(f"--first must be a first stage without '>>' re-ranking, not {spec.first!r}")
    return first


def run_cross_finetune(spec: FinetuneSpec, *, timer: _Timer, cluster: Cluster) -> FinetuneResult:
    from embedlab.search.build import check_retrievable
    from embedlab.search.rerank import check_cross_encoder_folder
    from embedlab.train.run import finish, read_checked, split_dev

    if cluster.world > 1:
        raise EmbedlabError("cross-encoder training runs in one process", hint="run it without torchrun")
    spec.training.check(CROSS_LOSSES)
    if not DEV_METRIC.k <= spec.rerank_depth <= 1000:
        raise EmbedlabError(
            f"--rerank-depth {spec.rerank_depth} is outside {DEV_METRIC.k}..1000",
            expected=f"at least k={DEV_METRIC.k} of NDCG@{DEV_METRIC.k}, which judges the re-ranked list "
            "(a shallower re-rank cannot change most of what is measured)",
            hint="e.g. --rerank-depth 100",
        )
    first = first_stage(spec)
    check_retrievable(first)
    base = resolve_model(spec.base).path
    check_cross_encoder_folder(base, role="--base of a cross-encoder", allow_embedding=True)
    data, leakage = read_checked(spec)
    timer.lap("read")
    run = _first_stage_run(spec, data, first, depth=max(spec.mining.rank_to, spec.rerank_depth))
    mined, audit = _mine(spec, data, run)
    timer.lap("mining")
    train_set, dev_set = split_dev(mined, ratio=spec.dev_ratio, sample=0, seed=spec.training.seed)
    dev = _rerank_dev(dev_set.queries, dev_set.qrels, run, data, spec.rerank_depth) if dev_set else None
    model = load_cross_encoder(str(base), max_length=spec.training.max_length)
    result = train_cross_encoder(
        model, train_set.examples, config=spec.training, dev=dev, show_progress=spec.show_progress
    )
    timer.lap("training")
    with atomic_dir(spec.out) as work:
        model.save(str(work))
    tuned = PipelineSpec(
        first=first.first,
        fusion=first.fusion,
        rerank=(Rerank(str(spec.out.resolve()), spec.rerank_depth),),
        label=f"{first.name} >> {spec.out.name}@{spec.rerank_depth}",
    )
    verdict = compare_on_test(
        spec.test,
        base=first,
        tuned=tuned,
        split=spec.test_split,
        alpha=spec.alpha,
        cache_dir=spec.cache_dir,
        use_cache=spec.use_cache,
        latency_queries=spec.latency_queries,
        seed=spec.training.seed,
        show_progress=spec.show_progress,
    )
    timer.lap("verdict")
    return finish(spec, data, leakage, audit, result, verdict, dev, timer)


def _first_stage_run(spec: FinetuneSpec, data: TrainingSet, first: PipelineSpec, *, depth: int) -> Run:
    """The first stage's ranking of the training passage pool for every training query."""
    from embedlab.search.build import build_retriever

    cache = EmbeddingCache(spec.cache_dir or settings.cache_dir()) if spec.use_cache else None
    try:
        retriever = build_retriever(first.single if first.single is not None else first)
        stats = EncodeStats()
        retriever.index(
            (Document(doc_id, "", text) for doc_id, text in data.iter_corpus()),
            cache=cache,
            stats=stats,
            show_progress=spec.show_progress,
        )
        log.info("first stage %s ranks the pool for %d training queries", first, len(data.queries()))
        return retriever.search(data.queries(), depth, cache=cache, stats=stats)
    finally:
        if cache is not None:
            cache.close()


def _mine(spec: FinetuneSpec, data: TrainingSet, run: Run) -> tuple[TrainingSet, MiningAudit]:
    reranker = None
    if spec.mining.cross_encoder:
        from embedlab.search.rerank import load_reranker

        reranker = load_reranker(spec.mining.cross_encoder)
    return mine_from_run(data, run, config=spec.mining, reranker=reranker)


def _rerank_dev(queries, qrels, run: Run, data: TrainingSet, depth: int) -> RerankDev:
    texts = dict(data.iter_corpus())
    candidates = {q: tuple((d, texts[d]) for d, _ in run.ranking(q)[:depth]) for q in queries}
    log.info("dev split: %d queries, first-stage top %d each", len(queries), depth)
    return RerankDev(queries=dict(queries), qrels=qrels, candidates=candidates)

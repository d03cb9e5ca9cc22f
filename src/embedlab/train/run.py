"""``embedlab finetune`` as a library call: ``run_finetune(FinetuneSpec(...))``.

Order of work (each step can stop the run before the expensive ones):
output folder free -> training data and test split read and validated -> leakage check ->
dev split carved from train (by query, seeded) -> hard negatives mined with the base model
(shared embedding cache) -> training with dev NDCG@10 per epoch, best checkpoint kept ->
model folder written atomically -> base and fine-tuned evaluated on the test split ->
model card, ``finetune.json`` and ``report.html`` written (atomically) into the folder.

Dev corpus: ranking a dev query against the whole corpus every epoch would cost a full
corpus encode per epoch.  Instead the dev queries are ranked against a reduced corpus: their
positives, their mined hard negatives and a seeded random sample of ``dev_corpus_sample``
passages.  Scores are therefore higher than full-corpus scores; only their changes across
epochs are used (to pick the best checkpoint and stop early), never reported as quality.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab import __version__, settings
from embedlab.atomic import atomic_dir, atomic_write_text
from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import load_dataset
from embedlab.data.types import Qrels
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.resolve import resolve_model
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.eval.measure import hardware, library_versions
from embedlab.payloads import Environment
from embedlab.train.align import AlignConfig
from embedlab.train.data import TrainingSet, load_training_set
from embedlab.train.distributed import barrier, from_env, from_main, start, stop
from embedlab.train.guardrails import BASE_KEPT, check_curve, check_data
from embedlab.train.leakage import LeakageReport, check_leakage
from embedlab.train.loop import DevSet, TrainConfig, TrainResult, train
from embedlab.train.memory import MemoryLog, bound_allocator, budget_config, release
from embedlab.train.mining import MiningAudit, MiningConfig, mine_hard_negatives
from embedlab.train.verdict import Verdict, compare_on_test

if TYPE_CHECKING:
    from embedlab.train.cross import RerankDev

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneSpec:
    base: str
    train: str
    test: str
    out: Path
    train_format: str = "auto"
    train_split: str = "train"
    test_split: str = "test"
    training: TrainConfig = field(default_factory=TrainConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    dev_ratio: float = 0.1
    dev_corpus_sample: int = 250
    allow_leakage: bool = False
    drop_leaked: bool = False
    leakage_threshold: float = 0.8
    alpha: float = 0.05
    use_cache: bool = True
    cache_dir: Path | None = None
    latency_queries: int = 100
    show_progress: bool = False
    kind: str = "bi-encoder"  # or "cross-encoder" (see embedlab.train.cross_run)
    first: str | None = None  # cross-encoder: the first stage that mines, feeds dev and the verdict
    rerank_depth: int = 100  # cross-encoder: candidates re-ranked for dev and verdict
    align: AlignConfig = field(default_factory=AlignConfig)  # image-text (see embedlab.train.image_text_run)

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["out"], out["cache_dir"] = str(self.out), None if self.cache_dir is None else str(self.cache_dir)
        return out


@dataclass(frozen=True)
class FinetuneResult:
    spec: FinetuneSpec
    out: Path
    data: dict[str, object]
    leakage: LeakageReport
    audit: MiningAudit
    training: TrainResult
    verdict: Verdict
    dev_queries: int
    seconds: dict[str, float]
    environment: Environment
    warnings: tuple[str, ...] = ()  # degenerate data or training (train.guardrails), said in the card
    memory: dict[str, object] = field(default_factory=dict)  # peak RSS per phase (train.memory)


KINDS = ("bi-encoder", "cross-encoder", "image-text")


def read_checked(spec: FinetuneSpec) -> tuple[TrainingSet, LeakageReport]:
    """Options checked, training data and test split read, leakage handled (drop, allow or stop)."""
    spec.mining.check()
    if not 0 <= spec.dev_ratio < 1:
        raise EmbedlabError("--dev-ratio must be in [0, 1)", found=str(spec.dev_ratio))
    data = load_training_set(spec.train, format=spec.train_format, split=spec.train_split)
    test = load_dataset(spec.test, split=spec.test_split)
    leakage = check_leakage(data.queries(), test.queries, threshold=spec.leakage_threshold, check_ids=data.given_ids)
    if not leakage.clean and spec.drop_leaked:
        leaked = {o.train_id for o in leakage.overlaps}
        data = data.subset(set(data.queries()) - leaked)
        if not data.examples:
            raise EmbedlabError(f"leakage: every training query overlaps the test queries: {leakage.summary()}")
        log.warning("dropped %d leaked training queries (--drop-leaked): %s", len(leaked), leakage.summary())
    elif not leakage.clean:
        if not spec.allow_leakage:
            raise EmbedlabError(
                f"leakage: {leakage.summary()}",
                hint="pass --drop-leaked to train without these queries, "
                "or --allow-leakage to train anyway (the verdict is then not trustworthy)",
            )
        log.warning("training despite leakage (--allow-leakage): %s", leakage.summary())
    return data, leakage


def run_finetune(spec: FinetuneSpec) -> FinetuneResult | None:
    """The whole run; under torchrun, ranks other than 0 only train and return None (rank 0
    writes the model and judges it)."""
    timer = _Timer()
    bound_allocator()  # before the first large tensor: see train.memory
    memory = MemoryLog()
    cluster = from_env()
    if cluster.main:  # only rank 0 writes --out; another rank checking it would race rank 0's probe file
        _check_out(spec.out)
    if spec.kind not in KINDS:
        raise EmbedlabError(f"unknown --kind {spec.kind!r}", expected=" or ".join(KINDS))
    if spec.kind == "cross-encoder":
        from embedlab.train.cross_run import run_cross_finetune

        return run_cross_finetune(spec, timer=timer, cluster=cluster)
    if spec.kind == "image-text":
        from embedlab.train.image_text_run import run_image_text_finetune

        if cluster.world > 1:
            raise EmbedlabError("image-text training runs in one process", hint="run it without torchrun")
        return run_image_text_finetune(spec, timer=timer)
    spec.training.check()
    data, leakage = read_checked(spec)
    warnings = check_data(pairs=len(data.examples), queries=len(data.queries()), dev_ratio=spec.dev_ratio)
    timer.lap("read")
    memory.mark("data")
    start(cluster)
    base_spec = ModelSpec(model=spec.base)
    mined_and_audit = _mine(spec, data, base_spec) if cluster.main else None
    mined, audit = from_main(mined_and_audit, cluster)  # every process trains on rank 0's examples
    timer.lap("mining")
    release()  # the base model's encoder and the mined corpus vectors are gone: give them back
    memory.mark("mining")
    train_set, dev = split_dev(mined, ratio=spec.dev_ratio, sample=spec.dev_corpus_sample, seed=spec.training.seed)
    del mined, mined_and_audit
    model = _load_model(spec.base)
    per_example = max((len(e.texts()) for e in train_set.examples), default=2)
    training, plan = budget_config(spec.training, model, texts_per_example=per_example)
    spec = replace(spec, training=training)
    memory.mark("model load")
    result = train(
        model,
        train_set.examples,
        config=spec.training,
        dev=dev,
        show_progress=spec.show_progress and cluster.main,
        cluster=cluster,
        on_epoch=lambda point: memory.mark_first("dev evaluation (epoch 0)"),
    )
    barrier(cluster)
    stop(cluster)
    if not cluster.main:
        return None
    timer.lap("training")
    memory.mark("training")
    warnings += check_curve(result.curve, best_epoch=result.best_epoch)
    with atomic_dir(spec.out) as work:
        model.save(str(work), create_model_card=False)
    del model, train_set  # the verdict reloads the saved folder: nothing of training is kept alive
    release()
    memory.mark("export")
    verdict = compare_on_test(
        spec.test,
        base=base_spec,
        tuned=ModelSpec(model=str(spec.out.resolve()), label=spec.out.name),
        split=spec.test_split,
        alpha=spec.alpha,
        cache_dir=spec.cache_dir,
        use_cache=spec.use_cache,
        latency_queries=spec.latency_queries,
        seed=spec.training.seed,
        show_progress=spec.show_progress,
    )
    if result.best_epoch == 0:
        verdict = replace(verdict, note=BASE_KEPT)
    timer.lap("verdict")
    memory.mark("verdict")
    record = memory.as_dict() | ({"plan": plan.__dict__} if plan is not None else {})
    return finish(spec, data, leakage, audit, result, verdict, dev, timer, warnings=warnings, memory=record)


def finish(
    spec: FinetuneSpec,
    data: TrainingSet,
    leakage: LeakageReport,
    audit: MiningAudit,
    result: TrainResult,
    verdict: Verdict,
    dev: DevSet | RerankDev | None,
    timer: _Timer,
    *,
    warnings: Sequence[str] = (),
    memory: dict[str, object] | None = None,
) -> FinetuneResult:
    """The result, with the model card, ``report.html`` and ``finetune.json`` written into the folder."""
    from embedlab.train.card import render_card, result_json
    from embedlab.train.report import render_report

    outcome = FinetuneResult(
        spec=spec,
        out=spec.out,
        data=data.manifest(),
        leakage=leakage,
        audit=audit,
        training=result,
        verdict=verdict,
        dev_queries=0 if dev is None else len(dev.queries),
        seconds=timer.laps,
        warnings=tuple(warnings),
        memory=memory or {},
        environment={
            "embedlab": __version__,
            "libraries": library_versions(),
            "hardware": hardware(),
            "seed": spec.training.seed,
        },
    )
    atomic_write_text(spec.out / "README.md", render_card(outcome))
    atomic_write_text(spec.out / "report.html", render_report(outcome))
    atomic_write_text(spec.out / "finetune.json", result_json(outcome))
    return outcome


def _mine(spec: FinetuneSpec, data: TrainingSet, base_spec: ModelSpec) -> tuple[TrainingSet, MiningAudit]:
    cache = EmbeddingCache(spec.cache_dir or settings.cache_dir()) if spec.use_cache else None
    try:
        reranker = None
        if spec.mining.cross_encoder:
            from embedlab.search.rerank import load_reranker

            reranker = load_reranker(spec.mining.cross_encoder)
        return mine_hard_negatives(
            data,
            load_encoder(base_spec),
            config=spec.mining,
            cache=cache,
            reranker=reranker,
            show_progress=spec.show_progress,
        )
    finally:
        if cache is not None:
            cache.close()


def split_dev(data: TrainingSet, *, ratio: float, sample: int, seed: int) -> tuple[TrainingSet, DevSet | None]:
    """Carve ``ratio`` of the training queries (seeded) into a dev set ranked against a reduced
    corpus (see the module docstring); no dev set when that rounds to no query."""
    query_ids = sorted(data.queries())
    count = round(len(query_ids) * ratio)
    if count == 0 or count == len(query_ids):
        return data, None
    dev_ids = set(random.Random(seed).sample(query_ids, count))
    dev_examples = [e for e in data.examples if e.query_id in dev_ids]
    texts: dict[str, str] = {}
    judgments: dict[str, dict[str, int]] = {}
    for e in dev_examples:
        texts[e.positive_id] = e.positive
        texts.update(zip(e.negative_ids, e.negatives, strict=True))
        judgments.setdefault(e.query_id, {})[e.positive_id] = 1
    pool = [doc_id for doc_id, _ in data.iter_corpus()]
    wanted = set(random.Random(seed + 1).sample(pool, min(sample, len(pool))))
    for doc_id, text in data.iter_corpus():
        if doc_id in wanted:
            texts.setdefault(doc_id, text)
    dev = DevSet(
        queries={e.query_id: e.query for e in dev_examples},
        qrels=Qrels(judgments),
        doc_ids=tuple(texts),
        doc_texts=tuple(texts.values()),
    )
    log.info("dev split: %d queries, reduced corpus of %d passages", len(dev.queries), len(texts))
    return data.subset(set(query_ids) - dev_ids), dev


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EmbedlabError(
            "output folder already exists and is not empty", path=out, hint="choose another --out or remove the folder"
        )
    from embedlab.output import check_output_folder

    check_output_folder(out)


def _load_model(name: str):
    from transformers.utils import logging as hf_logging

    from embedlab.train.loop import pick_device

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbedlabError(
            "fine-tuning needs sentence-transformers", hint="pip install sentence-transformers"
        ) from None
    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(resolve_model(name).path), device=pick_device())


class _Timer:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.laps["total"] = now - self.start
        self.last = now

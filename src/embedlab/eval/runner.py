"""``embedlab eval``: every model on every dataset, with quality, speed and size measured.

For each (dataset, model): build the retriever (timed as *load*, reported apart),
index the corpus through the embedding cache (docs/s), answer all judged queries
(a ``Run``), score it, probe single-query latency (encode + search, uncached), and
record sizes and memory.  A model that fails is reported and the others still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embedlab import __version__, settings
from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Dataset, load_dataset
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import PairedComparison
from embedlab.eval.evaluate import EvalResult, evaluate
from embedlab.eval.measure import current_rss_bytes, hardware, latency_probe, library_versions, peak_rss_bytes
from embedlab.eval.metrics import MetricSpec
from embedlab.eval.versus import versus_best
from embedlab.payloads import CorpusThroughput, DatasetManifest, Environment, Measurements
from embedlab.search.build import build_retriever, check_retrievable
from embedlab.search.pipeline import PipelineSpec, spec_record
from embedlab.search.retriever import Retriever

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSpec:
    datasets: tuple[str, ...]
    models: tuple[ModelSpec | PipelineSpec, ...]
    metrics: tuple[MetricSpec, ...]
    split: str = "test"
    ignore_identical_ids: bool = False
    use_cache: bool = True
    cache_dir: Path | None = None
    latency_queries: int = 100
    latency_repeats: int = 1  # --repeat: probe latency N times, keep the quietest (eval.measure)
    latency_wait_quiet_s: float = 0.0  # --wait-quiet: wait up to S seconds for a quiet machine first
    seed: int = 0
    show_progress: bool = False

    @property
    def depth(self) -> int:
        """How many results to retrieve per query: the largest metric cutoff."""
        return max(m.k for m in self.metrics)


@dataclass(frozen=True)
class ModelResult:
    dataset: str
    model: str
    spec: dict[str, object]
    scores: dict[str, float] = field(default_factory=dict)
    evaluation: EvalResult | None = None
    run: Run | None = None
    fingerprint: dict[str, object] = field(default_factory=dict)
    measurements: Measurements | None = None  # None: the model failed (``error``)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def measured(self) -> Measurements:
        """The measurements of a result that finished; a failed one has none (check ``ok`` first)."""
        if self.measurements is None:
            raise RuntimeError(f"{self.model} on {self.dataset} has no measurements: {self.error}")
        return self.measurements


@dataclass(frozen=True)
class EvalReport:
    spec: EvalSpec
    datasets: dict[str, DatasetManifest]
    results: list[ModelResult]
    environment: Environment
    # per dataset, each model against the best (eval.versus); empty when a dataset has one model
    comparisons: dict[str, list[PairedComparison]] = field(default_factory=dict)


def run_eval(spec: EvalSpec, *, on_result: Callable[[ModelResult], None] | None = None) -> EvalReport:
    datasets: dict[str, Dataset] = {}
    for name in spec.datasets:  # load and validate every dataset before any model runs
        dataset = load_dataset(name, split=spec.split)
        if dataset.name in datasets:
            raise EmbedlabError(f"two datasets are named {dataset.name!r}", hint="rename one of the folders")
        datasets[dataset.name] = dataset
    for model in spec.models:  # a misspelt model name stops the run before any work
        check_retrievable(model)
    cache = EmbeddingCache(spec.cache_dir or settings.cache_dir()) if spec.use_cache else None
    results: list[ModelResult] = []
    try:
        for dataset in datasets.values():
            for model in spec.models:
                result = _evaluate_model(dataset, model, spec, cache)
                results.append(result)
                if on_result is not None:
                    on_result(result)
    finally:
        if cache is not None:
            cache.close()
    environment: Environment = {
        "embedlab": __version__,
        "libraries": library_versions(),
        "hardware": hardware(),
        "seed": spec.seed,
        "cache": str(cache.path) if cache is not None else None,
    }
    return EvalReport(
        spec=spec,
        datasets={k: v.manifest() for k, v in datasets.items()},
        results=results,
        environment=environment,
        comparisons=versus_best(results, spec.metrics, seed=spec.seed),
    )


def _evaluate_model(
    dataset: Dataset, model: ModelSpec | PipelineSpec, spec: EvalSpec, cache: EmbeddingCache | None
) -> ModelResult:
    log.info("%s on %s", model.name, dataset.name)
    try:
        return _measure(dataset, model, spec, cache)
    except EmbedlabError as err:
        log.error("%s on %s failed: %s", model.name, dataset.name, err.one_line())
        return ModelResult(dataset=dataset.name, model=model.name, spec=spec_record(model), error=err.one_line())


def _measure(
    dataset: Dataset, model: ModelSpec | PipelineSpec, spec: EvalSpec, cache: EmbeddingCache | None
) -> ModelResult:
    started = time.perf_counter()
    retriever = build_retriever(model)
    load_s = time.perf_counter() - started
    check_modalities(retriever, dataset, model.name)

    corpus_stats = EncodeStats()
    started = time.perf_counter()
    retriever.index(dataset.iter_documents(), cache=cache, stats=corpus_stats, show_progress=spec.show_progress)
    index_s = time.perf_counter() - started
    rss_after_index = current_rss_bytes()

    query_stats = EncodeStats()
    started = time.perf_counter()
    depth = spec.depth + (1 if spec.ignore_identical_ids else 0)
    run = _search_all(retriever, dataset, depth, cache=cache, stats=query_stats)
    search_s = time.perf_counter() - started
    if spec.ignore_identical_ids:
        run = drop_identical_ids(run, spec.depth)
    evaluation = evaluate(run, dataset.qrels, spec.metrics)

    by_image = bool(dataset.query_images) and len(dataset.query_images) == len(dataset.queries)
    latency = latency_probe(
        (lambda path: retriever.search_image_one(Path(path), 10))
        if by_image
        else (lambda text: retriever.search_one(text, 10)),
        [str(p) for p in dataset.query_images.values()] if by_image else _text_queries(dataset),
        samples=spec.latency_queries,
        seed=spec.seed,
        repeat=spec.latency_repeats,
        wait_quiet_s=spec.latency_wait_quiet_s,
    )
    latency["what"] = (
        "one image query at a time: read + decode + encode + top-10 search, no cache"
        if by_image
        else "one query at a time: encode + top-10 search, no cache"
    )
    conditions = retriever.conditions().copy()  # a fresh dict: the load goes into it
    if "machine" in latency:
        conditions["machine"] = machine = latency.pop("machine")
        if machine.get("busy"):
            log.warning(
                "machine busy while timing %s on %s (%s): its latency is inflated; "
                "rerun with --repeat N, --wait-quiet S or on a quiet machine",
                model.name,
                dataset.name,
                machine.get("busy_because"),
            )
    measurements: Measurements = {
        "load_seconds": load_s,
        "corpus": _throughput(corpus_stats, index_s, dataset.doc_count, cache),
        "queries": {
            "count": len(dataset.queries),
            "seconds": search_s,
            "encoded": query_stats.encoded,
            "cache_hits": query_stats.cache_hits,
        },
        "latency": latency,
        "size": retriever.size_info(),
        "memory": {
            "rss_after_index_bytes": rss_after_index,
            "peak_rss_bytes": peak_rss_bytes(),
            "note": "peak is the whole process so far (it includes models evaluated earlier)",
        },
        "conditions": conditions,
    }
    return ModelResult(
        dataset=dataset.name,
        model=model.name,
        spec=spec_record(model),
        scores=evaluation.mean,
        evaluation=evaluation,
        run=run,
        fingerprint=retriever.describe(),
        measurements=measurements,
    )


def check_modalities(retriever: Retriever, dataset: Dataset, model: str) -> None:
    """A model that cannot read what the task holds (images for a text model, text for an image
    backbone) is one line naming both, before anything is encoded."""
    can = retriever.modalities()
    for where, needed in dataset.modalities().items():
        missing = sorted(needed - can)
        if missing:
            raise EmbedlabError(
                f"model {model!r} cannot encode {missing[0]}s, and {dataset.name} has {missing[0]} {where}",
                expected=f"a model that encodes {' and '.join(sorted(needed))} {where}",
                hint="text: any text model; images: efficientnet-lite0, vit-s14-focus; both: a CLIP/SigLIP folder",
            )


def _text_queries(dataset: Dataset) -> list[str]:
    return [text for q, text in dataset.queries.items() if q not in dataset.query_images]


def _search_all(
    retriever: Retriever, dataset: Dataset, depth: int, *, cache: EmbeddingCache | None, stats: EncodeStats
) -> Run:
    """Text queries through ``search``, image queries through ``search_images``: one run."""
    texts = {q: text for q, text in dataset.queries.items() if q not in dataset.query_images}
    if not dataset.query_images:
        return retriever.search(texts, depth, cache=cache, stats=stats)
    run = retriever.search_images(dataset.query_images, depth, cache=cache, stats=stats)
    if not texts:
        return run
    by_text = retriever.search(texts, depth, cache=cache, stats=stats)
    return Run({**run.scores, **by_text.scores}, name=run.name)


def _throughput(stats: EncodeStats, seconds: float, docs: int, cache: EmbeddingCache | None) -> CorpusThroughput:
    out: CorpusThroughput = {
        "documents": docs,
        "seconds": seconds,
        "encoded": stats.encoded,
        "cache_hits": stats.cache_hits,
        "docs_per_second": stats.encoded / seconds if stats.encoded and seconds > 0 else None,
        "source": "measured in this run",
    }
    if stats.encoded == 0 and cache is not None and stats.spaces:
        earlier = cache.measured_throughput(next(iter(stats.spaces)))
        rate = earlier["per_second"] if earlier is not None else None  # a true division: always a float
        if isinstance(rate, float):
            out["docs_per_second"] = rate
            out["source"] = "all vectors from the cache; rate measured on this host when they were encoded"
    return out


def drop_identical_ids(run: Run, depth: int) -> Run:
    """ArguAna-style corpora: a query's own id is not a valid answer."""
    kept = {}
    for query_id in run.query_ids:
        ranked = [(d, s) for d, s in run.ranking(query_id) if d != query_id][:depth]
        kept[query_id] = dict(ranked)
    return Run(kept, name=run.name)

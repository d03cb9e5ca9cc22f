"""``embedlab.evaluate``: quality, speed and size of a model on a dataset, as ``embedlab eval`` measures them.

Both functions run :func:`embedlab.eval.runner.run_eval` (the CLI's ``eval`` calls
:func:`evaluate_all`), so scores, runs, measurements and result files are the command's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.api import specs
from embedlab.data.types import Run
from embedlab.errors import EmbedlabError
from embedlab.eval.metrics import MetricSpec
from embedlab.eval.runner import EvalReport, EvalSpec, ModelResult, run_eval
from embedlab.payloads import Measurements


@dataclass(frozen=True)
class Evaluation:
    """One model on one dataset.

    ``scores``: mean per metric under MTEB's keys (``ndcg_at_10``...); ``per_query[key][query_id]``;
    ``run``: the ranked results (a :class:`~embedlab.data.types.Run`); ``measurements``: load time,
    corpus docs/s, single-query latency p50/p95, size, memory and their conditions;
    ``fingerprint``: what produced the vectors.  :meth:`save` writes the files ``embedlab eval`` writes.
    """

    model: str
    dataset: str
    scores: dict[str, float]
    per_query: dict[str, dict[str, float]] = field(repr=False)
    run: Run = field(repr=False)
    measurements: Measurements = field(repr=False)
    fingerprint: dict[str, object] = field(repr=False)
    report: EvalReport = field(repr=False)  # the whole report this result belongs to (what ``save`` writes)

    def __getitem__(self, key: str) -> float:
        """``result["ndcg_at_10"]`` (also ``result["ndcg@10"]``)."""
        return self.scores[specs.metrics(key)[0].key if "@" in key else key]

    def save(self, out: str | Path) -> list[Path]:
        """Write the result files into ``out`` as ``embedlab eval --out`` does (JSON with MTEB keys,
        per-query JSON, TREC run, report.md/html, summary.json); returns the paths written."""
        from embedlab.output import check_output_folder
        from embedlab.reports.results import write_outputs

        check_output_folder(out, option="out")
        return write_outputs(self.report, Path(out))

    @classmethod
    def from_result(cls, result: ModelResult, report: EvalReport) -> Evaluation:
        if result.error is not None or result.evaluation is None or result.run is None:
            raise EmbedlabError(f"{result.model} on {result.dataset} failed: {result.error}")
        return cls(
            model=result.model,
            dataset=result.dataset,
            scores=dict(result.scores),
            per_query=result.evaluation.per_query,
            run=result.run,
            measurements=result.measured(),
            fingerprint=result.fingerprint,
            report=report,
        )


@dataclass(frozen=True)
class EvaluationReport:
    """Every (dataset, model) of :func:`evaluate_all`: ``evaluations`` (those that finished) and
    ``failures`` (a model that fails is reported, the others still run; ``error`` says why)."""

    report: EvalReport

    @property
    def evaluations(self) -> list[Evaluation]:
        return [Evaluation.from_result(r, self.report) for r in self.report.results if r.ok]

    @property
    def failures(self) -> list[ModelResult]:
        return [r for r in self.report.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failures

    def save(self, out: str | Path) -> list[Path]:
        """The files ``embedlab eval --out`` writes, as one set; returns the paths written."""
        from embedlab.output import check_output_folder
        from embedlab.reports.results import write_outputs

        check_output_folder(out, option="out")
        return write_outputs(self.report, Path(out))


def evaluate_all(
    models: object,
    datasets: object,
    *,
    metrics: Sequence[str | MetricSpec] | str | None = None,
    split: str = "test",
    ignore_identical_ids: bool = False,
    cache: specs.Cache = True,
    latency_queries: int = 100,
    latency_repeats: int = 1,
    latency_wait_quiet_s: float = 0.0,
    seed: int = 0,
    show_progress: bool = False,
    on_result: Callable[[ModelResult], None] | None = None,
) -> EvaluationReport:
    """Every model (names, pipeline strings, specs or loaded :class:`~embedlab.api.model.Model` s)
    on every dataset (folders or names in ``$EMBEDLAB_DATA``), as ``embedlab eval -m ... -d ...``.

    Datasets and model names are checked before any work; a model that fails later is reported in
    ``failures`` and the others still run.  ``cache``: the embedding cache (True: ``$EMBEDLAB_CACHE``,
    False: none, or a folder).  ``latency_queries`` single queries are timed for p50/p95;
    ``latency_repeats`` > 1 times them that many times and keeps the quietest run (machine load);
    ``latency_wait_quiet_s`` > 0 first waits up to that long for a quiet machine.

    >>> report = evaluate_all(["bm25", "bm25:k1=1.2,b=0.75"], "scifact", metrics="ndcg@10", latency_queries=5)
    >>> [(e.model, e.dataset) for e in report.evaluations]
    [('bm25', 'scifact'), ('bm25:k1=1.2,b=0.75', 'scifact')]
    """
    use_cache, cache_dir = specs.cache_option(cache)
    spec = EvalSpec(
        datasets=specs.datasets(datasets),
        models=specs.retrievals(models),
        metrics=specs.metrics(metrics),
        split=_split(split),
        ignore_identical_ids=bool(ignore_identical_ids),
        use_cache=use_cache,
        cache_dir=cache_dir,
        latency_queries=specs.positive_int(latency_queries, name="latency_queries", minimum=0),
        latency_repeats=specs.positive_int(latency_repeats, name="latency_repeats", minimum=1),
        latency_wait_quiet_s=specs.seconds(latency_wait_quiet_s, name="latency_wait_quiet_s"),
        seed=seed,
        show_progress=show_progress,
    )
    return EvaluationReport(run_eval(spec, on_result=on_result))


def evaluate(
    model: object,
    dataset: str | Path,
    *,
    metrics: Sequence[str | MetricSpec] | str | None = None,
    split: str = "test",
    ignore_identical_ids: bool = False,
    cache: specs.Cache = True,
    latency_queries: int = 100,
    seed: int = 0,
    show_progress: bool = False,
) -> Evaluation:
    """One model or pipeline on one BEIR-format dataset: the numbers ``embedlab eval`` gives.

    ``model``: a name (``"bm25"``, ``"all-MiniLM-L6-v2:pooling=cls"``), a pipeline string
    (``"bm25 + all-MiniLM-L6-v2"``), a spec, or a loaded :class:`~embedlab.api.model.Model`
    (evaluated by its spec: the encoder is loaded again, the cache makes its vectors shared).
    ``dataset``: a folder, or a name inside ``$EMBEDLAB_DATA``.  ``metrics``: ``NAME@K``
    strings (default: the CLI's).  Only judged queries count (BEIR convention).  A model that
    fails raises :class:`~embedlab.errors.EmbedlabError` (one line).

    >>> result = evaluate("bm25", "scifact", metrics=["ndcg@10", "recall@100"], latency_queries=5)
    >>> sorted(result.scores)
    ['ndcg_at_10', 'recall_at_100']
    >>> 0.0 <= result["ndcg@10"] <= 1.0, result.measurements["latency"]["samples"]
    (True, 5)
    >>> evaluate("bm25", "scifact", metrics="ndcg@0")
    Traceback (most recent call last):
    embedlab.errors.EmbedlabError: metric cutoff must be >= 1 in 'ndcg@0'
    """
    if isinstance(model, list | tuple) or isinstance(dataset, list | tuple):
        raise EmbedlabError("evaluate takes one model and one dataset", hint="use evaluate_all for several")
    report = evaluate_all(
        model,
        dataset,
        metrics=metrics,
        split=split,
        ignore_identical_ids=ignore_identical_ids,
        cache=cache,
        latency_queries=latency_queries,
        seed=seed,
        show_progress=show_progress,
    )
    (result,) = report.report.results
    return Evaluation.from_result(result, report.report)


def _split(split: object) -> str:
    if not isinstance(split, str):
        raise EmbedlabError(f"invalid split {split!r}", expected="a qrels split name such as 'test'")
    return split

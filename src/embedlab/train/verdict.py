"""Before/after verdict: the base and the fine-tuned model on the same held-out test split,
with the same protocol as ``embedlab eval`` (the eval core: same retrieval, metrics, latency
probe and sizes).

Per metric: the mean with a 95% percentile-bootstrap interval for each model, the mean
per-query difference (fine-tuned - base) with its own bootstrap interval, and the two-sided
paired randomization test of that difference (``embedlab.eval.compare``).  The fine-tune
*improved* when the primary metric (NDCG@10) rose and p < alpha.

Latency: a fine-tune has its base's shape (same backend, precision, dimension, parameters), so
their latencies are not compared from the two separate probes (noise, not a change) but timed
interleaved on the same queries and tested (:mod:`embedlab.eval.latency_compare`): "same
latency (p = ...)" or "fine-tuned is slower by X ms (p = ...)".  What is timed: encoding one
query; the top-10 search that follows costs both the same (same dimension, same corpus).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import compare_pair, mean_interval
from embedlab.eval.evaluate import EvalResult
from embedlab.eval.latency_compare import LatencyComparison, probe_models, same_shape
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalSpec, ModelResult, run_eval
from embedlab.eval.stats import Interval
from embedlab.payloads import Conditions, Latency, SizeInfo
from embedlab.search.pipeline import PipelineSpec

VERDICT_METRICS = ("ndcg@10", "mrr@10", "recall@100")
PRIMARY = "ndcg_at_10"


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    base: Interval
    tuned: Interval
    delta: Interval
    p_value: float
    test: str


@dataclass(frozen=True)
class Side:
    """One model's measurements on the test split (latency, size, fingerprint)."""

    label: str
    latency: Latency
    size: SizeInfo
    fingerprint: dict[str, object]
    conditions: Conditions


@dataclass(frozen=True)
class Verdict:
    dataset: str
    split: str
    queries: int
    metrics: tuple[MetricComparison, ...]
    base: Side
    tuned: Side
    alpha: float
    note: str = ""  # said with the verdict in plain words (e.g. the output is the base model)
    latency: LatencyComparison | None = None  # interleaved paired test (models of the same shape)

    def metric(self, key: str) -> MetricComparison:
        return next(m for m in self.metrics if m.metric == key)

    @property
    def improved(self) -> bool:
        primary = self.metric(PRIMARY)
        return primary.delta.mean > 0 and primary.p_value < self.alpha

    def reason(self) -> str:
        m = self.metric(PRIMARY)
        change = f"NDCG@10 {m.base.mean:.4f} -> {m.tuned.mean:.4f} ({m.delta.mean:+.4f}, p={m.p_value:.4g})"
        note = f"; {self.note}" if self.note else ""
        if self.improved:
            return f"fine-tune is significantly better: {change}{note}"
        why = "not better" if m.delta.mean <= 0 else f"not significant at alpha={self.alpha}"
        return f"fine-tune is {why}: {change}{note}"

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "split": self.split,
            "queries": self.queries,
            "alpha": self.alpha,
            "improved": self.improved,
            "reason": self.reason(),
            "metrics": [
                {
                    "metric": m.metric,
                    "base": m.base.__dict__,
                    "fine_tuned": m.tuned.__dict__,
                    "delta": m.delta.__dict__,
                    "p_value": m.p_value,
                    "test": m.test,
                }
                for m in self.metrics
            ],
            "base": self.base.__dict__,
            "fine_tuned": self.tuned.__dict__,
            "latency_comparison": None if self.latency is None else self.latency.as_dict(),
        }


def compare_on_test(
    test: str | Path,
    *,
    base: ModelSpec | PipelineSpec,
    tuned: ModelSpec | PipelineSpec,
    split: str = "test",
    alpha: float = 0.05,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    latency_queries: int = 100,
    seed: int = 0,
    show_progress: bool = False,
    metrics: tuple[str, ...] = VERDICT_METRICS,
) -> Verdict:
    """``metrics``: what is compared (NDCG@10, the primary, must be among them)."""
    spec = EvalSpec(
        datasets=(str(test),),
        models=(base, tuned),
        metrics=tuple(parse_metrics(metrics)),
        split=split,
        use_cache=use_cache,
        cache_dir=cache_dir,
        latency_queries=latency_queries,
        seed=seed,
        show_progress=show_progress,
    )
    report = run_eval(spec)
    before, after = report.results
    base_eval, tuned_eval = _evaluation(before), _evaluation(after)
    comparisons = tuple(
        _metric(
            tuned_eval.per_query[m.key],
            base_eval.per_query[m.key],
            m.key,
            labels=(after.model, before.model),
            seed=seed,
        )
        for m in spec.metrics
    )
    dataset = next(iter(report.datasets))
    base_side, tuned_side = _side(before), _side(after)
    latency = None
    comparable = isinstance(base, ModelSpec) and isinstance(tuned, ModelSpec) and latency_queries > 0
    if comparable and same_shape(base_side.fingerprint, tuned_side.fingerprint, base_side.size, tuned_side.size):
        assert isinstance(base, ModelSpec) and isinstance(tuned, ModelSpec)  # narrowing for mypy
        latency = probe_models(
            base,
            tuned,
            dataset=test,
            split=split,
            samples=latency_queries,
            seed=seed,
            alpha=alpha,
            labels=("base", "fine-tuned"),
        )
    return Verdict(dataset, split, base_eval.queries, comparisons, base_side, tuned_side, alpha, latency=latency)


def _evaluation(result: ModelResult) -> EvalResult:
    if not result.ok or result.evaluation is None:
        raise EmbedlabError(f"evaluating {result.model} on the test split failed: {result.error}")
    return result.evaluation


def _metric(
    after: Mapping[str, float], before: Mapping[str, float], key: str, *, labels: tuple[str, str], seed: int
) -> MetricComparison:
    """Fine-tuned (a) against base (b) on one metric; each metric's p is its own (a family of one)."""
    pair = compare_pair(after, before, a=labels[0], b=labels[1], metric=key, seed=seed)
    return MetricComparison(
        key,
        mean_interval(before, seed=seed),
        mean_interval(after, seed=seed),
        pair.difference_interval,
        pair.p_value,
        pair.test,
    )


def _side(result: ModelResult) -> Side:
    m = result.measured()
    return Side(result.model, m["latency"].copy(), m["size"].copy(), dict(result.fingerprint), m["conditions"].copy())

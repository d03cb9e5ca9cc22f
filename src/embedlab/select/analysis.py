"""From an eval report to a decision: the trade-off matrix, Pareto fronts and a
recommendation under constraints, with significance tests a reviewer can check.

Rules (written down so the recommendation can be defended):

- Quality is nDCG@10 with a 95% percentile-bootstrap interval over queries, per dataset;
  across datasets, the mean of the dataset means and the mean rank.
- Latency for a constraint is the *worst* p95 over the datasets (search cost grows with
  the corpus); size is the model's weights on disk.
- Cost = measured compute seconds x the machine's price per hour: per 1,000 queries from
  the mean single-query latency, per 1M documents indexed from the corpus throughput.
- The best candidate is the highest mean nDCG@10 among those meeting every constraint.
  Every other qualifying candidate is compared with it by a paired randomization test on
  per-query nDCG@10 (all datasets' queries pooled), Holm-corrected over the comparisons, with
  a bootstrap interval of the difference (``embedlab.eval.compare``).
  Those with adjusted p >= alpha are statistically tied with the best; the recommendation
  is the cheapest of the best and its ties (lowest cost per query, then smallest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embedlab.eval.compare import compare_to_reference
from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.eval.stats import Interval, bootstrap_ci

MB = 1024 * 1024
QUALITY = "ndcg_at_10"


@dataclass(frozen=True)
class Constraints:
    max_p95_ms: float | None = None
    max_size_mb: float | None = None
    min_ndcg10: float | None = None
    price_per_hour: float | None = None
    alpha: float = 0.05

    def describe(self) -> str:
        parts = []
        if self.max_p95_ms is not None:
            parts.append(f"p95 <= {self.max_p95_ms:g} ms")
        if self.max_size_mb is not None:
            parts.append(f"size <= {self.max_size_mb:g} MB")
        if self.min_ndcg10 is not None:
            parts.append(f"nDCG@10 >= {self.min_ndcg10:g}")
        return ", ".join(parts) or "no constraints"


@dataclass(frozen=True)
class Cell:
    """One candidate on one dataset."""

    model: str
    dataset: str
    quality: dict[str, Interval]
    p50_ms: float
    p95_ms: float
    mean_ms: float
    docs_per_s: float | None
    size_mb: float
    index_mb: float
    parameters: int | None
    cost_per_1k_queries: float | None
    cost_per_1m_docs: float | None


@dataclass(frozen=True)
class Summary:
    """One candidate across datasets."""

    model: str
    mean_quality: float
    mean_rank: float
    worst_p95_ms: float
    mean_ms: float
    size_mb: float
    cost_per_1k_queries: float | None
    violations: tuple[str, ...]

    @property
    def qualifies(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class Comparison:
    """A qualifying candidate against the best (``eval.compare``, Holm over the candidates) and
    whether it is statistically tied with it at the constraints' alpha."""

    model: str
    best: str
    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    tied: bool


@dataclass(frozen=True)
class Selection:
    constraints: Constraints
    cells: list[Cell]
    summaries: list[Summary]
    failures: list[ModelResult]
    pareto_latency: list[str]
    pareto_size: list[str]
    best: str | None
    recommended: str | None
    comparisons: list[Comparison]
    reasons: list[str] = field(default_factory=list)


def _cell(result: ModelResult, price: float | None, *, seed: int) -> Cell:
    m = result.measured()
    latency, size, corpus = m["latency"], m["size"], m["corpus"]
    assert result.evaluation is not None
    quality: dict[str, Interval] = {
        key: bootstrap_ci(list(result.evaluation.per_query[key].values()), seed=seed)
        for key in ("ndcg_at_10", "mrr_at_10", "recall_at_100")
        if key in result.evaluation.per_query
    }
    mean_ms = float(latency["mean_ms"])
    rate = corpus.get("docs_per_second")
    return Cell(
        model=result.model,
        dataset=result.dataset,
        quality=quality,
        p50_ms=float(latency["p50_ms"]),
        p95_ms=float(latency["p95_ms"]),
        mean_ms=mean_ms,
        docs_per_s=rate,
        size_mb=float(size.get("weights_bytes") or 0) / MB,
        index_mb=float(size.get("index_bytes") or 0) / MB,
        parameters=size.get("parameters"),
        cost_per_1k_queries=None if price is None else mean_ms / 1000 * 1000 * price / 3600,
        cost_per_1m_docs=None if price is None or not rate else 1e6 / rate * price / 3600,
    )


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated: no other point has >= quality and <= cost with one strict.

    ``points[name] = (quality, cost)``; returned by increasing cost.
    """
    front = []
    for name, (q, c) in points.items():
        dominated = any(
            (q2 >= q and c2 <= c) and (q2 > q or c2 < c) for other, (q2, c2) in points.items() if other != name
        )
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: (points[n][1], -points[n][0], n))


def _violations(s_quality: float, worst_p95: float, size_mb: float, c: Constraints) -> tuple[str, ...]:
    out = []
    if c.max_p95_ms is not None and worst_p95 > c.max_p95_ms:
        out.append(f"p95 {worst_p95:.1f} ms > {c.max_p95_ms:g} ms")
    if c.max_size_mb is not None and size_mb > c.max_size_mb:
        out.append(f"size {size_mb:.1f} MB > {c.max_size_mb:g} MB")
    if c.min_ndcg10 is not None and s_quality < c.min_ndcg10:
        out.append(f"nDCG@10 {s_quality:.4f} < {c.min_ndcg10:g}")
    return tuple(out)


def _pooled(result_by_dataset: dict[str, ModelResult]) -> dict[tuple[str, str], float]:
    pooled = {}
    for dataset, result in result_by_dataset.items():
        assert result.evaluation is not None
        for query_id, value in result.evaluation.per_query[QUALITY].items():
            pooled[(dataset, query_id)] = value
    return pooled


def select(report: EvalReport, constraints: Constraints, *, seed: int = 0) -> Selection:
    ok = [r for r in report.results if r.ok]
    failures = [r for r in report.results if not r.ok]
    failed_models = {r.model for r in failures}
    models = [m.name for m in report.spec.models if m.name not in failed_models]
    datasets = list(report.datasets)
    by = {(r.model, r.dataset): r for r in ok}
    cells = [_cell(by[(m, d)], constraints.price_per_hour, seed=seed) for d in datasets for m in models]
    cell = {(c.model, c.dataset): c for c in cells}

    ranks: dict[str, list[int]] = {m: [] for m in models}
    for d in datasets:
        order = sorted(models, key=lambda m: (-cell[(m, d)].quality[QUALITY].mean, m))
        for position, m in enumerate(order, start=1):
            ranks[m].append(position)
    summaries = []
    for m in models:
        quality = float(np.mean([cell[(m, d)].quality[QUALITY].mean for d in datasets]))
        worst = max(cell[(m, d)].p95_ms for d in datasets)
        size = cell[(m, datasets[0])].size_mb
        costs = [cell[(m, d)].cost_per_1k_queries for d in datasets]
        known = [c for c in costs if c is not None]
        summaries.append(
            Summary(
                model=m,
                mean_quality=quality,
                mean_rank=float(np.mean(ranks[m])),
                worst_p95_ms=worst,
                mean_ms=float(np.mean([cell[(m, d)].mean_ms for d in datasets])),
                size_mb=size,
                cost_per_1k_queries=float(np.mean(known)) if len(known) == len(costs) else None,
                violations=_violations(quality, worst, size, constraints),
            )
        )
    by_name = {s.model: s for s in summaries}
    pareto_latency = pareto_front({s.model: (s.mean_quality, s.worst_p95_ms) for s in summaries})
    pareto_size = pareto_front({s.model: (s.mean_quality, s.size_mb) for s in summaries})

    qualifying = sorted((s for s in summaries if s.qualifies), key=lambda s: (-s.mean_quality, s.model))
    if not qualifying:
        return Selection(
            constraints,
            cells,
            summaries,
            failures,
            pareto_latency,
            pareto_size,
            None,
            None,
            [],
            _nothing_qualifies(summaries, constraints),
        )
    best = qualifying[0]
    pooled = {s.model: _pooled({d: by[(s.model, d)] for d in datasets}) for s in qualifying}
    comparisons = [
        Comparison(
            model=c.a,
            best=c.b,
            mean_difference=c.difference,
            ci_low=c.ci_low,
            ci_high=c.ci_high,
            p_value=c.p_value,
            p_holm=c.p_holm,
            tied=c.p_holm >= constraints.alpha,
        )
        for c in compare_to_reference(pooled, best.model, metric=QUALITY, seed=seed)
    ]
    pool = [best] + [by_name[c.model] for c in comparisons if c.tied]
    choice = min(pool, key=lambda s: (s.mean_ms, s.size_mb, s.model))
    reasons = _explain(best, choice, comparisons, qualifying, summaries, constraints, len(datasets))
    return Selection(
        constraints,
        cells,
        summaries,
        failures,
        pareto_latency,
        pareto_size,
        best.model,
        choice.model,
        comparisons,
        reasons,
    )


def _explain(
    best: Summary,
    choice: Summary,
    comparisons: Sequence[Comparison],
    qualifying: Sequence[Summary],
    summaries: Sequence[Summary],
    c: Constraints,
    n_datasets: int,
) -> list[str]:
    over = f"over {n_datasets} dataset{'s' if n_datasets > 1 else ''}"
    lines = [
        f"{len(qualifying)} of {len(summaries)} candidates meet the constraints ({c.describe()}).",
        f"{best.model} has the highest mean nDCG@10 among them ({best.mean_quality:.4f} {over}).",
    ]
    tied = [x for x in comparisons if x.tied]
    if comparisons:
        lines.append(
            f"Paired randomization tests on per-query nDCG@10 against {best.model}, Holm-corrected over "
            f"{len(comparisons)} comparison{'s' if len(comparisons) > 1 else ''}: "
            + "; ".join(f"{x.model} {x.mean_difference:+.4f} (p={x.p_holm:.3g})" for x in comparisons)
            + "."
        )
    if choice.model == best.model:
        if tied:
            lines.append(
                f"{', '.join(x.model for x in tied)} {'is' if len(tied) == 1 else 'are'} statistically tied "
                f"with it but not cheaper; recommend {best.model}."
            )
        else:
            lines.append(f"No qualifying candidate is statistically tied with it; recommend {best.model}.")
    else:
        factor = best.mean_ms / choice.mean_ms if choice.mean_ms > 0 else float("inf")
        lines.append(
            f"{choice.model} is statistically tied with {best.model} at alpha={c.alpha:g} and costs {factor:.1f}x "
            f"less compute per query (mean {choice.mean_ms:.1f} ms vs {best.mean_ms:.1f} ms, p95 "
            f"{choice.worst_p95_ms:.1f} vs {best.worst_p95_ms:.1f} ms): recommend {choice.model}."
        )
    if choice.cost_per_1k_queries is not None:
        lines.append(
            f"At {c.price_per_hour:g} per machine-hour, {choice.model} costs "
            f"{choice.cost_per_1k_queries:.6f} per 1,000 queries."
        )
    return lines


def _nothing_qualifies(summaries: Sequence[Summary], c: Constraints) -> list[str]:
    lines = [f"No candidate meets the constraints ({c.describe()})."]
    for s in sorted(summaries, key=lambda s: (-s.mean_quality, s.model))[:3]:
        fixes = []
        if c.max_p95_ms is not None and s.worst_p95_ms > c.max_p95_ms:
            fixes.append(f"--max-p95-ms {s.worst_p95_ms * 1.05:.1f}")
        if c.max_size_mb is not None and s.size_mb > c.max_size_mb:
            fixes.append(f"--max-size-mb {s.size_mb * 1.01:.1f}")
        if c.min_ndcg10 is not None and s.mean_quality < c.min_ndcg10:
            fixes.append(f"--min-ndcg10 {s.mean_quality:.3f}")
        lines.append(f"To admit {s.model} (nDCG@10 {s.mean_quality:.4f}): relax {' and '.join(fixes)}.")
    return lines

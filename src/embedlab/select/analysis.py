"""From an eval report to a decision: the trade-off matrix, Pareto fronts and a
recommendation under constraints, with significance tests a reviewer can check.

Rules (written down so the recommendation can be defended):

- Quality is nDCG@10 with a 95% percentile-bootstrap interval over queries, per dataset;
  across datasets, the mean of the dataset means and the mean rank.
- Latency for a constraint is the *worst* p95 over the datasets (search cost grows with
  the corpus); size is the model's weights on disk.
- Index size per document is the index's memory over its rows (bytes per vector), projected
  linearly to 1M documents: ``(bytes_per_vector * 1e6 + fixed_bytes) / 2**20`` MB, the worst over the
  datasets (``fixed_bytes``: what does not grow with the rows, e.g. a PCA projection).
- With a ``reference`` candidate (``embedlab shrink``: the original model), retained quality
  is ``nDCG@10(candidate) / nDCG@10(reference)``, per dataset and of the means across them.
- Cost = measured compute seconds x the machine's price per hour: per 1,000 queries from
  the mean single-query latency, per 1M documents indexed from the corpus throughput.
- The best candidate is the highest mean nDCG@10 among those meeting every constraint.
  Every other qualifying candidate is compared with it by a paired randomization test on
  per-query nDCG@10 (all datasets' queries pooled), Holm-corrected over the comparisons, with
  a bootstrap interval of the difference (``embedlab.eval.compare``).
  Those with adjusted p >= alpha are statistically tied with the best; the recommendation
  is the cheapest of the best and its ties (lowest cost per query, then smallest).
- What is given up: every candidate better than the recommended one that misses a constraint is
  named with how far it misses (relative to the limit) and what it would gain, with a p-value
  (``select.tradeoff``).
- A latency timed while the machine was busy (``eval.load``) is named in the reasons: a p95
  inflated by other work can exclude a model that meets the budget on a quiet machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from embedlab.eval.compare import compare_to_reference
from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.eval.stats import Interval, bootstrap_ci
from embedlab.select.tradeoff import MAX_SHOWN, GivenUp, Miss, given_up, misses

MB = 1024 * 1024
QUALITY = "ndcg_at_10"


@dataclass(frozen=True)
class Constraints:
    max_p95_ms: float | None = None
    max_size_mb: float | None = None
    min_ndcg10: float | None = None
    price_per_hour: float | None = None
    alpha: float = 0.05
    max_index_mb_per_1m: float | None = None
    min_retained: float | None = None  # of the reference's nDCG@10 (needs a reference)

    def describe(self) -> str:
        parts = []
        if self.max_p95_ms is not None:
            parts.append(f"p95 <= {self.max_p95_ms:g} ms")
        if self.max_size_mb is not None:
            parts.append(f"size <= {self.max_size_mb:g} MB")
        if self.min_ndcg10 is not None:
            parts.append(f"nDCG@10 >= {self.min_ndcg10:g}")
        if self.max_index_mb_per_1m is not None:
            parts.append(f"index <= {self.max_index_mb_per_1m:g} MB per 1M docs")
        if self.min_retained is not None:
            parts.append(f"retained nDCG@10 >= {self.min_retained:g}")
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
    busy: str = ""  # why the machine was busy while this latency was timed ("" when quiet)
    index_bytes_per_vector: float | None = None
    index_mb_per_1m: float | None = None
    retained: float | None = None  # nDCG@10 / the reference's, on this dataset


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
    misses: tuple[Miss, ...] = ()
    index_mb_per_1m: float | None = None
    retained: float | None = None  # mean nDCG@10 / the reference's

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
    given_up: list[GivenUp] = field(default_factory=list)


def cost_per_1k_queries(mean_ms: float, price_per_hour: float) -> float:
    """Machine time of 1,000 queries answered one after another, at ``price_per_hour``."""
    return mean_ms / 1000 * 1000 * price_per_hour / 3600


def cost_per_1m_docs(docs_per_second: float, price_per_hour: float) -> float:
    """Machine time of encoding 1M documents at the measured rate, at ``price_per_hour``."""
    return 1e6 / docs_per_second * price_per_hour / 3600


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
    per_vector = size.get("index_bytes_per_vector")
    if per_vector is None and size.get("index_bytes") and corpus.get("documents"):
        per_vector = float(size["index_bytes"]) / float(corpus["documents"])
    machine = m["conditions"].get("machine")
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
        cost_per_1k_queries=None if price is None else cost_per_1k_queries(mean_ms, price),
        cost_per_1m_docs=None if price is None or not rate else cost_per_1m_docs(rate, price),
        busy=str(machine.get("busy_because") or "") if machine else "",
        index_bytes_per_vector=per_vector,
        index_mb_per_1m=None if per_vector is None else (per_vector * 1e6 + size.get("index_fixed_bytes", 0)) / MB,
    )


def _with_retained(cells: list[Cell], reference: str) -> list[Cell]:
    base = {c.dataset: c.quality[QUALITY].mean for c in cells if c.model == reference}
    return [
        replace(c, retained=c.quality[QUALITY].mean / base[c.dataset] if base.get(c.dataset) else None) for c in cells
    ]


def _index_and_retained(
    model: str, datasets: list[str], cell: dict[tuple[str, str], Cell], reference: str | None
) -> tuple[float | None, float | None]:
    """The worst projected index MB per 1M documents over the datasets, and retained mean nDCG@10."""
    per_1m = [v for d in datasets if (v := cell[(model, d)].index_mb_per_1m) is not None]
    if reference is None:
        return (max(per_1m) if per_1m else None), None
    mean = float(np.mean([cell[(model, d)].quality[QUALITY].mean for d in datasets]))
    ref = float(np.mean([cell[(reference, d)].quality[QUALITY].mean for d in datasets]))
    return (max(per_1m) if per_1m else None), (mean / ref if ref > 0 else None)


def _shrink_misses(index_mb: float | None, retained: float | None, c: Constraints) -> tuple[Miss, ...]:
    out = []
    if c.max_index_mb_per_1m is not None and index_mb is not None and index_mb > c.max_index_mb_per_1m:
        out.append(Miss("index per 1M docs", index_mb, c.max_index_mb_per_1m, "--max-index-mb-per-1m", " MB"))
    if c.min_retained is not None and retained is not None and retained < c.min_retained:
        out.append(Miss("retained nDCG@10", retained, c.min_retained, "--min-retained", "", is_floor=True))
    return tuple(out)


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


def _pooled(result_by_dataset: dict[str, ModelResult]) -> dict[tuple[str, str], float]:
    pooled = {}
    for dataset, result in result_by_dataset.items():
        assert result.evaluation is not None
        for query_id, value in result.evaluation.per_query[QUALITY].items():
            pooled[(dataset, query_id)] = value
    return pooled


def select(report: EvalReport, constraints: Constraints, *, seed: int = 0, reference: str | None = None) -> Selection:
    """The analysis; ``reference`` names the candidate that retained quality is relative to."""
    ok = [r for r in report.results if r.ok]
    failures = [r for r in report.results if not r.ok]
    failed_models = {r.model for r in failures}
    models = [m.name for m in report.spec.models if m.name not in failed_models]
    datasets = list(report.datasets)
    by = {(r.model, r.dataset): r for r in ok}
    cells = [_cell(by[(m, d)], constraints.price_per_hour, seed=seed) for d in datasets for m in models]
    if reference is not None and reference in models:
        cells = _with_retained(cells, reference)
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
        missed = misses(quality=quality, worst_p95_ms=worst, size_mb=size, limits=constraints)
        index_mb, retained = _index_and_retained(m, datasets, cell, reference if reference in models else None)
        missed += _shrink_misses(index_mb, retained, constraints)
        summaries.append(
            Summary(
                model=m,
                mean_quality=quality,
                mean_rank=float(np.mean(ranks[m])),
                worst_p95_ms=worst,
                mean_ms=float(np.mean([cell[(m, d)].mean_ms for d in datasets])),
                size_mb=size,
                cost_per_1k_queries=float(np.mean(known)) if len(known) == len(costs) else None,
                violations=tuple(x.describe() for x in missed),
                misses=missed,
                index_mb_per_1m=index_mb,
                retained=retained,
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
            _nothing_qualifies(summaries, constraints) + _busy_lines(cells),
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
    better = [
        (s.model, s.misses)
        for s in sorted(summaries, key=lambda s: (-s.mean_quality, s.model))
        if not s.qualifies and s.mean_quality > choice.mean_quality
    ]
    per_query = {s.model: _pooled({d: by[(s.model, d)] for d in datasets}) for s in summaries}
    lost = given_up(choice.model, better, per_query, metric=QUALITY, seed=seed)
    reasons += [g.describe(constraints.alpha) for g in lost[:MAX_SHOWN]]
    if len(lost) > MAX_SHOWN:
        reasons.append(f"{len(lost) - MAX_SHOWN} more better candidates miss a constraint (see selection.json).")
    reasons += _busy_lines(cells)
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
        lost,
    )


def _busy_lines(cells: Sequence[Cell]) -> list[str]:
    busy = [c for c in cells if c.busy]
    if not busy:
        return []
    return [
        f"Warning: the machine was busy while timing {', '.join(f'{c.model} on {c.dataset}' for c in busy)} "
        f"({busy[0].busy}): those latencies include other work and may decide a --max-p95-ms constraint wrongly; "
        "rerun with --repeat N (keeps the quietest run), --wait-quiet S or on a quiet machine."
    ]


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
        lines.append(
            f"To admit {s.model} (nDCG@10 {s.mean_quality:.4f}; misses {'; '.join(m.describe() for m in s.misses)}): "
            f"relax {' and '.join(fixes)}."
        )
    return lines

"""Several models on one dataset: each against the best, as ranx's ``compare`` reports it.

A table of means alone invites reading 0.651 against 0.648 as a ranking.  With two or more
models that finished on a dataset, the model with the highest mean on the comparison metric
(nDCG@10, or the first requested metric when nDCG@10 was not requested) is the reference, and
every other model is compared with it on the same queries by
:func:`embedlab.eval.compare.compare_to_reference`: the mean of the per-query differences
d_i = model_i - best_i (so <= 0), its percentile-bootstrap interval, the two-sided paired
randomization test, and Holm's adjustment over the k - 1 comparisons of that dataset (the
statistics, formulas and references are in ``eval/compare.py``; none are computed here).
The same comparisons feed ``summary.json``, the terminal and both reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from embedlab.eval.compare import PairedComparison, compare_to_reference
from embedlab.eval.metrics import MetricSpec

if TYPE_CHECKING:  # runner imports this module; only the type is needed here
    from embedlab.eval.runner import ModelResult

PREFERRED = "ndcg_at_10"


def comparison_metric(metrics: Sequence[MetricSpec]) -> MetricSpec:
    """nDCG@10 when requested, else the first requested metric."""
    return next((m for m in metrics if m.key == PREFERRED), metrics[0])


def versus_best(
    results: Sequence[ModelResult], metrics: Sequence[MetricSpec], *, seed: int = 0
) -> dict[str, list[PairedComparison]]:
    """Per dataset, every finished model (``a``) against the best one (``b``), Holm over k - 1.

    Datasets with fewer than two finished models get no entry (a single-model run has none).
    A model name given twice on a dataset is compared once (its first result).  Ties for the best
    mean go to the model listed first.
    """
    metric = comparison_metric(metrics)
    by_dataset: dict[str, dict[str, dict[str, float]]] = {}
    for r in results:
        if r.ok and r.evaluation is not None and metric.key in r.evaluation.per_query:
            by_dataset.setdefault(r.dataset, {}).setdefault(r.model, r.evaluation.per_query[metric.key])
    out: dict[str, list[PairedComparison]] = {}
    for dataset, per_query in by_dataset.items():
        if len(per_query) < 2:
            continue
        means = {name: sum(s.values()) / len(s) if s else 0.0 for name, s in per_query.items()}
        best = max(means, key=lambda name: means[name])  # max keeps the first of equal means
        out[dataset] = compare_to_reference(per_query, best, metric=metric.key, seed=seed)
    return out


def comparison_record(c: PairedComparison, *, label: str) -> dict[str, object]:
    """One comparison as ``summary.json`` has it (``label``: the metric as the user wrote it)."""
    return {
        "model": c.a,
        "best": c.b,
        "metric": label,
        "mean_model": c.mean_a,
        "mean_best": c.mean_b,
        "mean_difference": c.difference,
        "ci": [c.ci_low, c.ci_high],
        "confidence": c.confidence,
        "p": c.p_value,
        "p_holm": c.p_holm,
        "queries": c.queries,
        "test": c.test,
    }


def display_rows(comparisons: Sequence[PairedComparison]) -> list[dict[str, str]]:
    """Rows for the terminal and report tables: model, difference, interval, p, Holm p."""
    if not comparisons:
        return []
    percent = f"{comparisons[0].confidence:.0%}"
    return [
        {
            "model": c.a,
            "vs best": f"{c.difference:+.4f}",
            f"{percent} CI": f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]",
            "p": f"{c.p_value:.4f}",
            "p (Holm)": f"{c.p_holm:.4f}",
        }
        for c in comparisons
    ]


def display_title(comparisons: Sequence[PairedComparison], *, label: str) -> str:
    """What the table shows, in one line."""
    best = comparisons[0].b if comparisons else "-"
    return f"{label} against the best ({best}): paired randomization test, bootstrap CI, Holm over {len(comparisons)}"

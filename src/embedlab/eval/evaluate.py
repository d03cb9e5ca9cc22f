"""Score a ``Run`` against ``Qrels``: per-query values and their mean.

Only judged queries count (BEIR convention): a judged query the run does not answer
scores 0 on every metric; run queries without judgments are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embedlab.data.types import Qrels, Run
from embedlab.eval.metrics import MetricSpec


@dataclass(frozen=True)
class EvalResult:
    """``per_query[metric_key][query_id]`` and ``mean[metric_key]`` (MTEB key names)."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    queries: int

    def __getitem__(self, key: str) -> float:
        return self.mean[key]


def evaluate(run: Run, qrels: Qrels, metrics: Sequence[MetricSpec]) -> EvalResult:
    query_ids = qrels.query_ids
    per_query: dict[str, dict[str, float]] = {m.key: {} for m in metrics}
    for query_id in query_ids:
        ranked = [doc for doc, _ in run.ranking(query_id)]
        grades = dict(qrels.judgments[query_id])
        for metric in metrics:
            per_query[metric.key][query_id] = metric(ranked, grades)
    count = len(query_ids)
    mean = {key: (sum(values.values()) / count if count else 0.0) for key, values in per_query.items()}
    return EvalResult(per_query=per_query, mean=mean, queries=count)

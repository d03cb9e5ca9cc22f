"""Ranking metrics, one function each, computed on one query's ranked list.

Conventions are trec_eval's (so values agree with pytrec_eval to 1e-6, see
``tests/test_metric_parity.py``): a document is relevant when its grade is >= 1;
graded gains are linear; the ranked list is ordered score desc, doc id asc.

References: Järvelin & Kekäläinen (2002) for nDCG; Voorhees (1999) for MRR;
trec_eval's ``ndcg_cut``, ``recip_rank``, ``recall``, ``P``, ``map_cut`` and ``success``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from embedlab.errors import EmbedlabError
from embedlab.registry import Registry

MetricFn = Callable[[Sequence[str], dict[str, int], int], float]
METRICS: Registry[MetricFn] = Registry("metric")


@METRICS.register("ndcg")
def ndcg(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    """nDCG@k = DCG@k / IDCG@k with DCG@k = sum_{i=1..k} g_i / log2(i + 1).

    g_i is the grade of the document at rank i (0 when unjudged or not relevant); IDCG@k is
    the DCG of the ideal ordering of all relevant grades. 0 when no document is relevant.
    """
    dcg = sum(grades.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]) if grades.get(doc, 0) > 0)
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


@METRICS.register("mrr")
def mrr(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    """MRR@k = 1 / rank of the first relevant document within the top k, else 0."""
    for i, doc in enumerate(ranked[:k]):
        if grades.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


@METRICS.register("recall")
def recall(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    """Recall@k = |relevant in top k| / |relevant|; 0 when no document is relevant."""
    relevant = sum(1 for g in grades.values() if g > 0)
    if relevant == 0:
        return 0.0
    return sum(1 for doc in ranked[:k] if grades.get(doc, 0) > 0) / relevant


@METRICS.register("precision")
def precision(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    """P@k = |relevant in top k| / k (trec_eval divides by k even when fewer are retrieved)."""
    return sum(1 for doc in ranked[:k] if grades.get(doc, 0) > 0) / k


@METRICS.register("map")
def average_precision(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    """AP@k = sum over relevant ranks i <= k of P@i, divided by |relevant| (trec_eval map_cut)."""
    relevant = sum(1 for g in grades.values() if g > 0)
    if relevant == 0:
        return 0.0
    hits = 0
    total = 0.0
    for i, doc in enumerate(ranked[:k]):
        if grades.get(doc, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / relevant


@METRICS.register("hit_rate")
def hit_rate(ranked: Sequence[str], grades: dict[str, int], k: int) -> float:
    """HitRate@k (trec_eval success@k) = 1 if any relevant document is in the top k, else 0."""
    return 1.0 if any(grades.get(doc, 0) > 0 for doc in ranked[:k]) else 0.0


@dataclass(frozen=True, order=True)
class MetricSpec:
    """A metric at a cutoff, e.g. ``ndcg@10``; ``key`` is the MTEB result-file name."""

    name: str
    k: int

    @property
    def key(self) -> str:
        return f"{self.name}_at_{self.k}"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.k}"

    def __call__(self, ranked: Sequence[str], grades: dict[str, int]) -> float:
        return METRICS.get(self.name)(ranked, grades, self.k)


_SPEC = re.compile(r"^\s*([a-z_]+?)\s*(?:@|_at_)\s*(\d+)\s*$", re.IGNORECASE)
DEFAULT_METRICS = [
    "ndcg@1",
    "ndcg@3",
    "ndcg@5",
    "ndcg@10",
    "ndcg@100",
    "mrr@10",
    "mrr@100",
    "recall@10",
    "recall@100",
    "recall@1000",
    "precision@1",
    "precision@10",
    "map@10",
    "map@100",
    "hit_rate@10",
]
MAIN_METRICS = ("ndcg@10", "mrr@10", "recall@100")


def parse_metric(text: str) -> MetricSpec:
    """``ndcg@10`` or ``ndcg_at_10`` -> MetricSpec; clear errors for anything else."""
    match = _SPEC.match(text)
    if not match:
        raise EmbedlabError(
            f"cannot read metric {text!r}", expected=f"NAME@K such as ndcg@10 (names: {', '.join(METRICS.names())})"
        )
    name, k = match.group(1).lower(), int(match.group(2))
    METRICS.get(name)  # raises "Unknown metric ... Did you mean ..."
    if k < 1:
        raise EmbedlabError(f"metric cutoff must be >= 1 in {text!r}")
    return MetricSpec(name, k)


def parse_metrics(texts: Sequence[str]) -> list[MetricSpec]:
    specs: list[MetricSpec] = []
    for text in texts:
        spec = parse_metric(text)
        if spec not in specs:
            specs.append(spec)
    return specs

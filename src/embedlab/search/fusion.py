"""Fusion: several rankings of the same items become one, by reciprocal rank fusion (below) or by a
convex combination of normalised scores (:func:`combine`, ``minmax`` / ``zscore``).

    RRF(d) = sum_i  w_i / (k + rank_i(d))

over the rankings ``i`` that contain ``d`` (``rank_i`` is 1-based; a ranking that does
not contain ``d`` adds nothing).  ``k`` (default 60) damps the weight of the very top
ranks; ``w_i`` (default 1) weights ranking ``i``.  Reference: G. V. Cormack, C. L. A.
Clarke and S. Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual
rank learning methods", SIGIR 2009.  Only ranks matter, so rankings on incomparable
scales (cosine similarity, BM25) fuse without normalisation.

Sums are exact-rounded (``math.fsum``), so two items with the same multiset of ranks get
bit-identical scores, and ties are broken by the project rule: score descending, then
item id ascending.  Score combination needs comparable scales, hence the per-ranking
normalisation; which of the two works better on a collection is measured (``embedlab tune``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TypeVar

from embedlab.data.types import Run
from embedlab.errors import EmbedlabError

RRF_K = 60.0
T = TypeVar("T", bound=Hashable)


def check_fusion(rrf_k: float, weights: Sequence[float] | None, count: int) -> tuple[float, ...]:
    """Validate the options; returns the weights (all 1 when not given)."""
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int | float) or not math.isfinite(rrf_k) or rrf_k < 0:
        raise EmbedlabError("invalid RRF constant", found=f"rrf_k={rrf_k!r}", expected="a number >= 0 (e.g. 60)")
    if weights is None:
        return (1.0,) * count
    values = tuple(weights)
    if len(values) != count:
        raise EmbedlabError(
            "wrong number of fusion weights",
            found=f"{len(values)} weights for {count} rankings",
            expected="one weight per ranking",
        )
    if any(isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0 for w in values):
        raise EmbedlabError("invalid fusion weight", found=repr(values), expected="numbers >= 0")
    if not any(values):
        raise EmbedlabError("all fusion weights are 0", found=repr(values), expected="at least one weight > 0")
    return tuple(float(w) for w in values)


def rrf(
    rankings: Sequence[Sequence[T]], *, rrf_k: float = RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[T, float]]:
    """Fuse ranked lists of ids (best first) into ``[(id, score), ...]``, best first.

    An id listed twice in one ranking counts at its first (best) rank.  Items that get no
    score (every weight of their rankings is 0) are left out.
    """
    ws = check_fusion(rrf_k, weights, len(rankings))
    parts: dict[T, list[float]] = {}
    for ranking, weight in zip(rankings, ws, strict=True):
        if weight == 0:
            continue
        seen: set[T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            parts.setdefault(item, []).append(weight / (rrf_k + rank))
    fused = [(item, math.fsum(values)) for item, values in parts.items()]
    fused.sort(key=lambda pair: (-pair[1], pair[0]))
    return fused


def fuse_ranked(
    scored: Sequence[Sequence[tuple[T, float]]],
    *,
    method: str = "rrf",
    rrf_k: float = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[T, float]]:
    """Ranked ``(id, score)`` lists (best first) fused by ``method``: ``rrf`` (ranks only) or
    :func:`combine` (``minmax`` / ``zscore`` normalised scores)."""
    if method == "rrf":
        return rrf([[item for item, _ in ranking] for ranking in scored], rrf_k=rrf_k, weights=weights)
    return combine(scored, method=method, weights=weights)


def fuse(
    runs: Sequence[Run],
    *,
    k: int | None = None,
    rrf_k: float = RRF_K,
    weights: Sequence[float] | None = None,
    depth: int | None = None,
    name: str = "rrf",
    method: str = "rrf",
) -> Run:
    """Fusion of whole runs, query by query: each run's ranking (score desc, doc id asc) is cut at
    ``depth`` (None: all of it), fused (``method``: ``rrf``, or :func:`combine` of ``minmax`` /
    ``zscore`` normalised scores), and the fused ranking cut at ``k`` (None: all).

    A query present in any run is present in the result.
    """
    for label, value in (("k", k), ("depth", depth)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise EmbedlabError(f"invalid fusion {label}", found=repr(value), expected="a whole number > 0 or None")
    query_ids = sorted({q for run in runs for q in run.scores})
    out: dict[str, dict[str, float]] = {}
    for query_id in query_ids:
        rankings = [run.ranking(query_id)[:depth] for run in runs]
        fused = fuse_ranked(rankings, method=method, rrf_k=rrf_k, weights=weights)
        out[query_id] = dict(fused[:k])
    return Run(out, name=name)


METHODS = ("rrf", "minmax", "zscore")


def normalised(scores: Sequence[float], method: str) -> list[float]:
    """One ranking's scores on a common scale, so scores from different models can be added.

    - ``minmax``: (s - min) / (max - min), in [0, 1]; all equal -> all 1 (each is the best);
    - ``zscore``: (s - mean) / std (population std); all equal -> all 0.

    Reference for both: E. A. Fox and J. A. Shaw, "Combination of multiple searches", TREC-2
    (1994) and J. H. Lee, "Analyses of multiple evidence combination", SIGIR 1997 (min-max);
    M. Montague and J. A. Aslam, "Relevance score normalization for metasearch", CIKM 2001
    (z-score).
    """
    values = [float(s) for s in scores]
    if not values:
        return []
    if method == "minmax":
        lo, hi = min(values), max(values)
        return [1.0] * len(values) if hi == lo else [(s - lo) / (hi - lo) for s in values]
    if method == "zscore":
        mean = math.fsum(values) / len(values)
        std = math.sqrt(math.fsum((s - mean) ** 2 for s in values) / len(values))
        return [0.0] * len(values) if std == 0 else [(s - mean) / std for s in values]
    raise EmbedlabError(f"unknown score normalisation {method!r}", expected="minmax or zscore")


def combine(
    scored: Sequence[Sequence[tuple[T, float]]], *, method: str, weights: Sequence[float] | None = None
) -> list[tuple[T, float]]:
    """Convex (weighted) combination of normalised scores: ``sum_i w_i * norm_i(d)``, best first.

    Each ranking ``i`` is normalised on its own (:func:`normalised`, over the items it lists); an
    item a ranking does not list gets that ranking's lowest normalised value (it ranked below all
    of them: 0 for min-max), so a document found by one retriever only is not pushed above ones
    both found merely by absence.  With two rankings and weights (alpha, 1 - alpha) this is the
    usual hybrid ``alpha * dense + (1 - alpha) * bm25`` (Bruch, Gai and Ingber, "An analysis of
    fusion functions for hybrid retrieval", ACM TOIS 2023).  Ties: score desc, then id asc.
    """
    ws = check_fusion(RRF_K, weights, len(scored))
    columns: list[dict[T, float]] = []
    for ranking in scored:
        column: dict[T, float] = {}
        for item, value in zip((i for i, _ in ranking), normalised([s for _, s in ranking], method), strict=True):
            column.setdefault(item, value)  # an id listed twice counts at its first (best) place
        columns.append(column)
    floors = [min(column.values(), default=0.0) for column in columns]
    items = {item for column in columns for item in column}
    fused = [
        (item, math.fsum(w * column.get(item, floor) for w, column, floor in zip(ws, columns, floors, strict=True)))
        for item in items
    ]
    fused.sort(key=lambda pair: (-pair[1], pair[0]))
    return fused

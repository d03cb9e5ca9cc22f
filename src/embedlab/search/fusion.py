"""Reciprocal rank fusion: several rankings of the same items become one.

    RRF(d) = sum_i  w_i / (k + rank_i(d))

over the rankings ``i`` that contain ``d`` (``rank_i`` is 1-based; a ranking that does
not contain ``d`` adds nothing).  ``k`` (default 60) damps the weight of the very top
ranks; ``w_i`` (default 1) weights ranking ``i``.  Reference: G. V. Cormack, C. L. A.
Clarke and S. Büttcher, "Reciprocal rank fusion outperforms Condorcet and individual
rank learning methods", SIGIR 2009.  Only ranks matter, so rankings on incomparable
scales (cosine similarity, BM25) fuse without normalisation.

Sums are exact-rounded (``math.fsum``), so two items with the same multiset of ranks get
bit-identical scores, and ties are broken by the project rule: score descending, then
item id ascending.
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


def fuse(
    runs: Sequence[Run],
    *,
    k: int | None = None,
    rrf_k: float = RRF_K,
    weights: Sequence[float] | None = None,
    depth: int | None = None,
    name: str = "rrf",
) -> Run:
    """RRF of whole runs, query by query: each run's ranking (score desc, doc id asc) is cut at
    ``depth`` (None: all of it), fused, and the fused ranking cut at ``k`` (None: all).

    A query present in any run is present in the result.
    """
    for label, value in (("k", k), ("depth", depth)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise EmbedlabError(f"invalid fusion {label}", found=repr(value), expected="a whole number > 0 or None")
    query_ids = sorted({q for run in runs for q in run.scores})
    out: dict[str, dict[str, float]] = {}
    for query_id in query_ids:
        rankings = [[doc for doc, _ in run.ranking(query_id)[:depth]] for run in runs]
        fused = rrf(rankings, rrf_k=rrf_k, weights=weights)
        out[query_id] = dict(fused[:k])
    return Run(out, name=name)

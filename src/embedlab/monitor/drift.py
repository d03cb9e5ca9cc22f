"""Drift statistics, each with a p-value whose false-alarm rate is calibrated (tests/test_monitor_drift.py
measures it on seeded simulations with no drift: the alarm rate at level alpha stays near alpha).

- :func:`mmd_test`: kernel two-sample test (Gretton et al. 2012, "A kernel two-sample test", JMLR 13):
  the unbiased MMD^2 between two samples with a Gaussian kernel, bandwidth = median pairwise distance
  of the pooled sample (the median heuristic), and a permutation p-value
  ``(1 + #{T_perm >= T}) / (1 + P)``, exact under exchangeability (Phipson & Smyth 2010) whatever the
  bandwidth, since the bandwidth is a function of the pooled (permutation-invariant) sample.
- :func:`centroid_test`: the distance between the two samples' mean vectors, a cheap O(n d) statistic
  for dashboards, with the same permutation p-value.
- :func:`nn_distance`: mean cosine distance of each live vector to its nearest reference vector
  (a per-window curve: it rises when queries move away from anything seen before).
- :func:`binomial_excess`: the share of events at or below a reference quantile ``q`` (out-of-domain
  queries: best corpus score below the reference's ``q`` quantile), one-sided exact binomial p-value
  ``P(X >= k | n, q)``.
- :func:`mean_shift_test`: one-sided permutation test that values in ``live`` are larger on average
  (vocabulary drift: per-query share of terms unknown to the corpus).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedlab.errors import EmbedlabError


@dataclass(frozen=True)
class Test:
    """A statistic, its p-value, and the sizes it came from."""

    statistic: float
    p_value: float
    n_reference: int
    n_live: int
    method: str

    def to_dict(self) -> dict[str, object]:
        return {
            "statistic": self.statistic,
            "p_value": self.p_value,
            "n_reference": self.n_reference,
            "n_live": self.n_live,
            "method": self.method,
        }


def _matrix(values: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or not np.isfinite(x).all():
        raise EmbedlabError(f"{name}: need at least 2 finite vectors", found=f"shape {x.shape}")
    return x


def _subsample(x: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= limit else x[rng.choice(len(x), size=limit, replace=False)]


def _p_value(observed: float, permuted: np.ndarray) -> float:
    # a tiny tolerance: a permutation equal to the observed labelling must count as ">=" despite rounding
    return float((1 + np.sum(permuted >= observed - 1e-12 * max(1.0, abs(observed)))) / (1 + permuted.size))


def _labels(m: int, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Row 0: the observed split (first m are the reference); rows 1..P: random relabellings."""
    base = np.r_[np.ones(m), np.zeros(n)]
    rows = [base] + [rng.permutation(base) for _ in range(permutations)]
    return np.stack(rows)


def mmd_test(
    reference: np.ndarray | Sequence[Sequence[float]],
    live: np.ndarray | Sequence[Sequence[float]],
    *,
    permutations: int = 200,
    max_per_side: int = 500,
    seed: int = 0,
) -> Test:
    """Unbiased MMD^2 with a Gaussian kernel and a permutation p-value (see the module docstring).
    Each side is subsampled to ``max_per_side`` vectors (cost O(P (m+n)^2))."""
    rng = np.random.default_rng(seed)
    x = _subsample(_matrix(reference, "reference"), max_per_side, rng)
    y = _subsample(_matrix(live, "live"), max_per_side, rng)
    m, n = len(x), len(y)
    z = np.vstack([x, y])
    squared = np.maximum(np.sum(z**2, 1)[:, None] + np.sum(z**2, 1)[None, :] - 2 * z @ z.T, 0.0)
    median = float(np.median(squared[np.triu_indices(m + n, 1)]))
    kernel = np.exp(-squared / (median or 1.0))  # exp(-d^2 / (2 sigma^2)) with 2 sigma^2 = median d^2
    np.fill_diagonal(kernel, 0.0)  # the unbiased estimate leaves out i == j
    a = _labels(m, n, permutations, rng)
    b = 1.0 - a
    ka = a @ kernel
    xx = np.einsum("ij,ij->i", ka, a) / (m * (m - 1))
    yy = np.einsum("ij,ij->i", b @ kernel, b) / (n * (n - 1))
    xy = np.einsum("ij,ij->i", ka, b) / (m * n)
    stats = xx + yy - 2 * xy
    return Test(
        float(stats[0]), _p_value(stats[0], stats[1:]), m, n, f"MMD^2 (Gaussian kernel), {permutations} permutations"
    )


def centroid_test(
    reference: np.ndarray | Sequence[Sequence[float]],
    live: np.ndarray | Sequence[Sequence[float]],
    *,
    permutations: int = 500,
    seed: int = 0,
) -> Test:
    """``|| mean(live) - mean(reference) ||`` with a permutation p-value: O(P (m+n) d)."""
    rng = np.random.default_rng(seed)
    x, y = _matrix(reference, "reference"), _matrix(live, "live")
    m, n = len(x), len(y)
    z = np.vstack([x, y])
    a = _labels(m, n, permutations, rng)
    diff = (a @ z) / m - ((1.0 - a) @ z) / n
    stats = np.linalg.norm(diff, axis=1)
    return Test(float(stats[0]), _p_value(stats[0], stats[1:]), m, n, f"centroid distance, {permutations} permutations")


def nn_distance(reference: np.ndarray, live: np.ndarray) -> float:
    """Mean over live vectors of 1 - (cosine similarity to the nearest reference vector)."""
    x, y = _matrix(reference, "reference"), _matrix(live, "live")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return float(np.mean(1.0 - (y @ x.T).max(axis=1)))


def binomial_sf(k: int, n: int, q: float) -> float:
    """``P(X >= k)`` for X ~ Binomial(n, q), summed in log space (exact, no SciPy needed)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if q <= 0.0:
        return 0.0
    if q >= 1.0:
        return 1.0
    log_q, log_p = math.log(q), math.log1p(-q)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_q + (n - i) * log_p
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def binomial_excess(below: int, n: int, *, quantile: float) -> Test:
    """``below`` of ``n`` events fell under the reference's ``quantile``: is that more than expected?"""
    if n <= 0:
        raise EmbedlabError("no live events to test", expected="at least one search in the window")
    return Test(below / n, binomial_sf(below, n, quantile), 0, n, f"binomial tail vs q={quantile}")


def mean_shift_test(
    reference: Sequence[float] | np.ndarray,
    live: Sequence[float] | np.ndarray,
    *,
    permutations: int = 2000,
    seed: int = 0,
) -> Test:
    """One-sided permutation test of ``mean(live) > mean(reference)``; the statistic is the difference."""
    x, y = np.asarray(reference, np.float64), np.asarray(live, np.float64)
    if x.size < 2 or y.size < 1:
        raise EmbedlabError("too few values to compare", found=f"{x.size} reference, {y.size} live")
    rng = np.random.default_rng(seed)
    z = np.r_[x, y]
    a = _labels(x.size, y.size, permutations, rng)
    stats = ((1.0 - a) @ z) / y.size - (a @ z) / x.size
    return Test(
        float(stats[0]), _p_value(stats[0], stats[1:]), x.size, y.size, f"mean shift, {permutations} permutations"
    )


def unknown_term_shares(queries: Sequence[str], vocabulary: set[str], terms_of) -> np.ndarray:
    """Per query, the share of its (analysed) terms not in ``vocabulary``; queries without terms: 0."""
    out = np.zeros(len(queries))
    for i, query in enumerate(queries):
        terms = terms_of(query)
        if terms:
            out[i] = sum(t not in vocabulary for t in terms) / len(terms)
    return out

"""Significance tests and confidence intervals over per-query scores.

Retrieval models are compared on the *same* queries, so the tests here are paired: they
work on the per-query differences d_i = a_i - b_i (Smucker, Allan & Carterette, "A
comparison of statistical significance tests for information retrieval evaluation",
CIKM 2007).  Everything is vectorised NumPy, drawn from ``np.random.default_rng(seed)``
(so results are reproducible) and processed in chunks of at most ``_CHUNK_ELEMENTS``
numbers (so 10,000 resamples of 10,000 queries stay within a few tens of MB).

When several candidates are compared with one baseline, adjust the p-values with
:func:`holm` before reading them against alpha.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from embedlab.errors import EmbedlabError, shorten

_CHUNK_ELEMENTS = 1 << 22  # numbers held per chunk of resamples (32 MB as float64)
_MIN_RESAMPLES = 100
_T = TypeVar("_T")
# A query id, or (dataset, query id) when the queries of several datasets are pooled.
QueryKey = TypeVar("QueryKey", str, tuple[str, str])
# Permuted statistics within this fraction of mean|d| of |observed| count as ties: they
# differ only by floating-point summation order (ties are common with discrete metrics).
_TIE_RTOL = 1e-9


@dataclass(frozen=True)
class Interval:
    """A confidence interval for the mean score over queries."""

    mean: float
    low: float
    high: float
    confidence: float
    method: str


@dataclass(frozen=True)
class TestResult:
    """A paired two-sided test: ``statistic`` is mean(a - b), ``resamples`` the null draws used."""

    __test__ = False  # not a pytest test class

    statistic: float
    p_value: float
    method: str
    n: int
    resamples: int


def paired_arrays(
    per_query_a: Mapping[QueryKey, float], per_query_b: Mapping[QueryKey, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Two systems' per-query scores aligned by query id (sorted), ready for the paired tests.

    Both must score exactly the same queries: a query scored by only one system would
    silently bias a paired comparison, so it is an error rather than dropped.
    """
    only_a = sorted(set(per_query_a) - set(per_query_b))
    only_b = sorted(set(per_query_b) - set(per_query_a))
    if only_a or only_b:
        example = shorten(str((only_a or only_b)[0]))
        side = "first" if only_a else "second"
        raise EmbedlabError(
            "the two systems were scored on different queries",
            found=f"{len(only_a)} only in the first, {len(only_b)} only in the second (e.g. {example} in the {side})",
            expected="per-query scores for the same query ids",
            hint="evaluate both systems on the same queries and qrels",
        )
    ids = sorted(per_query_a)
    a = np.array([per_query_a[q] for q in ids], dtype=np.float64)
    b = np.array([per_query_b[q] for q in ids], dtype=np.float64)
    return a, b


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval for the mean over queries (Efron & Tibshirani 1993, ch. 13).

    Draw ``resamples`` samples of n queries with replacement, take each sample's mean
    m*_1..m*_B; the interval is [q_{alpha/2}, q_{1-alpha/2}] of the m*, alpha = 1 - confidence
    (quantiles linearly interpolated, as ``np.quantile`` and ``scipy.stats.bootstrap`` do).
    """
    x = _values(values, "values")
    _check_n(x.size, minimum=2)
    _check_confidence(confidence)
    _check_resamples(resamples)
    rng = np.random.default_rng(seed)
    n = x.size

    def draw(rows: int) -> np.ndarray:
        return x[rng.integers(0, n, size=(rows, n))].mean(axis=1)

    means = np.concatenate(list(_chunks(resamples, n, draw)))
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean()), float(low), float(high), confidence, "percentile bootstrap")


def paired_randomization_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, resamples: int = 10_000, seed: int = 0
) -> TestResult:
    """Two-sided Fisher randomization (sign-flip) test of mean(a - b) = 0.

    Under the null hypothesis the labels "a" and "b" are exchangeable within each query, so
    each d_i = a_i - b_i is as likely as -d_i.  With t = mean(d) and t*_s = mean(s * d) for
    random sign vectors s in {-1, +1}^n, p = (#{|t*_s| >= |t|} + 1) / (resamples + 1)
    (the observed labelling counts once: Phipson & Smyth 2010).  When 2^n <= resamples all
    2^n sign vectors are enumerated instead and p = #{|t*_s| >= |t|} / 2^n exactly.
    Recommended for IR by Smucker, Allan & Carterette (CIKM 2007).
    """
    d = _differences(a, b)
    _check_resamples(resamples)
    n = d.size
    observed = float(d.mean())
    threshold = abs(observed) - _TIE_RTOL * float(np.abs(d).mean())

    def count(signs: np.ndarray) -> int:
        return int(np.count_nonzero(np.abs(signs @ d) / n >= threshold))

    if n < 63 and 2**n <= resamples:
        total = 2**n
        bits = np.arange(n, dtype=np.int64)

        def exact(start: int, rows: int) -> np.ndarray:
            codes = np.arange(start, start + rows, dtype=np.int64)[:, None]
            return 1.0 - 2.0 * ((codes >> bits) & 1).astype(np.float64)

        hits = sum(count(exact(start, rows)) for start, rows in _spans(total, n))
        return TestResult(observed, hits / total, "randomization (exact)", n, int(total))

    rng = np.random.default_rng(seed)

    def draw(rows: int) -> int:
        return count(1.0 - 2.0 * rng.integers(0, 2, size=(rows, n), dtype=np.int8).astype(np.float64))

    hits = sum(_chunks(resamples, n, draw))
    return TestResult(observed, (hits + 1) / (resamples + 1), "randomization (Monte Carlo)", n, int(resamples))


def paired_bootstrap_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, resamples: int = 10_000, seed: int = 0
) -> TestResult:
    """Two-sided paired bootstrap test of mean(a - b) = 0, shift method.

    Shift the differences to satisfy the null, z_i = d_i - mean(d), resample z with
    replacement and take t*_r = mean(z*_r); p = (#{|t*_r| >= |t|} + 1) / (resamples + 1) with
    t = mean(d) (Efron & Tibshirani 1993, ch. 16; used for IR by Sakai, SIGIR 2006, who
    studentises the statistic; here the plain mean, like the randomization test).
    """
    d = _differences(a, b)
    _check_resamples(resamples)
    n = d.size
    observed = float(d.mean())
    z = d - observed
    threshold = abs(observed) - _TIE_RTOL * float(np.abs(d).mean())
    rng = np.random.default_rng(seed)

    def draw(rows: int) -> int:
        means = z[rng.integers(0, n, size=(rows, n))].mean(axis=1)
        return int(np.count_nonzero(np.abs(means) >= threshold))

    hits = sum(_chunks(resamples, n, draw))
    return TestResult(observed, (hits + 1) / (resamples + 1), "bootstrap (shift)", n, int(resamples))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni step-down adjusted p-values, in the input order (Holm 1979).

    With p_(1) <= ... <= p_(m) sorted ascending, adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)).
    Rejecting where adj <= alpha controls the family-wise error rate at alpha.
    """
    try:
        p = np.asarray(p_values, dtype=np.float64).ravel()
    except (TypeError, ValueError) as exc:
        raise EmbedlabError("p-values must be numbers", found=shorten(repr(p_values))) from exc
    bad = np.flatnonzero(~((p >= 0) & (p <= 1)))
    if bad.size:
        found = f"{float(p[bad[0]])!r} at position {int(bad[0])}"
        raise EmbedlabError("p-values must lie in [0, 1]", found=found, expected="0 <= p <= 1")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(steps)
    return [float(v) for v in adjusted]


# --- helpers --------------------------------------------------------------------------------------


def _spans(total: int, width: int) -> Iterator[tuple[int, int]]:
    """(start, rows) spans covering ``total`` rows of ``width`` numbers, ~_CHUNK_ELEMENTS per span."""
    step = max(1, _CHUNK_ELEMENTS // max(1, width))
    for start in range(0, total, step):
        yield start, min(step, total - start)


def _chunks(total: int, width: int, draw: Callable[[int], _T]) -> Iterator[_T]:
    return (draw(rows) for _, rows in _spans(total, width))


def _values(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EmbedlabError(f"{name} must be numbers", found=shorten(repr(values))) from exc
    if x.ndim != 1:
        raise EmbedlabError(f"{name} must be one score per query", found=f"an array of shape {x.shape}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        found = f"{float(x[bad[0]])!r} at position {int(bad[0])}"
        raise EmbedlabError(f"{name} must be finite", found=found, expected="finite scores")
    return x


def _differences(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray:
    x, y = _values(a, "a"), _values(b, "b")
    if x.size != y.size:
        raise EmbedlabError(
            "paired tests need one score per query from each system",
            found=f"{x.size} scores for a and {y.size} for b",
            hint="align them by query id with paired_arrays()",
        )
    _check_n(x.size, minimum=2)
    return x - y


def _check_n(n: int, *, minimum: int) -> None:
    if n < minimum:
        found = f"{n} {'query' if n == 1 else 'queries'}"
        raise EmbedlabError("too few queries for a statistic", found=found, expected=f"at least {minimum} queries")


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0.0 < confidence < 1.0:
        raise EmbedlabError("confidence must be a fraction", found=repr(confidence), expected="0 < confidence < 1")


def _check_resamples(resamples: int) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < _MIN_RESAMPLES:
        raise EmbedlabError(
            f"resamples must be an integer >= {_MIN_RESAMPLES}", found=repr(resamples), hint="10,000 is typical"
        )

"""Paired comparison of systems on the same queries: one place for the test, the interval and Holm.

``select`` (candidates against the best), collection evaluation (every pair of search modes)
and the fine-tune verdict (fine-tuned against base) all compare per-query scores the same way,
so the numbers they report mean the same thing.  For systems A and B scored on the same n
queries (aligned by query id with :func:`~embedlab.eval.stats.paired_arrays`):

- difference: d_i = a_i - b_i and t = mean(d) = (1/n) sum_i d_i (positive: A is better);
- interval: percentile bootstrap of mean(d): resample the n queries with replacement B times,
  take the B means m*_r; the interval is [q_{alpha/2}, q_{1-alpha/2}] of the m*,
  alpha = 1 - confidence (Efron 1979; Efron & Tibshirani 1993, ch. 13);
- test: two-sided paired randomization (sign-flip) test of mean(d) = 0: under the null the
  labels A and B are exchangeable within a query, so p is the share of sign vectors s with
  |mean(s * d)| >= |t|; all 2^n vectors are enumerated when 2^n <= B, else B are drawn and
  p = (hits + 1) / (B + 1) (Fisher 1935, *The Design of Experiments*; Pitman 1937, "Significance
  tests which may be applied to samples from any populations", JRSS Suppl. 4; recommended for
  IR by Smucker, Allan & Carterette, CIKM 2007);
- family: testing m comparisons at once inflates false positives, so p-values are Holm-adjusted
  over the comparisons a caller actually makes: with p_(1) <= ... <= p_(m),
  adj_(i) = max_{j<=i} min(1, (m - j + 1) p_(j)) (Holm 1979, "A simple sequentially rejective
  multiple test procedure", Scand. J. Statist. 6:65-70).  Against a reference, the family is
  the m = k - 1 other systems; all pairs, m = k (k - 1) / 2; one pair alone, m = 1 (p_holm = p).

Every draw comes from ``np.random.default_rng(seed)``, one generator per statistic, so the
interval and the test of a pair do not depend on which other pairs are compared.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from embedlab.errors import EmbedlabError
from embedlab.eval.stats import Interval, QueryKey, bootstrap_ci, holm, paired_arrays, paired_randomization_test

RESAMPLES = 10_000
CONFIDENCE = 0.95
_BOOTSTRAP = "percentile bootstrap"  # the method bootstrap_ci names


@dataclass(frozen=True)
class PairedComparison:
    """System ``a`` against system ``b`` on one metric over the same ``queries``.

    ``difference`` is mean(a_i - b_i) with its bootstrap interval [``ci_low``, ``ci_high``];
    ``p_value`` is the randomization test's, ``p_holm`` the same adjusted over the family the
    comparison was made in.  Flat fields, so ``vars()`` is the JSON that ``comparisons.json`` has.
    """

    a: str
    b: str
    metric: str
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    queries: int
    confidence: float
    test: str

    @property
    def difference_interval(self) -> Interval:
        return Interval(self.difference, self.ci_low, self.ci_high, self.confidence, _BOOTSTRAP)


def compare_pair(
    scores_a: Mapping[QueryKey, float],
    scores_b: Mapping[QueryKey, float],
    *,
    a: str = "a",
    b: str = "b",
    metric: str,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> PairedComparison:
    """One comparison, a family of one (``p_holm == p_value``); see the module docstring."""
    return _pair(scores_a, scores_b, a=a, b=b, metric=metric, seed=seed, resamples=resamples, confidence=confidence)


def compare_to_reference(
    per_query: Mapping[str, Mapping[QueryKey, float]],
    reference: str,
    *,
    metric: str,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> list[PairedComparison]:
    """Every other system (``a``, in mapping order) against ``reference`` (``b``), Holm over k - 1."""
    if reference not in per_query:
        raise EmbedlabError(
            f"the reference system {reference!r} has no scores",
            found=", ".join(map(repr, per_query)) or "no systems",
            expected="the reference among the compared systems",
        )
    pairs = [(name, reference) for name in per_query if name != reference]
    return _family(per_query, pairs, metric=metric, seed=seed, resamples=resamples, confidence=confidence)


def compare_all_pairs(
    per_query: Mapping[str, Mapping[QueryKey, float]],
    *,
    metric: str,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> list[PairedComparison]:
    """Every two systems (``a`` before ``b`` in mapping order), Holm over k (k - 1) / 2 pairs."""
    pairs = list(itertools.combinations(per_query, 2))
    return _family(per_query, pairs, metric=metric, seed=seed, resamples=resamples, confidence=confidence)


def mean_interval(
    scores: Mapping[QueryKey, float], *, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Interval:
    """One system's mean with its bootstrap interval, queries in id order as in a comparison
    (the resampled means depend on the order, so this matches the pair's own alignment)."""
    values = np.array([scores[q] for q in sorted(scores)], dtype=np.float64)
    return bootstrap_ci(values, confidence=confidence, resamples=resamples, seed=seed)


def _family(
    per_query: Mapping[str, Mapping[QueryKey, float]],
    pairs: list[tuple[str, str]],
    *,
    metric: str,
    seed: int,
    resamples: int,
    confidence: float,
) -> list[PairedComparison]:
    raw = [
        _pair(
            per_query[a], per_query[b], a=a, b=b, metric=metric, seed=seed, resamples=resamples, confidence=confidence
        )
        for a, b in pairs
    ]
    adjusted = holm([c.p_value for c in raw]) if raw else []
    return [replace(c, p_holm=p) for c, p in zip(raw, adjusted, strict=True)]


def _pair(
    scores_a: Mapping[QueryKey, float],
    scores_b: Mapping[QueryKey, float],
    *,
    a: str,
    b: str,
    metric: str,
    seed: int,
    resamples: int,
    confidence: float,
) -> PairedComparison:
    try:
        x, y = paired_arrays(scores_a, scores_b)
    except EmbedlabError as exc:
        raise EmbedlabError(
            f"{a!r} and {b!r} were scored on different queries ({metric})",
            found=exc.found,
            expected=exc.expected,
            hint=exc.hint,
        ) from exc
    test = paired_randomization_test(x, y, resamples=resamples, seed=seed)
    interval = bootstrap_ci(x - y, confidence=confidence, resamples=resamples, seed=seed)
    return PairedComparison(
        a=a,
        b=b,
        metric=metric,
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=interval.mean,
        ci_low=interval.low,
        ci_high=interval.high,
        p_value=test.p_value,
        p_holm=test.p_value,
        queries=int(x.size),
        confidence=confidence,
        test=test.method,
    )

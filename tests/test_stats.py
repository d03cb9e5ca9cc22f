"""Significance tests and intervals, checked against scipy (and statsmodels / ranx when installed)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from scipy import stats as sps

from embedlab.errors import EmbedlabError
from embedlab.eval import stats
from embedlab.eval.stats import (
    Interval,
    TestResult,
    bootstrap_ci,
    holm,
    paired_arrays,
    paired_bootstrap_test,
    paired_randomization_test,
)

# scipy >= 1.15 takes ``rng``; older versions ``random_state``.
_SEED_KW = "rng" if "rng" in inspect.signature(sps.permutation_test).parameters else "random_state"


def _mean_diff(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


def _scipy_paired_p(a, b, *, n_resamples=9999, seed=1):
    res = sps.permutation_test(
        (a, b),
        _mean_diff,
        permutation_type="samples",
        vectorized=True,
        alternative="two-sided",
        n_resamples=n_resamples,
        **{_SEED_KW: np.random.default_rng(seed)},
    )
    return float(res.pvalue)


def _scores(n, *, shift, seed, discrete=False):
    """Per-query scores of two systems; ``discrete`` gives MRR-like values with many ties."""
    rng = np.random.default_rng(seed)
    if discrete:
        levels = np.array([0.0, 0.25, 1 / 3, 0.5, 1.0])
        a = rng.choice(levels, size=n)
        b = np.clip(a - rng.choice([-0.25, 0.0, 0.25, 0.5], size=n, p=[0.2, 0.4, 0.2, 0.2]), 0, 1)
        return a, b
    a = rng.uniform(0.2, 0.9, size=n)
    return a, np.clip(a - shift + rng.normal(0, 0.15, size=n), 0, 1)


# --- randomization test --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "shift", "discrete"), [(0, 0.05, False), (1, 0.12, False), (2, 0.0, True), (3, 0.0, True)]
)
def test_randomization_exact_matches_scipy(seed, shift, discrete):
    a, b = _scores(10, shift=shift, seed=seed, discrete=discrete)
    ours = paired_randomization_test(a, b)
    assert ours.method == "randomization (exact)"
    assert ours.resamples == 2**10 and ours.n == 10
    assert ours.statistic == pytest.approx(float(np.mean(a - b)), abs=1e-15)
    assert ours.p_value == pytest.approx(_scipy_paired_p(a, b), abs=1e-12)


def test_randomization_monte_carlo_matches_scipy():
    a, b = _scores(60, shift=0.01, seed=5)
    ours = paired_randomization_test(a, b, resamples=20_000, seed=3)
    assert ours.method == "randomization (Monte Carlo)"
    assert ours.resamples == 20_000
    theirs = _scipy_paired_p(a, b, n_resamples=20_000, seed=4)
    assert 0.005 < theirs < 0.5  # a p-value where the comparison means something
    assert ours.p_value == pytest.approx(theirs, abs=0.02)


def test_randomization_is_deterministic_and_symmetric():
    a, b = _scores(40, shift=0.03, seed=7)
    first = paired_randomization_test(a, b, seed=11)
    assert first == paired_randomization_test(a, b, seed=11)
    swapped = paired_randomization_test(b, a, seed=11)
    assert swapped.statistic == pytest.approx(-first.statistic)
    assert swapped.p_value == pytest.approx(first.p_value, abs=1e-12)


def test_identical_systems_give_p_one():
    a = np.array([0.1, 0.5, 0.5, 1.0, 0.0])
    assert paired_randomization_test(a, a).p_value == 1.0
    assert paired_randomization_test(np.tile(a, 10), np.tile(a, 10)).p_value == 1.0
    assert paired_bootstrap_test(np.tile(a, 10), np.tile(a, 10)).p_value == 1.0


def test_exact_enumeration_switches_on_resamples():
    a, b = _scores(12, shift=0.05, seed=8)
    assert paired_randomization_test(a, b, resamples=4096).method == "randomization (exact)"
    assert paired_randomization_test(a, b, resamples=4095).method == "randomization (Monte Carlo)"


def test_chunking_does_not_change_exact_results(monkeypatch):
    a, b = _scores(13, shift=0.04, seed=9)
    whole = paired_randomization_test(a, b)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 100)  # 7 rows per chunk
    assert paired_randomization_test(a, b) == whole
    chunked_ci = bootstrap_ci(a, resamples=500)
    assert chunked_ci.low <= chunked_ci.mean <= chunked_ci.high


def test_clear_effect_is_significant():
    a, b = _scores(200, shift=0.08, seed=10)
    assert paired_randomization_test(a, b).p_value < 0.001
    assert paired_bootstrap_test(a, b).p_value < 0.001


# --- bootstrap -----------------------------------------------------------------------------------


def test_bootstrap_test_agrees_with_randomization():
    a, b = _scores(80, shift=0.03, seed=12)
    boot = paired_bootstrap_test(a, b, seed=1)
    assert boot.method == "bootstrap (shift)" and boot.n == 80 and boot.resamples == 10_000
    assert boot.p_value == pytest.approx(paired_randomization_test(a, b, seed=1).p_value, abs=0.03)


def test_bootstrap_ci_contains_mean_and_matches_scipy():
    values = np.random.default_rng(13).beta(2, 3, size=120)
    ci = bootstrap_ci(values, confidence=0.9, seed=2)
    assert isinstance(ci, Interval)
    assert ci.method == "percentile bootstrap" and ci.confidence == 0.9
    assert ci.mean == pytest.approx(values.mean())
    assert ci.low < ci.mean < ci.high
    ref = sps.bootstrap(
        (values,),
        np.mean,
        confidence_level=0.9,
        method="percentile",
        n_resamples=10_000,
        vectorized=True,
        **{_SEED_KW: np.random.default_rng(3)},
    ).confidence_interval
    assert ci.low == pytest.approx(ref.low, abs=0.01)
    assert ci.high == pytest.approx(ref.high, abs=0.01)


def test_bootstrap_ci_shrinks_with_n_and_is_deterministic():
    rng = np.random.default_rng(14)
    small, large = rng.uniform(size=50), rng.uniform(size=2000)
    narrow, wide = bootstrap_ci(large), bootstrap_ci(small)
    assert narrow.high - narrow.low < 0.5 * (wide.high - wide.low)
    assert bootstrap_ci(small, seed=5) == bootstrap_ci(small, seed=5)
    assert bootstrap_ci(small, seed=5) != bootstrap_ci(small, seed=6)
    higher = bootstrap_ci(small, confidence=0.99)
    assert higher.low <= wide.low and higher.high >= wide.high


# --- Holm ----------------------------------------------------------------------------------------


def test_holm_textbook_example():
    # Wikipedia, "Holm-Bonferroni method": four hypotheses.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)


def test_holm_properties():
    raw = np.random.default_rng(15).uniform(0, 0.3, size=25)
    raw[[3, 9]] = raw[4]  # ties
    adjusted = np.array(holm(raw))
    assert np.all(adjusted >= raw) and np.all(adjusted <= 1.0)
    order = np.argsort(raw, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert holm([]) == []
    assert holm([0.2]) == [0.2]
    assert holm([0.6, 0.7]) == [1.0, 1.0]


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    raw = np.random.default_rng(16).uniform(0, 0.2, size=30)
    expected = multitest.multipletests(raw, method="holm")[1]
    assert holm(raw) == pytest.approx(list(expected), abs=1e-12)


# --- alignment and input checks ------------------------------------------------------------------


def test_paired_arrays_aligns_by_query_id():
    a, b = paired_arrays({"q2": 0.2, "q1": 0.1, "q3": 0.3}, {"q3": 3.0, "q1": 1.0, "q2": 2.0})
    assert a.tolist() == [0.1, 0.2, 0.3] and b.tolist() == [1.0, 2.0, 3.0]


def test_paired_arrays_reports_differing_queries():
    with pytest.raises(EmbedlabError, match=r"2 only in the first, 1 only in the second \(e.g. 'q4'"):
        paired_arrays({"q1": 1, "q4": 1, "q5": 1}, {"q1": 1, "q9": 1})


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: paired_randomization_test([0.1, 0.2], [0.1]), "2 scores for a and 1 for b"),
        (lambda: paired_randomization_test([0.1], [0.2]), "at least 2 queries"),
        (lambda: paired_bootstrap_test([0.1], [0.2]), "at least 2 queries"),
        (lambda: bootstrap_ci([0.5]), "at least 2 queries"),
        (lambda: bootstrap_ci([0.1, 0.2], confidence=95), "0 < confidence < 1"),
        (lambda: bootstrap_ci([0.1, 0.2], confidence=0.0), "0 < confidence < 1"),
        (lambda: bootstrap_ci([0.1, 0.2], resamples=10), "integer >= 100"),
        (lambda: paired_randomization_test([0.1, 0.2], [0.3, 0.4], resamples=99.5), "integer >= 100"),
        (lambda: paired_randomization_test([0.1, float("nan")], [0.3, 0.4]), "a must be finite"),
        (lambda: bootstrap_ci([[0.1, 0.2]]), "one score per query"),
        (lambda: bootstrap_ci(["x", "y"]), "must be numbers"),
        (lambda: holm([0.1, 1.5]), "1.5 at position 1"),
        (lambda: holm([float("nan")]), "must lie in"),
    ],
)
def test_bad_input_gives_clear_errors(call, message):
    with pytest.raises(EmbedlabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_result_types_are_frozen():
    result = paired_randomization_test([0.1, 0.2, 0.3], [0.0, 0.2, 0.1])
    assert isinstance(result, TestResult)
    with pytest.raises(AttributeError):
        result.p_value = 0.0  # type: ignore[misc]


# --- ranx (optional) -----------------------------------------------------------------------------


def test_randomization_matches_ranx():
    pytest.importorskip("ranx")
    from ranx.statistical_tests import fisher_randomization_test

    a, b = _scores(80, shift=0.04, seed=17)  # continuous scores: ranx counts ties without tolerance
    theirs, _ = fisher_randomization_test(b, a, 20_000, 0.05, 42)
    ours = paired_randomization_test(a, b, resamples=20_000, seed=42)
    assert 0.005 < theirs < 0.5
    assert ours.p_value == pytest.approx(float(theirs), abs=0.02)

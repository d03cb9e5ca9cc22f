"""Drift tests are calibrated: under no drift (both samples from one distribution, seeded) the share of
runs alarming at level alpha stays near alpha; under a real shift they alarm.  Bounds: 200 runs at
alpha = 0.05 have a binomial standard deviation of sqrt(0.05 * 0.95 / 200) = 0.015, so [0, 0.10] is
alpha +- 3.2 sd (a correct test fails it about once in 1,000 seeds; these seeds are fixed)."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.monitor import drift

RUNS, ALPHA = 200, 0.05


def _alarm_rate(test, shift: float, *, n: int = 30, dim: int = 8) -> float:
    rng = np.random.default_rng(7)
    alarms = 0
    for run in range(RUNS):
        x = rng.normal(size=(n, dim))
        y = rng.normal(size=(n, dim))
        y[:, 0] += shift
        alarms += test(x, y, permutations=99, seed=run).p_value < ALPHA
    return alarms / RUNS


@pytest.mark.parametrize("test", [drift.mmd_test, drift.centroid_test])
def test_two_sample_tests_false_alarm_near_alpha_and_detect_a_shift(test) -> None:
    assert _alarm_rate(test, 0.0) <= 0.10
    assert _alarm_rate(test, 0.0) >= 0.01  # not trivially silent either
    assert _alarm_rate(test, 1.5) >= 0.9  # a 1.5-sd mean shift in one of 8 dimensions, 30 vs 30


def test_out_of_domain_share_with_an_estimated_quantile_is_calibrated() -> None:
    """The threshold is the reference's 5% quantile (estimated from 400 scores): the live share below
    it is tested against 5% with the exact binomial tail."""
    rng = np.random.default_rng(3)
    alarms = detected = 0
    for _ in range(RUNS):
        reference = rng.normal(size=400)
        threshold = np.quantile(reference, 0.05)
        live = rng.normal(size=100)
        alarms += drift.binomial_excess(int((live < threshold).sum()), live.size, quantile=0.05).p_value < ALPHA
        shifted = rng.normal(loc=-1.0, size=100)  # queries the corpus answers worse
        detected += drift.binomial_excess(int((shifted < threshold).sum()), 100, quantile=0.05).p_value < ALPHA
    assert alarms / RUNS <= 0.10 and detected / RUNS >= 0.9


def test_vocabulary_shift_test_is_calibrated() -> None:
    rng = np.random.default_rng(5)
    alarms = sum(
        drift.mean_shift_test(rng.beta(1, 9, 60), rng.beta(1, 9, 60), permutations=199, seed=i).p_value < ALPHA
        for i in range(RUNS)
    )
    assert alarms / RUNS <= 0.10
    assert drift.mean_shift_test(rng.beta(1, 9, 60), rng.beta(3, 7, 60), seed=1).p_value < 0.01


def test_binomial_tail_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for k, n, q in [(0, 10, 0.1), (3, 10, 0.05), (17, 200, 0.05), (200, 200, 0.5), (60, 1000, 0.05)]:
        expected = stats.binom.sf(k - 1, n, q)
        assert drift.binomial_sf(k, n, q) == pytest.approx(expected, rel=1e-9, abs=1e-300)  # log-space sum: ~1e-12


def test_nn_distance_grows_with_distance_from_the_reference() -> None:
    rng = np.random.default_rng(1)
    topic = np.eye(16)  # queries cluster around a topic direction (cosine: direction is what counts)
    reference = rng.normal(size=(200, 16)) + 4 * topic[0]
    near = rng.normal(size=(50, 16)) + 4 * topic[0]
    far = rng.normal(size=(50, 16)) + 4 * topic[1]
    assert drift.nn_distance(reference, far) > drift.nn_distance(reference, near)

"""Team-draft interleaving properties, the sign test against exact binomial values, and the
sample-size formula against a hand computation (pure functions, no server)."""

from __future__ import annotations

import math
import random

import pytest

from embedlab.monitor.ab import sign_test, sign_test_sessions
from embedlab.serve.interleave import impression_rng, team_draft


def _rankings(rng: random.Random, pool: int = 30, length: int = 15) -> tuple[list[int], list[int]]:
    return rng.sample(range(pool), length), rng.sample(range(pool), length)


@pytest.mark.parametrize("seed", range(200))
def test_team_draft_properties(seed: int) -> None:
    rng = random.Random(seed)
    a, b = _rankings(rng)
    k = rng.randint(1, 12)
    picks = team_draft(a, b, k=k, rng=random.Random(seed))
    shown = [(a, b)[p.team][p.index] for p in picks]
    assert len(shown) == k and len(set(shown)) == k  # k distinct results (both lists hold >= 15 unique)
    assert all(p.team in (0, 1) for p in picks)  # every position is one arm's, and only one's
    sizes = [0, 0]
    for n, p in enumerate(picks, start=1):
        sizes[p.team] += 1
        assert abs(sizes[0] - sizes[1]) <= 1  # at every prefix, not only at the end
        if n % 2 == 0:  # after m picks each, both arms' top m are shown (picked by either team)
            m = n // 2
            assert set(a[:m]) | set(b[:m]) <= set(shown[:n])
    for p in picks:  # a team's pick is its best result not shown before it
        ranking = (a, b)[p.team]
        before = set(shown[: picks.index(p)])
        assert ranking[p.index] == next(x for x in ranking if x not in before)


def test_team_draft_is_deterministic_with_a_seed_and_varies_without() -> None:
    a, b = list(range(10)), list(range(10, 20))
    runs = {tuple(team_draft(a, b, k=10, rng=random.Random(s))) for s in range(20)}
    assert len(runs) > 1  # the coins matter
    assert team_draft(a, b, k=10, rng=random.Random(7)) == team_draft(a, b, k=10, rng=random.Random(7))
    first = team_draft(a, b, k=10, rng=impression_rng(3, "s1", "q"))
    assert first == team_draft(a, b, k=10, rng=impression_rng(3, "s1", "q"))


def test_identical_rankings_interleave_to_the_same_list_and_one_list_may_run_out() -> None:
    a = [5, 3, 9, 1]
    picks = team_draft(a, list(a), k=4, rng=random.Random(0))
    assert [(a, a)[p.team][p.index] for p in picks] == a  # same order, credited by coin
    short = team_draft([1], [2, 3, 4, 5], k=4, rng=random.Random(0))
    assert [p.team for p in short].count(0) == 1 and len(short) == 4  # B keeps picking once A is empty
    assert team_draft([], [], k=3, rng=random.Random(0)) == []


def test_sign_test_matches_the_exact_binomial() -> None:
    # 9 wins of 10: two-sided p = 2 (C(10,9) + C(10,10)) / 2^10 = 22/1024
    assert sign_test(9, 1) == pytest.approx(22 / 1024, rel=1e-12)  # exact sums: only rounding error
    assert sign_test(1, 9) == pytest.approx(22 / 1024, rel=1e-12)
    # 60 of 100: 2 sum_{i>=60} C(100,i) / 2^100
    exact = 2 * sum(math.comb(100, i) for i in range(60, 101)) / 2**100
    assert sign_test(60, 40) == pytest.approx(exact, rel=1e-9)  # log-space sum of 41 terms
    assert sign_test(5, 5) == 1.0 and sign_test(0, 0) == 1.0


def test_sessions_needed_follows_the_normal_approximation() -> None:
    # q = 0.6 of decided sessions, all sessions decided, alpha 0.05, power 0.8:
    # ((1.959964 * 0.5 + 0.841621 * sqrt(0.24)) / 0.1)^2 = 193.85
    # (rel 1e-3: the hand value is rounded to 2 decimals and the z quantiles to 6 digits)
    assert sign_test_sessions(60, 40, 0, alpha=0.05, power=0.8) == pytest.approx(193.85, rel=1e-3)
    # half of the sessions tie: twice as many sessions
    assert sign_test_sessions(60, 40, 100, alpha=0.05, power=0.8) == pytest.approx(2 * 193.85, rel=1e-3)
    assert sign_test_sessions(50, 50, 3, alpha=0.05, power=0.8) is None

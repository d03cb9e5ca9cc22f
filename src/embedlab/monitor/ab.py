"""A/B verdicts from the logged searches: interleaving preference or a traffic-split comparison.

Interleaving (searches whose rows carry ``teams``, see :mod:`embedlab.serve.interleave`): each click
is credited to the arm that contributed the clicked result.  Per session (the session id, else the
single search) the arm with more credited clicks wins; equal counts (no click included) tie.  This
is the session-level team-draft outcome of Chapelle et al. 2012 ("Large-scale validation and
analysis of interleaved search evaluation", TOIS 30(1), section 4).

- preference ``delta = (wins_A - wins_B) / sessions``, in [-1, 1]; its percentile bootstrap interval
  resamples sessions (``eval.stats.bootstrap_ci`` over per-session outcomes +1 / -1 / 0);
- two-sided sign test over decided sessions: ``p = min(1, 2 P(X >= max(wins_A, wins_B)))``,
  X ~ Binomial(wins_A + wins_B, 1/2) (ties carry no information and are left out);
- sessions needed (normal approximation of the sign test, Noether 1987, JASA 82(398)): with
  ``q`` = A's share of decided sessions and ``f`` the decided share of sessions,
  ``n = ((z_{1-alpha/2} / 2 + z_{power} sqrt(q (1 - q))) / (q - 1/2))^2 / f``.

Traffic split (rows of one arm each): per session the mean reciprocal rank of the first click of its
searches (0 without a click; the online MRR of :mod:`embedlab.monitor.online`), compared between the
two arms' sessions with Welch's statistic ``d / sqrt(s_A^2/n_A + s_B^2/n_B)`` read against the normal
distribution (two-sided; sessions number in the hundreds), a percentile bootstrap interval of the
difference (each arm resampled on its own), and sessions needed per arm
``n = (z_{1-alpha/2} + z_{power})^2 (s_A^2 + s_B^2) / d^2``.

The verdict: ``A wins`` / ``B wins`` when p < alpha, else ``no difference yet``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from embedlab.errors import EmbedlabError
from embedlab.eval.stats import bootstrap_ci
from embedlab.monitor.drift import binomial_sf
from embedlab.monitor.events import Search
from embedlab.monitor.online import Options, group_metrics, reformulated

_Z = NormalDist()


@dataclass(frozen=True)
class Outcome:
    """The comparison of arms A and B (``delta`` > 0 favours A)."""

    kind: str  # "interleave" or "split"
    arm_a: str
    arm_b: str
    sessions: int
    wins_a: int  # interleave: sessions won; split: sessions of arm A
    wins_b: int
    ties: int
    delta: float
    low: float | None
    high: float | None
    p_value: float
    needed_sessions: float | None  # interleave: in all; split: per arm; None: no effect seen
    verdict: str
    winner: str | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sign_test(wins_a: int, wins_b: int) -> float:
    """Two-sided exact sign test of ``wins_a`` against ``wins_b`` (ties already left out)."""
    n = wins_a + wins_b
    if n == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_sf(max(wins_a, wins_b), n, 0.5))


def sign_test_sessions(wins_a: int, wins_b: int, ties: int, *, alpha: float, power: float) -> float | None:
    """Sessions an interleaving experiment needs to detect the observed preference (module docstring)."""
    decided = wins_a + wins_b
    if decided == 0 or wins_a == wins_b:
        return None
    q = wins_a / decided
    f = decided / (decided + ties)
    z_a, z_b = _Z.inv_cdf(1 - alpha / 2), _Z.inv_cdf(power)
    return ((z_a * 0.5 + z_b * math.sqrt(q * (1 - q))) / (q - 0.5)) ** 2 / f


def _verdict(p: float, delta: float, alpha: float, a: str, b: str) -> tuple[str, str | None]:
    if p < alpha and delta > 0:
        return "A wins", a
    if p < alpha and delta < 0:
        return "B wins", b
    return "no difference yet", None


def _session_key(s: Search) -> str:
    return s.session or s.search_id


def interleaving(
    searches: Sequence[Search], a: str, b: str, *, alpha: float, power: float, seed: int, resamples: int
) -> Outcome:
    credit: dict[str, list[int]] = {}
    for s in searches:
        counts = credit.setdefault(_session_key(s), [0, 0])
        for rank in s.click_ranks:
            if s.teams is not None and 1 <= rank <= len(s.teams):
                team = s.teams[rank - 1]
                counts[0] += team == a
                counts[1] += team == b
    outcomes = np.array([np.sign(ca - cb) for ca, cb in credit.values()], dtype=np.float64)
    wins_a, wins_b = int((outcomes > 0).sum()), int((outcomes < 0).sum())
    ties = len(outcomes) - wins_a - wins_b
    delta = float(outcomes.mean()) if outcomes.size else 0.0
    low = high = None
    if outcomes.size >= 2:
        interval = bootstrap_ci(outcomes, confidence=1 - alpha, resamples=resamples, seed=seed)
        low, high = interval.low, interval.high
    p = sign_test(wins_a, wins_b)
    verdict, winner = _verdict(p, delta, alpha, a, b)
    needed = sign_test_sessions(wins_a, wins_b, ties, alpha=alpha, power=power)
    return Outcome(
        "interleave", a, b, len(outcomes), wins_a, wins_b, ties, delta, low, high, p, needed, verdict, winner
    )


def _session_mrr(searches: Sequence[Search], arm: str) -> np.ndarray:
    values: dict[str, list[float]] = {}
    for s in searches:
        if s.arm == arm and s.teams is None:
            values.setdefault(_session_key(s), []).append(1.0 / min(s.click_ranks) if s.click_ranks else 0.0)
    return np.array([sum(v) / len(v) for v in values.values()], dtype=np.float64)


def split(
    searches: Sequence[Search], a: str, b: str, *, alpha: float, power: float, seed: int, resamples: int
) -> Outcome:
    xa, xb = _session_mrr(searches, a), _session_mrr(searches, b)
    if xa.size < 2 or xb.size < 2:
        raise EmbedlabError(
            "too few sessions to compare the arms",
            found=f"{xa.size} sessions of {a!r}, {xb.size} of {b!r}",
            expected="at least 2 sessions of each arm",
        )
    d = float(xa.mean() - xb.mean())
    var = float(xa.var(ddof=1) / xa.size + xb.var(ddof=1) / xb.size)
    p = 1.0 if var == 0 else 2.0 * (1.0 - _Z.cdf(abs(d) / math.sqrt(var)))
    if var == 0 and d != 0:
        p = 0.0
    rng = np.random.default_rng(seed)
    diffs = xa[rng.integers(0, xa.size, (resamples, xa.size))].mean(1) - xb[
        rng.integers(0, xb.size, (resamples, xb.size))
    ].mean(1)
    low, high = (float(v) for v in np.quantile(diffs, [alpha / 2, 1 - alpha / 2]))
    needed = None
    if d != 0:
        z = _Z.inv_cdf(1 - alpha / 2) + _Z.inv_cdf(power)
        needed = z**2 * float(xa.var(ddof=1) + xb.var(ddof=1)) / d**2
    verdict, winner = _verdict(p, d, alpha, a, b)
    return Outcome(
        "split", a, b, int(xa.size + xb.size), int(xa.size), int(xb.size), 0, d, low, high, p, needed, verdict, winner
    )


def arm_metrics(searches: Sequence[Search], *, options: Options) -> dict[str, dict[str, float | None]]:
    """Online metrics per arm label (an interleaved pair is one label, ``A|B``), from monitor.online."""
    refs = reformulated(searches, within_s=options.reformulation_s)
    groups: dict[str, list[Search]] = {}
    for s in searches:
        groups.setdefault(s.arm, []).append(s)
    return {
        arm: group_metrics(items, options=options, reformulations=refs, thresholds={})
        for arm, items in sorted(groups.items())
    }


def compare_arms(
    searches: Sequence[Search],
    *,
    arms: tuple[str, str] | None = None,
    kind: str | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    seed: int = 0,
    resamples: int = 2000,
) -> Outcome:
    """The A/B outcome of ``searches`` (see the module docstring).  ``kind`` None: interleaving when
    any search was interleaved, else split; ``arms`` None: the interleaved pair, or the two split arms."""
    if not searches:
        raise EmbedlabError("no searches in this period", hint="widen --since, or serve some A/B traffic first")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise EmbedlabError("invalid --alpha/--power", expected="both between 0 and 1")
    pairs = sorted({s.arm for s in searches if s.teams is not None})
    singles = sorted({s.arm for s in searches if s.teams is None})
    kind = kind or ("interleave" if pairs else "split")
    known = sorted({part for p in pairs for part in p.split("|")}) if kind == "interleave" else singles
    if arms is None:
        if kind == "interleave" and len(pairs) == 1:
            first, second = pairs[0].split("|", 1)
            arms = (first, second)
        elif kind == "split" and len(singles) == 2:
            arms = (singles[0], singles[1])
        else:
            found = ", ".join(pairs if kind == "interleave" else singles) or "none"
            raise EmbedlabError(
                f"cannot tell which two arms to compare ({kind})", found=found, hint="name them: --arms A,B"
            )
    for name in arms:
        if name not in known:
            raise EmbedlabError(
                f"unknown arm {name!r}", expected=f"one of the {kind} arms in this period: {', '.join(known) or 'none'}"
            )
    if arms[0] == arms[1]:
        raise EmbedlabError("the two arms are the same", found=arms[0], expected="two different arms")
    if kind == "interleave":
        chosen = [s for s in searches if s.teams is not None and set(s.arm.split("|")) == set(arms)]
        return interleaving(chosen, *arms, alpha=alpha, power=power, seed=seed, resamples=resamples)
    return split(searches, *arms, alpha=alpha, power=power, seed=seed, resamples=resamples)

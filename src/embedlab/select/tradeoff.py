"""What a recommendation gives up: the better candidates that miss a constraint, by how much
they miss it, and what choosing them would have gained.

A constraint is a line drawn by the user; a candidate 2% over a latency budget that is 0.05
nDCG@10 better deserves a second look, one 300% over does not.  So for every candidate whose
mean nDCG@10 is higher than the recommended one's but that misses a constraint, we state:

- each miss, relative to its limit: ``(value - limit) / limit`` for a maximum (p95, size),
  ``(limit - value) / limit`` for a minimum (nDCG@10), e.g. ``p95 41.0 ms vs --max-p95-ms 30: +37%``;
- the gain: the paired difference of per-query nDCG@10 (candidate - recommended, all datasets'
  queries pooled) with its bootstrap interval and randomization-test p-value, Holm-corrected
  over these candidates (:func:`embedlab.eval.compare.compare_to_reference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from embedlab.eval.compare import QueryKey, compare_to_reference

MAX_SHOWN = 3  # the better candidates named in the reasons (the JSON has them all)


class Limits(Protocol):
    """The constraints (``select.analysis.Constraints``), read-only."""

    @property
    def max_p95_ms(self) -> float | None: ...
    @property
    def max_size_mb(self) -> float | None: ...
    @property
    def min_ndcg10(self) -> float | None: ...


@dataclass(frozen=True)
class Miss:
    """One constraint a candidate misses."""

    what: str  # "p95", "size", "nDCG@10"
    value: float
    limit: float
    option: str  # the CLI option that sets the limit
    unit: str
    is_floor: bool = False  # a minimum (nDCG@10) rather than a maximum

    @property
    def relative(self) -> float:
        """How far past the limit, as a fraction of it (positive = missed)."""
        if self.limit == 0:
            return float("inf")
        return (self.limit - self.value) / self.limit if self.is_floor else (self.value - self.limit) / self.limit

    def describe(self) -> str:
        digits = 4 if self.is_floor else 1
        sign = "-" if self.is_floor else "+"
        return (
            f"{self.what} {self.value:.{digits}f}{self.unit} vs {self.option} {self.limit:g}: "
            f"{sign}{100 * self.relative:.0f}%"
        )


def misses(*, quality: float, worst_p95_ms: float, size_mb: float, limits: Limits) -> tuple[Miss, ...]:
    out = []
    if limits.max_p95_ms is not None and worst_p95_ms > limits.max_p95_ms:
        out.append(Miss("p95", worst_p95_ms, limits.max_p95_ms, "--max-p95-ms", " ms"))
    if limits.max_size_mb is not None and size_mb > limits.max_size_mb:
        out.append(Miss("size", size_mb, limits.max_size_mb, "--max-size-mb", " MB"))
    if limits.min_ndcg10 is not None and quality < limits.min_ndcg10:
        out.append(Miss("nDCG@10", quality, limits.min_ndcg10, "--min-ndcg10", "", is_floor=True))
    return tuple(out)


@dataclass(frozen=True)
class GivenUp:
    """A better candidate that misses a constraint, against the recommended one."""

    model: str
    recommended: str
    mean_difference: float  # nDCG@10, candidate - recommended (what choosing it would gain)
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    misses: tuple[Miss, ...]

    def describe(self, alpha: float) -> str:
        verdict = "significant" if self.p_holm < alpha else "not significant"
        return (
            f"Given up: {self.model} would gain {self.mean_difference:+.4f} nDCG@10 over {self.recommended} "
            f"(95% CI [{self.ci_low:+.4f}, {self.ci_high:+.4f}], Holm p={self.p_holm:.3g}, {verdict} at "
            f"alpha={alpha:g}) but misses {'; '.join(m.describe() for m in self.misses)}."
        )


def given_up(
    recommended: str,
    better: Sequence[tuple[str, tuple[Miss, ...]]],
    per_query: Mapping[str, Mapping[QueryKey, float]],
    *,
    metric: str,
    seed: int,
) -> list[GivenUp]:
    """``better``: (name, misses) of the candidates above ``recommended`` that miss a constraint."""
    if not better:
        return []
    family = {recommended: per_query[recommended], **{name: per_query[name] for name, _ in better}}
    found = {c.a: c for c in compare_to_reference(family, recommended, metric=metric, seed=seed)}
    return [
        GivenUp(
            model=name,
            recommended=recommended,
            mean_difference=found[name].difference,
            ci_low=found[name].ci_low,
            ci_high=found[name].ci_high,
            p_value=found[name].p_value,
            p_holm=found[name].p_holm,
            misses=missed,
        )
        for name, missed in better
    ]

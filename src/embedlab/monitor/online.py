"""Online metrics of a served collection, per time window and per arm, from its stored searches.

Per group of searches (one window of one arm):

- ``queries``; ``ctr`` = share of searches with at least one click; ``ctr_at_1`` / ``ctr_at_3`` =
  share with a click at rank <= 1 / <= 3; ``abandonment`` = 1 - ctr (no click at all);
- ``mrr`` = mean over searches of 1 / rank of the *first* click (0 without a click): the online
  counterpart of MRR (Chapelle et al. 2012, "Large-scale validation and analysis of interleaved
  search evaluation", where click metrics like these are compared with interleaving);
- ``reformulation`` = share of searches (those with a session) followed, within ``reformulation_s``
  seconds in the same session, by a search with another query: the user did not find it;
- ``zero_result`` = share with no hits; ``low_score`` = share whose best score is below the
  reference's low quantile for that search mode (:func:`low_score_thresholds`), None without one;
- ``thumbs_up_share`` = up / (up + down) (None without thumbs);
- ``latency_p50/p95/p99`` (ms, linear-interpolated quantiles of the server-measured latency);
- ``cost_per_1k`` = measured compute seconds per 1,000 queries x ``price_per_hour`` / 3600
  (each query's share of its encoder batch's busy time: what the machine spent on it).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from embedlab.errors import EmbedlabError
from embedlab.monitor.events import Search

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
METRICS = (
    "queries",
    "ctr",
    "ctr_at_1",
    "ctr_at_3",
    "mrr",
    "abandonment",
    "reformulation",
    "zero_result",
    "low_score",
    "thumbs_up_share",
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "cost_per_1k",
)


def parse_duration(text: str, *, option: str = "--window") -> float:
    """``"90s"``, ``"15m"``, ``"1h"``, ``"7d"`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text or "")
    if not match or float(match.group(1)) <= 0:
        raise EmbedlabError(f"invalid {option}", found=repr(text), expected="a duration like 30s, 15m, 1h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Options:
    reformulation_s: float = 60.0
    price_per_hour: float = 0.0
    low_quantile: float = 0.05


def low_score_thresholds(reference: Sequence[Search], *, quantile: float = 0.05) -> dict[str, float]:
    """Per search mode, the ``quantile`` of the reference searches' best scores (scores of different
    modes are on different scales: cosine, BM25, RRF).  Modes with fewer than 20 scored references
    get no threshold (a 5% quantile of a handful of values is noise)."""
    by_mode: dict[str, list[float]] = {}
    for s in reference:
        if s.top_score is not None:
            by_mode.setdefault(s.mode or "", []).append(s.top_score)
    return {mode: float(np.quantile(v, quantile)) for mode, v in by_mode.items() if len(v) >= 20}


def low_score_flags(searches: Sequence[Search], thresholds: Mapping[str, float]) -> list[bool]:
    """For each search with a score and a threshold for its mode: is its best score below it?"""
    flags = []
    for s in searches:
        mode = s.mode or ""
        if s.top_score is not None and mode in thresholds:
            flags.append(s.top_score < thresholds[mode])
    return flags


def reformulated(searches: Sequence[Search], *, within_s: float) -> set[str]:
    """The ids of searches followed within ``within_s`` seconds, in the same session, by another query."""
    sessions: dict[str, list[Search]] = {}
    for s in searches:
        if s.session:
            sessions.setdefault(s.session, []).append(s)
    out: set[str] = set()
    for items in sessions.values():
        items.sort(key=lambda s: s.ts)
        for a, b in itertools.pairwise(items):
            if b.ts - a.ts <= within_s and b.query.strip().lower() != a.query.strip().lower():
                out.add(a.search_id)
    return out


def group_metrics(
    searches: Sequence[Search], *, options: Options, reformulations: set[str], thresholds: Mapping[str, float]
) -> dict[str, float | None]:
    """The metrics of one group (see the module docstring); rates are None for an empty group."""
    n = len(searches)
    out: dict[str, float | None] = dict.fromkeys(METRICS)
    out["queries"] = float(n)
    if n == 0:
        return out
    first = [min(s.click_ranks) if s.click_ranks else None for s in searches]
    ctr = sum(f is not None for f in first) / n
    out["ctr"] = ctr
    out["ctr_at_1"] = sum(f is not None and f <= 1 for f in first) / n
    out["ctr_at_3"] = sum(f is not None and f <= 3 for f in first) / n
    out["abandonment"] = 1.0 - ctr
    out["mrr"] = sum(1.0 / f for f in first if f is not None) / n
    with_session = [s for s in searches if s.session]
    if with_session:
        out["reformulation"] = sum(s.search_id in reformulations for s in with_session) / len(with_session)
    out["zero_result"] = sum(not s.result_ids for s in searches) / n
    flags = low_score_flags(searches, thresholds)
    if flags:
        out["low_score"] = sum(flags) / len(flags)
    ups, downs = sum(s.ups for s in searches), sum(s.downs for s in searches)
    out["thumbs_up_share"] = ups / (ups + downs) if ups + downs else None
    latency = np.array([s.latency_ms for s in searches])
    out["latency_p50"], out["latency_p95"], out["latency_p99"] = (
        float(v) for v in np.quantile(latency, [0.5, 0.95, 0.99])
    )
    compute_s = sum(s.compute_ms for s in searches) / 1000.0
    out["cost_per_1k"] = compute_s / n * 1000.0 * options.price_per_hour / 3600.0
    return out


@dataclass(frozen=True)
class Row:
    window_start: float  # Unix seconds
    arm: str
    metrics: dict[str, float | None]


def windowed(
    searches: Sequence[Search], *, window_s: float, options: Options, thresholds: Mapping[str, float]
) -> list[Row]:
    """One :class:`Row` per (window, arm) holding searches, windows aligned to multiples of ``window_s``,
    in time order; plus the whole period per arm (``window_start`` = -inf)."""
    if window_s <= 0 or not math.isfinite(window_s):
        raise EmbedlabError("invalid window", found=str(window_s), expected="a positive duration")
    refs = reformulated(searches, within_s=options.reformulation_s)
    groups: dict[tuple[float, str], list[Search]] = {}
    for s in searches:
        groups.setdefault((math.floor(s.ts / window_s) * window_s, s.arm), []).append(s)
        groups.setdefault((-math.inf, s.arm), []).append(s)
    return [
        Row(start, arm, group_metrics(items, options=options, reformulations=refs, thresholds=thresholds))
        for (start, arm), items in sorted(groups.items())
    ]

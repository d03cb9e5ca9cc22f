"""Team-draft interleaving of two rankings into one result list (Radlinski, Kurup & Joachims 2008).

Why interleaving: showing one list made of both arms' results to the same user, and crediting each
click to the arm that contributed the clicked result, compares the arms on the same query, the same
user and the same moment; it needs one to two orders of magnitude fewer sessions than splitting the
traffic (Chapelle, Joachims, Radlinski & Yue 2012, "Large-scale validation and analysis of
interleaved search evaluation", TOIS 30(1)).

Team draft ("How does clickthrough data reflect retrieval quality?", CIKM 2008, algorithm 2): like
two captains picking players, in each round a coin decides which arm picks first; each arm then adds
its highest-ranked result not yet in the list.  The arm with fewer picks so far always picks next,
so the team sizes differ by at most one.  When one arm has nothing new left, the other keeps picking.
Results are identified by a key (here the chunk's file, page and character span), so the same chunk
ranked by both arms appears once, credited to the arm that picked it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pick:
    """One shown result: which arm picked it (0 = A, 1 = B) and its index in that arm's ranking."""

    team: int
    index: int


def team_draft(a: Sequence[Hashable], b: Sequence[Hashable], *, k: int, rng: random.Random) -> list[Pick]:
    """The interleaved list of at most ``k`` results from rankings ``a`` and ``b`` (keys, best first).

    Each key appears at most once; the result holds ``min(k, |set(a) | set(b)|)`` picks."""
    if k < 0:
        raise ValueError("k must be >= 0")
    rankings = (a, b)
    shown: set[Hashable] = set()
    cursor = [0, 0]
    sizes = [0, 0]
    picks: list[Pick] = []

    def next_new(team: int) -> int | None:
        ranking = rankings[team]
        while cursor[team] < len(ranking) and ranking[cursor[team]] in shown:
            cursor[team] += 1
        return cursor[team] if cursor[team] < len(ranking) else None

    while len(picks) < k:
        available = [team for team in (0, 1) if next_new(team) is not None]
        if not available:
            break
        if len(available) == 1:
            team = available[0]
        elif sizes[0] != sizes[1]:
            team = 0 if sizes[0] < sizes[1] else 1
        else:
            team = rng.randrange(2)  # the coin of this round: who picks first
        index = cursor[team]
        shown.add(rankings[team][index])
        sizes[team] += 1
        picks.append(Pick(team, index))
    return picks


def impression_rng(seed: int, session: str | None, query: str) -> random.Random:
    """The coins of one impression: fixed by (seed, session, query), so a replayed session sees the same
    list (a user who repeats a query is not shown a reshuffled page) and simulations are reproducible."""
    digest = hashlib.sha256(f"{seed}\x1f{session or ''}\x1f{query}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))

"""The stored searches of a served collection, each with the feedback it received.

Reads ``feedback.sqlite`` (tables ``searches`` and ``feedback``, written by ``embedlab serve``) through
a read-only connection, so monitoring never locks out or changes the server's file.  A feedback
row joins its search on ``search_id`` (returned by ``/v1/search``); a row without one (an older
client) joins the latest search with the same query and the same results shown, no later than the
feedback itself.  Rows of another collection mean the wrong file was given: refused, one line.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from embedlab.errors import EmbedlabError
from embedlab.serve.feedback import FILE


@dataclass
class Search:
    """One answered search and what the user did with its results."""

    search_id: str
    ts: float  # Unix seconds
    collection: str
    generation: int | None
    arm: str
    session: str | None
    query: str
    mode: str | None
    result_ids: tuple[int, ...]
    top_score: float | None
    latency_ms: float
    compute_ms: float
    teams: tuple[str, ...] | None = None
    click_ranks: list[int] = field(default_factory=list)  # 1-based, in the order clicked
    ups: int = 0
    downs: int = 0


def database_path(collection: str, *, root: str | Path | None = None, db: Path | None = None) -> Path:
    """The feedback file of ``collection`` (``db`` when given); it must exist."""
    from embedlab.collection.layout import CollectionDir

    path = db or CollectionDir(collection, root=root).path / FILE
    if not path.is_file():
        raise EmbedlabError(
            "no search log yet", path=path, hint=f"serve the collection first: `embedlab serve {collection}`"
        )
    return path


def load_searches(path: Path, *, collection: str, since: float | None = None) -> list[Search]:
    """Every search of ``collection`` stored in ``path`` from ``since`` (Unix seconds) on, oldest first."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.DatabaseError as err:
        raise EmbedlabError(f"cannot open the feedback database ({err})", path=path) from None
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "searches" not in tables:
            raise EmbedlabError(
                "the feedback database has no search log",
                path=path,
                hint="it was written by an older `embedlab serve`; serve the collection again to start one",
            )
        others = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT collection FROM searches WHERE collection != ? "
                "UNION SELECT DISTINCT collection FROM feedback WHERE collection != ? LIMIT 3",
                (collection, collection),
            )
        ]
        if others:
            raise EmbedlabError(
                f"the feedback database belongs to another collection than {collection!r}",
                path=path,
                found=", ".join(repr(o) for o in others),
                hint="pass that collection's name, or its own --feedback-db",
            )
        searches = _searches(db, since)
        _attach_feedback(db, searches, since)
    except sqlite3.DatabaseError as err:
        raise EmbedlabError(f"cannot read the feedback database ({err})", path=path) from None
    finally:
        db.close()
    return searches


def _searches(db: sqlite3.Connection, since: float | None) -> list[Search]:
    rows = db.execute(
        "SELECT search_id, ts, collection, generation, arm, session, query, mode, result_ids, top_score, "
        "latency_ms, compute_ms, teams FROM searches WHERE ts >= ? ORDER BY ts, id",
        (since if since is not None else float("-inf"),),
    ).fetchall()
    out = []
    for sid, ts, coll, gen, arm, session, query, mode, shown, top, latency, compute, teams in rows:
        out.append(
            Search(
                search_id=sid,
                ts=float(ts),
                collection=coll,
                generation=gen,
                arm=arm,
                session=session,
                query=query,
                mode=mode,
                result_ids=tuple(json.loads(shown)),
                top_score=None if top is None else float(top),
                latency_ms=float(latency),
                compute_ms=float(compute),
                teams=None if teams is None else tuple(json.loads(teams)),
            )
        )
    return out


def _attach_feedback(db: sqlite3.Connection, searches: list[Search], since: float | None) -> None:
    by_id = {s.search_id: s for s in searches}
    by_page: dict[tuple[str, tuple[int, ...]], list[Search]] = {}
    for s in searches:
        by_page.setdefault((s.query, s.result_ids), []).append(s)
    rows = db.execute("SELECT created, query, kind, chunk_id, rank, result_ids, search_id FROM feedback ORDER BY id")
    for created, query, kind, chunk, rank, shown, search_id in rows:
        target = by_id.get(search_id) if search_id else None
        if target is None and not search_id:
            ts = datetime.fromisoformat(created).timestamp()
            try:
                page = tuple(json.loads(shown))
            except ValueError:
                continue
            earlier = [s for s in by_page.get((query, page), ()) if s.ts <= ts + 1.0]
            target = earlier[-1] if earlier else None
        if target is None:  # before --since, or a search the log never got
            continue
        if kind == "click":
            if rank is None and chunk in target.result_ids:
                rank = target.result_ids.index(chunk) + 1
            if rank is not None:
                target.click_ranks.append(int(rank))
        elif kind == "up":
            target.ups += 1
        elif kind == "down":
            target.downs += 1

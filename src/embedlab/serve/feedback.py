"""User feedback on search results, kept in SQLite beside the collection (``feedback.sqlite``).

One row per event: a click on a result, a thumbs up or a thumbs down, with the query, the
search mode, the generation searched, the result it is about (chunk id, file, page, rank)
and the ids of all results shown (JSON list, in rank order).  That is the raw material
for monitoring (click-through, thumbs-down rate per query) and for fine-tuning (click
logs: query, clicked, shown).  The file lives in the collection folder, outside the
generations, so it survives updates.  Each insert is one transaction (WAL journal,
``synchronous=FULL``): an acknowledged event is on disk.

Numbers must fit SQLite's signed 64-bit integers (the API refuses others with 422, and
:meth:`FeedbackStore.add` checks again).  Reading back, a row that is damaged anyway (edited
by hand, written by an older version: a result list that is not JSON, an id that does not
fit, text that is not UTF-8) is skipped and reported by id, so one bad row never stops the
export of the good ones.

The same file holds the search log (table ``searches``, one row per answered search, written by
:mod:`embedlab.serve.searchlog`); feedback rows name their search (``search_id``).  The schema is
versioned (``PRAGMA user_version``, :func:`migrate`): an older file is upgraded in place when opened.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedlab.errors import EmbedlabError

FILE = "feedback.sqlite"
KINDS = ("click", "up", "down")
INT64_MAX = 2**63 - 1  # SQLite's INTEGER is a signed 64-bit number
_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    collection TEXT NOT NULL,
    generation INTEGER,
    query TEXT NOT NULL,
    mode TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('click', 'up', 'down')),
    chunk_id INTEGER NOT NULL,
    path TEXT,
    page INTEGER,
    rank INTEGER,
    result_ids TEXT NOT NULL,
    session TEXT
);
CREATE INDEX IF NOT EXISTS feedback_created ON feedback (created);
"""
# Schema migrations, applied in order to a file whose ``PRAGMA user_version`` is below their number
# (version 0: the feedback table only).  Each runs in one transaction with the version bump, so a file
# is either wholly at the old version or wholly at the new one.
SCHEMA_VERSION = 1
_MIGRATIONS: dict[int, str] = {
    # 1: one row per answered search (written by embedlab.serve.searchlog), and feedback rows name
    # the search they are about (``search_id``, returned by /v1/search) so clicks join their page
    1: """
CREATE TABLE IF NOT EXISTS searches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    search_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    collection TEXT NOT NULL,
    generation INTEGER,
    arm TEXT NOT NULL,
    session TEXT,
    query TEXT NOT NULL,
    mode TEXT,
    k INTEGER,
    result_ids TEXT NOT NULL,
    top_score REAL,
    latency_ms REAL NOT NULL,
    compute_ms REAL NOT NULL,
    teams TEXT
);
CREATE INDEX IF NOT EXISTS searches_ts ON searches (ts);
ALTER TABLE feedback ADD COLUMN search_id TEXT;
CREATE INDEX IF NOT EXISTS feedback_search ON feedback (search_id);
""",
}


def migrate(db: sqlite3.Connection) -> None:
    """Bring ``db`` (autocommit connection) to :data:`SCHEMA_VERSION`; a newer file is refused."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(f"schema version {version} is newer than this embedlab's {SCHEMA_VERSION}")
    for number in range(version + 1, SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            if int(db.execute("PRAGMA user_version").fetchone()[0]) < number:  # another process may have won
                for statement in _MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


@dataclass(frozen=True)
class Event:
    """One stored feedback event, checked: what the click-log export needs."""

    id: int
    query: str
    kind: str
    chunk_id: int
    result_ids: tuple[int, ...]
    search_id: str | None = None  # joins the logged search: its arm and, interleaved, each result's arm
    session: str | None = None
    rank: int | None = None  # 1-based rank of the clicked result: which one, when an id is shown twice


@dataclass(frozen=True)
class SkippedRow:
    """A stored row that cannot be read back, and why."""

    id: object
    reason: str


class _Undecodable:
    """A TEXT value that is not UTF-8 (SQLite stores whatever bytes it is given)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw


def _decode_text(raw: bytes) -> str | _Undecodable:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return _Undecodable(raw)


def _id_problem(value: object) -> str | None:
    """Why ``value`` is not a chunk id (a whole number from 0 to 2**63-1), or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{value!r:.40} is not a whole number"
    if not 0 <= value <= INT64_MAX:
        return f"{value} is outside 0..{INT64_MAX}"
    return None


def check_event(row: Mapping[str, object]) -> Event | SkippedRow:
    """The event a stored row holds, or why it cannot be used."""
    row_id = row.get("id")
    query, kind, chunk = row.get("query"), row.get("kind"), row.get("chunk_id")
    if not isinstance(query, str) or not query:
        return SkippedRow(row_id, "query: not a non-empty UTF-8 text")
    if kind not in KINDS:
        return SkippedRow(row_id, f"kind: {kind!r:.40} is not one of {', '.join(KINDS)}")
    if (problem := _id_problem(chunk)) is not None or not isinstance(chunk, int):  # isinstance: for mypy
        return SkippedRow(row_id, f"chunk_id: {problem}")
    if not isinstance(row_id, int):  # an INTEGER PRIMARY KEY: always is
        return SkippedRow(row_id, f"id: {row_id!r:.40} is not a whole number")
    raw = row.get("result_ids")
    if not isinstance(raw, str):
        return SkippedRow(row_id, "result_ids: not a UTF-8 text")
    try:
        shown = json.loads(raw)
    except (ValueError, RecursionError):
        return SkippedRow(row_id, f"result_ids: not JSON ({raw[:40]!r})")
    if not isinstance(shown, list):
        return SkippedRow(row_id, f"result_ids: not a JSON list ({raw[:40]!r})")
    for value in shown:
        if (problem := _id_problem(value)) is not None:
            return SkippedRow(row_id, f"result_ids: {problem}")
    search_id, session, rank = row.get("search_id"), row.get("session"), row.get("rank")
    return Event(
        id=row_id,
        query=query,
        kind=str(kind),
        chunk_id=chunk,
        result_ids=tuple(shown),
        search_id=search_id if isinstance(search_id, str) else None,
        session=session if isinstance(session, str) else None,
        rank=rank if isinstance(rank, int) and not isinstance(rank, bool) else None,
    )


class FeedbackStore:
    """Appends feedback rows; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            migrate(self.db)
            self.db.text_factory = _decode_text
        except (sqlite3.DatabaseError, OSError) as err:
            raise EmbedlabError(f"cannot open the feedback database ({err})", path=path) from None
        self._lock = threading.Lock()

    def add(
        self,
        *,
        collection: str,
        generation: int | None,
        query: str,
        mode: str | None,
        kind: str,
        chunk_id: int,
        path: str | None,
        page: int | None,
        rank: int | None,
        result_ids: Sequence[int],
        session: str | None,
        search_id: str | None = None,
    ) -> int:
        """Store one event; returns its row id."""
        if kind not in KINDS:
            raise EmbedlabError("invalid feedback kind", found=repr(kind), expected=", ".join(KINDS))
        for label, value in (
            ("chunk_id", chunk_id),
            ("generation", generation),
            ("page", page),
            ("rank", rank),
            *(("result_ids", i) for i in result_ids),
        ):
            if value is not None and (problem := _id_problem(value)) is not None:
                raise EmbedlabError(f"invalid feedback {label}", found=problem, expected=f"0 to {INT64_MAX}")
        created = datetime.now(UTC).isoformat(timespec="milliseconds")
        row = (
            created,
            collection,
            generation,
            query,
            mode,
            kind,
            chunk_id,
            path,
            page,
            rank,
            json.dumps([int(i) for i in result_ids]),
            session,
            search_id,
        )
        with self._lock:
            cursor = self.db.execute(
                "INSERT INTO feedback (created, collection, generation, query, mode, kind, chunk_id, path, page, "
                "rank, result_ids, session, search_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid or 0)

    def events(self) -> tuple[list[Event], list[SkippedRow]]:
        """Every stored event, oldest first, and the rows that could not be read back."""
        with self._lock:
            try:
                cursor = self.db.execute("SELECT * FROM feedback ORDER BY id")
                names = [c[0] for c in cursor.description]
                rows = cursor.fetchall()
            except sqlite3.DatabaseError as err:
                raise EmbedlabError(f"cannot read the feedback database ({err})", path=self.path) from None
        events: list[Event] = []
        skipped: list[SkippedRow] = []
        for row in rows:
            checked = check_event(dict(zip(names, row, strict=True)))
            if isinstance(checked, Event):
                events.append(checked)
            else:
                skipped.append(checked)
        return events, skipped

    def logged_search(self, search_id: str) -> tuple[str, tuple[str, ...] | None, tuple[int, ...]] | None:
        """The logged search ``search_id`` (another worker may have answered it): its arm, each shown
        result's arm (interleaved) and the ids shown; None when not (yet) logged or unreadable."""
        with self._lock:
            try:
                row = self.db.execute(
                    "SELECT arm, teams, result_ids FROM searches WHERE search_id = ?", (search_id,)
                ).fetchone()
            except sqlite3.DatabaseError:
                return None
        if row is None:
            return None
        try:
            teams = None if row[1] is None else tuple(str(t) for t in json.loads(row[1]))
            return str(row[0]), teams, tuple(int(i) for i in json.loads(row[2]))
        except (TypeError, ValueError):
            return None

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self.db.close()


@dataclass
class _Page:
    """One result page of the click log: its query, what was shown, what was liked and disliked."""

    query: str
    shown: list[Hashable]
    good: list[Hashable] = field(default_factory=list)
    bad: set[Hashable] = field(default_factory=set)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _own_ids(event: Event) -> tuple[Hashable, tuple[Hashable, ...]]:
    return event.chunk_id, event.result_ids


def click_log(
    events: Sequence[Event],
    texts: Mapping[Any, str],
    *,
    keys: Callable[[Event], tuple[Hashable, tuple[Hashable, ...]] | None] = _own_ids,
) -> tuple[list[dict[str, object]], int]:
    """Feedback events as click-log rows for ``embedlab finetune --train clicks.jsonl``:
    ``{"query", "clicked": [texts], "shown": [texts]}``, one row per result page (same query and
    same results shown).  Clicks and thumbs-up are positives; a result that got a thumbs-down on
    that page is never a positive.  ``texts`` maps chunk ids to chunk texts (the live collection);
    events about chunks it no longer holds are left out.  Texts are exported on one line (runs of
    whitespace, tabs and line breaks as one space: what a training pair needs, and older collections
    stored PDF text as extracted).  ``keys`` names the clicked result and the shown ones as keys of
    ``texts`` (default: the chunk ids themselves; with A/B arms, ``(collection, chunk id)``: each
    result in the collection of the arm that showed it, :mod:`embedlab.monitor.clicks`); an event it
    gives None is left out.  Returns ``(rows, events_left_out)``."""
    pages: dict[tuple[str, tuple[Hashable, ...]], _Page] = {}
    left_out = 0
    for event in events:
        named = keys(event)
        if named is None:
            left_out += 1
            continue
        chunk, shown = named
        if chunk not in texts or any(i not in texts for i in shown) or chunk not in shown:
            left_out += 1
            continue
        page = pages.setdefault((event.query, shown), _Page(event.query, list(shown)))
        if event.kind == "down":
            page.bad.add(chunk)
        elif chunk not in page.good:
            page.good.append(chunk)
    rows: list[dict[str, object]] = []
    for page in pages.values():
        clicked = [c for c in page.good if c not in page.bad]
        if clicked:
            rows.append(
                {
                    "query": page.query,
                    "clicked": [_flat(texts[c]) for c in clicked],
                    "shown": [_flat(texts[i]) for i in page.shown],
                }
            )
    return rows, left_out

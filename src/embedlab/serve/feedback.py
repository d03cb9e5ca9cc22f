"""User feedback on search results, kept in SQLite beside the collection (``feedback.sqlite``).

One row per event: a click on a result, a thumbs up or a thumbs down, with the query, the
search mode, the generation searched, the result it is about (chunk id, file, page, rank)
and the ids of all results shown (JSON list, in rank order).  That is the raw material
for monitoring (click-through, thumbs-down rate per query) and for fine-tuning (click
logs: query, clicked, shown).  The file lives in the collection folder, outside the
generations, so it survives updates.  Each insert is one transaction (WAL journal,
``synchronous=FULL``): an acknowledged event is on disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

from embedlab.errors import EmbedlabError

FILE = "feedback.sqlite"
KINDS = ("click", "up", "down")
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
        except (sqlite3.DatabaseError, OSError) as err:
            raise EmbedlabError(f"cannot open the feedback database ({err})", path=path) from None
        self._lock = threading.Lock()

    def add(self, *, collection: str, generation: int | None, query: str, mode: str | None, kind: str,
            chunk_id: int, path: str | None, page: int | None, rank: int | None, result_ids: Sequence[int],
            session: str | None) -> int:
        """Store one event; returns its row id."""
        if kind not in KINDS:
            raise EmbedlabError("invalid feedback kind", found=repr(kind), expected=", ".join(KINDS))
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        row = (created, collection, generation, query, mode, kind, chunk_id, path, page, rank,
               json.dumps([int(i) for i in result_ids]), session)
        with self._lock:
            cursor = self.db.execute(
                "INSERT INTO feedback (created, collection, generation, query, mode, kind, chunk_id, path, page, "
                "rank, result_ids, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cursor.lastrowid or 0)

    def events(self) -> list[dict[str, object]]:
        """Every stored event, oldest first."""
        with self._lock:
            cursor = self.db.execute("SELECT * FROM feedback ORDER BY id")
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self.db.close()


def click_log(events: list[dict[str, object]], texts: Mapping[int, str]) -> tuple[list[dict[str, object]], int]:
    """Feedback events as click-log rows for ``embedlab finetune --train clicks.jsonl``:
    ``{"query", "clicked": [texts], "shown": [texts]}``, one row per result page (same query and
    same results shown).  Clicks and thumbs-up are positives; a result that got a thumbs-down on
    that page is never a positive.  ``texts`` maps chunk ids to chunk texts (the live collection);
    events about chunks it no longer holds are left out.  Returns ``(rows, events_left_out)``."""
    pages: dict[tuple[str, str], dict[str, object]] = {}
    left_out = 0
    for event in events:
        shown = [int(i) for i in json.loads(str(event["result_ids"]))]
        chunk = int(event["chunk_id"])  # type: ignore[arg-type]
        if chunk not in texts or any(i not in texts for i in shown) or chunk not in shown:
            left_out += 1
            continue
        page = pages.setdefault((str(event["query"]), str(event["result_ids"])),
                                {"query": event["query"], "shown": shown, "good": [], "bad": set()})
        if event["kind"] == "down":
            page["bad"].add(chunk)  # type: ignore[union-attr]
        elif chunk not in page["good"]:  # type: ignore[operator]
            page["good"].append(chunk)  # type: ignore[union-attr]
    rows = []
    for page in pages.values():
        clicked = [c for c in page["good"] if c not in page["bad"]]  # type: ignore[union-attr,operator]
        if clicked:
            rows.append({"query": page["query"], "clicked": [texts[c] for c in clicked],
                         "shown": [texts[i] for i in page["shown"]]})  # type: ignore[union-attr]
    return rows, left_out

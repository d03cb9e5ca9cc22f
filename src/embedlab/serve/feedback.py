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
from collections.abc import Sequence
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

    def count(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self.db.close()

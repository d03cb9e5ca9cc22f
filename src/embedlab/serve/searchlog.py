"""One row per answered search in ``feedback.sqlite`` (table ``searches``), written off the search path.

What a row holds: when (``ts``, Unix seconds), which collection, generation and arm answered, the
session, the query, mode and k, the ids shown (JSON list, rank order), the best score, the latency
the server measured for the request (queue wait included: what the client waited for) and the
compute the request cost (its share of the encoder batch's busy time, for cost per 1,000 queries).
That, joined with the feedback rows on ``search_id``, is what :mod:`embedlab.monitor` turns into
online metrics and drift statistics.

Why a writer thread: the search handler only puts a tuple on a bounded queue (no I/O, no lock held
by a disk write); one thread drains whatever has accumulated and inserts it in one transaction
(``executemany``), so under load one fsync serves hundreds of searches.  The connection uses WAL
with ``synchronous=NORMAL``: a committed batch survives a crash of the server process (WAL is
written before the commit returns) but the last batches may be lost on power failure, an
acceptable trade for monitoring data (feedback rows, which users typed, stay ``FULL``).  When the
queue is full (the disk stalls) rows are dropped and counted, never waited for: monitoring must
not slow searching.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import EmbedlabError
from embedlab.serve.feedback import migrate

log = logging.getLogger(__name__)
_INSERT = (
    "INSERT OR IGNORE INTO searches (search_id, ts, collection, generation, arm, session, query, mode, k, "
    "result_ids, top_score, latency_ms, compute_ms, teams) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STOP = object()


@dataclass(frozen=True)
class SearchRow:
    """One answered search, as the handler knows it."""

    search_id: str
    ts: float
    collection: str
    generation: int | None
    arm: str
    session: str | None
    query: str
    mode: str | None
    k: int
    result_ids: Sequence[int]
    top_score: float | None
    latency_ms: float
    compute_ms: float
    teams: Sequence[str] | None = None  # interleaving: the arm each shown result came from

    def values(self) -> tuple[object, ...]:
        return (
            self.search_id,
            self.ts,
            self.collection,
            self.generation,
            self.arm,
            self.session,
            self.query,
            self.mode,
            self.k,
            json.dumps([int(i) for i in self.result_ids]),
            self.top_score,
            self.latency_ms,
            self.compute_ms,
            None if self.teams is None else json.dumps(list(self.teams)),
        )


class SearchLog:
    """A bounded queue and one writer thread appending :class:`SearchRow` s to ``searches``."""

    def __init__(
        self,
        path: Path,
        *,
        max_queue: int = 100_000,
        max_rows: int = 1024,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.dropped = 0
        self.written = 0
        self._on_drop = on_drop
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate(self._db)
        except (sqlite3.DatabaseError, OSError) as err:
            raise EmbedlabError(f"cannot open the search log ({err})", path=path) from None
        self._thread = threading.Thread(target=self._work, name="search-log", daemon=True)
        self._thread.start()

    def record(self, row: SearchRow) -> None:
        """Queue ``row`` (never blocks; a full queue drops it and counts it)."""
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop()

    def flush(self) -> None:
        """Wait until every queued row is written (tests, shutdown)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        self._db.close()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while len(batch) < self.max_rows:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [item for item in batch if isinstance(item, SearchRow)]
            try:
                if rows:
                    self._write(rows)
            except Exception:  # a full disk, a locked file: logged, the server keeps answering
                log.exception("search log: %d rows not written", len(rows))
            finally:
                for _ in batch:
                    self._queue.task_done()
            if any(item is _STOP for item in batch):
                return

    def _write(self, rows: list[SearchRow]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT, [row.values() for row in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.written += len(rows)

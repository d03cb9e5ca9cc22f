"""A persistent embedding cache in one SQLite file.

Key = (space, text hash).  A *space* is the hash of everything that changes a vector:
the encoder fingerprint (weights hash or revision, backend, pooling, normalisation, max
length, precision) plus the role and the role's prompt.  Two encoders that differ in
any of these never share an entry; a wrong hit is worse than a miss
(``tests/test_cache.py`` proves it for each field; compare mteb issue 5383).

Every ``put`` is one SQLite transaction, so an interrupted encoding keeps the batches
it finished and a re-run encodes only what is missing.  Encoding times are stored too,
so a run served from the cache can still report the throughput that was measured when
the vectors were made (labelled as such).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import platform
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from embedlab.atomic import write_error
from embedlab.errors import EmbedlabError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spaces (
    space TEXT PRIMARY KEY, description TEXT NOT NULL, dim INTEGER NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    space TEXT NOT NULL, text_hash BLOB NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (space, text_hash)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timings (
    space TEXT NOT NULL, texts INTEGER NOT NULL, seconds REAL NOT NULL,
    conditions TEXT NOT NULL, host TEXT NOT NULL, at REAL NOT NULL
);
"""
_CHUNK = 500
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes, sqlite3.h)


def text_key(text: str) -> bytes:
    """sha256 of the exact input text (prompt included), 32 bytes."""
    return hashlib.sha256(text.encode("utf-8")).digest()


def space_id(description: dict[str, object]) -> str:
    canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Float32 vectors keyed by (space, text hash), in ``<folder>/embeddings.sqlite``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "embeddings.sqlite"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            with self._checked():
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as err:
            full = write_error(err, self.path)
            if full is not None and full.code in (errno.ENOSPC, errno.EDQUOT):
                raise full from None
            raise EmbedlabError(
                f"cannot open the embedding cache ({err})",
                path=self.folder,
                hint="set EMBEDLAB_CACHE to a writable folder, or pass --no-cache",
            ) from None

    @contextlib.contextmanager
    def _checked(self) -> Iterator[None]:
        """A damaged file (bad header, a malformed page found by any later query) is one clear error
        naming it; a full disk is one line naming the file and the free space (the batches already
        stored stay); other SQLite errors (locked) pass through unchanged."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            full = write_error(err, self.path)
            if full is not None:
                raise full from None
            code = getattr(err, "sqlite_errorcode", None)
            if not isinstance(code, int) or code & 0xFF not in _DAMAGED:
                raise
            raise EmbedlabError(
                f"the embedding cache is damaged ({err})",
                path=self.path,
                expected="an intact SQLite database",
                hint=f"delete {self.path} (it only holds vectors, which are computed again), or pass --no-cache",
            ) from None

    def close(self) -> None:
        self._db.close()

    def space(self, description: dict[str, object], dim: int) -> str:
        space = space_id(description)
        with self._checked():
            self._db.execute(
                "INSERT OR IGNORE INTO spaces VALUES (?, ?, ?, ?)",
                (space, json.dumps(description, sort_keys=True), dim, time.time()),
            )
        return space

    def get(self, space: str, keys: Sequence[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(vectors, found)``: rows for the keys found, and a boolean mask."""
        out = np.zeros((len(keys), dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        where: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            where.setdefault(key, []).append(i)
        unique = list(where)
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            with self._checked():
                rows = self._db.execute(
                    f"SELECT text_hash, vec FROM vectors WHERE space = ? AND text_hash IN ({marks})",
                    (space, *chunk),
                ).fetchall()
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] != dim:
                    continue  # a corrupt or foreign row is a miss, never a wrong hit
                for i in where[key]:
                    out[i] = vec
                    found[i] = True
        return out, found

    def put(self, space: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store one finished batch in one transaction."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [(space, key, vectors[i].tobytes()) for i, key in enumerate(keys)]
        with self._checked(), self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)

    def record_timing(self, space: str, texts: int, seconds: float, conditions: dict[str, object]) -> None:
        with self._checked():
            self._db.execute(
                "INSERT INTO timings VALUES (?, ?, ?, ?, ?, ?)",
                (space, texts, seconds, json.dumps(conditions, sort_keys=True), platform.node(), time.time()),
            )

    def measured_throughput(self, space: str) -> dict[str, object] | None:
        """Texts per second measured on this host when this space's vectors were encoded."""
        with self._checked():
            row = self._db.execute(
                "SELECT SUM(texts), SUM(seconds), MAX(at) FROM timings WHERE space = ? AND host = ?",
                (space, platform.node()),
            ).fetchone()
        if not row or not row[0] or not row[1]:
            return None
        return {"texts": int(row[0]), "seconds": float(row[1]), "per_second": row[0] / row[1], "measured_at": row[2]}

    def count(self, space: str | None = None) -> int:
        with self._checked():
            if space is None:
                return int(self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            return int(self._db.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (space,)).fetchone()[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
            return
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back itself (disk full): keep the cause
            self.db.execute("ROLLBACK")

"""``chunks.sqlite``: the files, chunks and skipped files of one generation.

Chunk ``id`` is the row's INTEGER PRIMARY KEY; row ``i`` of ``vectors.npy`` (and document
``i`` of the BM25 index) is the chunk with the ``i``-th smallest id, so no mapping table
is needed.  ``(path, page, char_start)`` is unique: a chunk can be stored only once.

A generation's database is written once (journal off: the whole folder is thrown away
if the writer dies) and then opened read-only and immutable.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab.data.chunking import Chunk
from embedlab.data.ingest import SourceDocument
from embedlab.errors import EmbedlabError

DB = "chunks.sqlite"
_SCHEMA = """
CREATE TABLE files (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER NOT NULL,
    chunks INTEGER NOT NULL, indexed_at TEXT NOT NULL
);
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, path TEXT NOT NULL, page INTEGER NOT NULL, char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL
);
CREATE UNIQUE INDEX chunks_place ON chunks (path, page, char_start);
CREATE TABLE skipped (path TEXT PRIMARY KEY, reason TEXT NOT NULL, sha256 TEXT NOT NULL);
"""
_BATCH = 900  # under SQLite's default limit of 999 bound parameters


@dataclass(frozen=True)
class ChunkRow:
    id: int
    path: str
    page: int
    char_start: int
    char_end: int
    text: str
    tokens: int


def read_only_uri(path: Path) -> str:
    """An SQLite URI that opens a finished generation's database without locking or writing anything."""
    return path.resolve().as_uri() + "?mode=ro&immutable=1"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ChunkWriter:
    """Fills a new generation's database: rows carried over from the previous one, then new files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path.resolve().as_uri(), uri=True, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.executescript(_SCHEMA)
        self.db.execute("BEGIN")

    def carry_over(self, previous: Path, paths: Sequence[str]) -> None:
        """Copy the files and chunks of ``paths`` (unchanged files) from the previous generation."""
        self.db.execute("CREATE TEMP TABLE keep (path TEXT PRIMARY KEY)")
        self.db.executemany("INSERT INTO keep VALUES (?)", ((p,) for p in paths))
        self.db.execute("COMMIT")  # ATTACH is not allowed inside a transaction
        self.db.execute("ATTACH DATABASE ? AS old", (read_only_uri(previous),))
        self.db.execute("BEGIN")
        self.db.execute("INSERT INTO files SELECT * FROM old.files WHERE path IN (SELECT path FROM keep)")
        self.db.execute("INSERT INTO chunks SELECT * FROM old.chunks WHERE path IN (SELECT path FROM keep)")
        self.db.execute("COMMIT")
        self.db.execute("DETACH DATABASE old")
        self.db.execute("BEGIN")

    def add_file(self, doc: SourceDocument, chunks: Sequence[Chunk], ids: Sequence[int]) -> None:
        self.db.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (doc.relative, doc.sha256, doc.kind, len(doc.pages), len(chunks), _now()),
        )
        self.db.executemany(
            "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
            ((i, c.doc, c.page, c.char_start, c.char_end, c.text, c.tokens) for i, c in zip(ids, chunks, strict=True)),
        )

    def add_skipped(self, skipped: Iterable[tuple[str, str, str]]) -> None:
        """``(path, reason, sha256)``; the hash ("" when unreadable) lets an update skip an unchanged bad file
        without reading it again."""
        self.db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?)", skipped)

    def ids(self) -> np.ndarray:
        return np.fromiter((r[0] for r in self.db.execute("SELECT id FROM chunks ORDER BY id")), dtype=np.int64)

    def texts(self, batch: int = 4096) -> Iterator[list[str]]:
        """Chunk texts in id order, a batch at a time."""
        cursor = self.db.execute("SELECT text FROM chunks ORDER BY id")
        while rows := cursor.fetchmany(batch):
            yield [r[0] for r in rows]

    def counts(self) -> tuple[int, int, int, int]:
        """(files, pages, chunks, skipped)."""
        files, pages = self.db.execute("SELECT COUNT(*), COALESCE(SUM(pages), 0) FROM files").fetchone()
        chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        skipped = self.db.execute("SELECT COUNT(*) FROM skipped").fetchone()[0]
        return int(files), int(pages), int(chunks), int(skipped)

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


class ChunkStore:
    """A generation's database, read-only; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise EmbedlabError("collection generation has no chunk database", path=path)
        self.path = path
        try:
            self.db = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False)
            self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()
        except sqlite3.DatabaseError as err:
            raise self._damaged(err) from None
        self._lock = threading.Lock()

    def _damaged(self, err: sqlite3.DatabaseError) -> EmbedlabError:
        """A damaged page can surface at any later query, not only at open: every query says which file."""
        return EmbedlabError(
            f"cannot read the chunk database ({err})",
            path=self.path,
            expected="an intact SQLite database written by `embedlab index build`",
            hint="the file is damaged; `embedlab index build --replace` rebuilds the collection",
        )

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as err:
                raise self._damaged(err) from None

    def ids(self) -> np.ndarray:
        return np.asarray([r[0] for r in self._query("SELECT id FROM chunks ORDER BY id")], dtype=np.int64)

    def row_paths(self) -> tuple[list[str], np.ndarray]:
        """``(paths, codes)``: the distinct file paths, and for each row (id order) the index of its path."""
        rows = self._query("SELECT path FROM chunks ORDER BY id")
        paths = sorted({r[0] for r in rows})
        where = {p: i for i, p in enumerate(paths)}
        return paths, np.asarray([where[r[0]] for r in rows], dtype=np.int32)

    def chunks(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        out: dict[int, ChunkRow] = {}
        wanted = [int(i) for i in ids]
        for start in range(0, len(wanted), _BATCH):
            part = wanted[start : start + _BATCH]
            marks = ",".join("?" * len(part))
            for row in self._query(
                f"SELECT id, path, page, char_start, char_end, text, tokens FROM chunks WHERE id IN ({marks})", part
            ):
                out[row[0]] = ChunkRow(*row)
        return out

    def file_hashes(self) -> dict[str, str]:
        return dict(self._query("SELECT path, sha256 FROM files"))

    def files(self) -> list[dict[str, object]]:
        keys = ("path", "sha256", "kind", "pages", "chunks", "indexed_at")
        rows = self._query(f"SELECT {', '.join(keys)} FROM files ORDER BY path")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of the files left out, by path."""
        return [(r[0], r[1]) for r in self._query("SELECT path, reason FROM skipped ORDER BY path")]

    def skipped_hashes(self) -> dict[str, tuple[str, str]]:
        """path -> (sha256, reason) of the files left out."""
        return {r[0]: (r[2], r[1]) for r in self._query("SELECT path, reason, sha256 FROM skipped")}

    def close(self) -> None:
        self.db.close()

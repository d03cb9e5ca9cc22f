"""The one vector-index interface every backend implements, and the registry of backends.

A vector index holds ``n`` float32 vectors (rows) and answers inner-product top-k queries:

- ``Kind(vectors, ids=None, options=None)`` builds it (``ids``: each row's id, string or int; when
  omitted, row order is id order, as in a collection whose rows are sorted by chunk id);
- ``search(queries, k, rows=None) -> (scores, positions)``, both ``(n_queries, k')`` with
  ``k' = min(k, candidates)``, ordered score descending then id ascending (the project's tie rule);
  ``rows`` (sorted row positions) restricts the search to those rows (a path filter); an
  approximate kind may find fewer than ``k'``: missing places hold position -1 and score -inf;
- ``memory_bytes``, ``len()``, ``info()`` (an :class:`IndexInfo`: kind, options used, files with
  their SHA-256, build time and, for approximate kinds, recall@10 against exact search measured at
  build time);
- ``vectors``: the float32 rows while the index keeps them.  A kind that searches compact codes
  instead (int8, binary, PCA, Matryoshka: memory is their point) measures its recall at build,
  then releases them (:meth:`VectorIndex.release_vectors`: zero rows; ``len()`` still counts the
  indexed rows);
- ``save(folder) -> IndexInfo`` writes the index's own files atomically (the vectors are the
  caller's to persist: collections keep them in ``vectors.npy``) and ``Kind.load(folder, info,
  vectors, ids)`` reads them back after checking each file's SHA-256.

A new backend is one module with a subclass registered under its name
(``@register_index``) plus its import in ``embedlab/index/__init__.py``;
``tests/test_index_contract.py`` then runs the shared contract over it.
"""

from __future__ import annotations

import difflib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.checksum import file_sha256
from embedlab.errors import EmbedlabError
from embedlab.registry import Registry

log = logging.getLogger(__name__)

RECALL_K = 10
RECALL_QUERIES = 200
WIDTH_LIMIT = 1024  # the largest search width (ef / nprobe) tried when tuning to the recall target


class IndexInfo(BaseModel):
    """What was built, how, and how good it is: stored in a collection's manifest and in eval results."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    file: str | None = None  # the index's own file in its folder (None: nothing beside the vectors)
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    params: dict[str, bool | int | float | str] = Field(default_factory=dict)
    recall_at_10: float | None = None  # approximate kinds: against exact search, at build time
    recall_queries: int | None = None
    recall_target: float | None = None
    build_seconds: float | None = None
    note: str | None = None  # what a reader of the results must know (a Matryoshka truncation)


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def id_ranks(ids: Sequence[object] | None, n: int) -> np.ndarray | None:
    """Each row's position in ascending id order (ties in scores are broken by it); None = row order."""
    if ids is None:
        return None
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(n)
    return ranks


def order_ties(
    scores: np.ndarray, positions: np.ndarray, id_order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order results per row by score desc, then ``id_order[position]`` asc (default: the position);
    missing results (position -1) go last with score -inf."""
    valid = positions >= 0
    safe = np.where(valid, positions, 0)
    order_key = np.where(valid, safe if id_order is None else id_order[safe], np.iinfo(np.int64).max)
    score_key = np.where(valid, -scores, np.inf)
    idx = np.lexsort((order_key, score_key), axis=-1)
    scores = np.where(valid, scores, -np.inf).astype(np.float32)
    return np.take_along_axis(scores, idx, axis=1), np.take_along_axis(positions, idx, axis=1)


class VectorIndex(ABC):
    """Inner-product top-k over a float32 matrix (cosine when the vectors are normalised)."""

    kind: ClassVar[str]
    approximate: ClassVar[bool] = False
    Options: ClassVar[type[BaseModel]] = NoOptions
    requires: ClassVar[tuple[str, ...]] = ()  # modules of an optional extra (tests skip the kind without them)

    def __init__(
        self, vectors: np.ndarray, ids: Sequence[object] | None = None, *, options: Mapping[str, Any] | None = None
    ) -> None:
        started = time.perf_counter()
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be a matrix, got shape {vectors.shape}")
        self.vectors = vectors if vectors.dtype == np.float32 else np.asarray(vectors, dtype=np.float32)
        self.doc_ids = list(ids) if ids is not None else None
        self.id_order = id_ranks(ids, len(vectors))
        self.options = self.validate_options(options)
        self._recall: tuple[float, int, float | None] | None = None  # (recall@10, queries, target)
        self._file: tuple[str, str | None] | None = None  # (file name, sha256) once saved
        self._build()
        self.build_seconds = time.perf_counter() - started

    @classmethod
    def _reopened(cls, info: IndexInfo, vectors: np.ndarray, ids: Sequence[object] | None) -> Self:
        """An instance with the state of a saved one (no ``_build``): the caller restores its own
        structure from its file.  The one place that mirrors ``__init__`` for :meth:`load`."""
        self = cls.__new__(cls)
        self.vectors = vectors if vectors.dtype == np.float32 else np.asarray(vectors, dtype=np.float32)
        self.doc_ids = list(ids) if ids is not None else None
        self.id_order = id_ranks(ids, len(vectors))
        self.options = cls.validate_options({k: v for k, v in info.params.items() if k in cls.Options.model_fields})
        self._recall = None
        if info.recall_at_10 is not None:
            self._recall = (info.recall_at_10, info.recall_queries or 0, info.recall_target)
        self._file = (info.file, info.sha256) if info.file else None
        self.build_seconds = info.build_seconds or 0.0
        return self

    @classmethod
    def validate_options(cls, options: Mapping[str, Any] | None, *, prefix: str = "") -> BaseModel:
        """The options validated by ``Options``; one line on a mistake ("Did you mean" for a typo).
        ``prefix`` is how the user wrote the names (``index_`` in a model spec)."""
        try:
            return cls.Options.model_validate(dict(options or {}))
        except ValidationError as err:
            first = err.errors()[0]
            where = prefix + (".".join(str(p) for p in first["loc"]) or "options")
            names = [prefix + name for name in cls.Options.model_fields]
            close = (
                difflib.get_close_matches(where, names, n=1, cutoff=0.6) if first["type"] == "extra_forbidden" else []
            )
            mean = f"Did you mean {close[0]!r}? " if close else ""
            raise EmbedlabError(
                f"invalid option {where!r} for index {cls.kind!r}: {first['msg']}",
                hint=f"{mean}options it takes: {', '.join(names) or 'none'}",
            ) from None

    @abstractmethod
    def _build(self) -> None:
        """Make the search structure from ``self.vectors`` and ``self.options``."""

    @abstractmethod
    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, positions)`` of the k best rows (within ``rows``); order is fixed by :meth:`search`."""

    def search(self, queries: np.ndarray, k: int, *, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        candidates = len(self) if rows is None else len(rows)
        k = max(0, min(int(k), candidates))
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), k), np.float32), np.zeros((len(queries), k), np.int64)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
        scores, positions = self._search(queries, k, rows)
        return order_ties(scores, positions.astype(np.int64), self.id_order)

    def search_one(self, query: np.ndarray, k: int, *, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One query vector: ``(scores, positions)`` as 1-d arrays, places an approximate kind missed left out."""
        scores, positions = self.search(query.reshape(1, -1), k, rows=rows)
        keep = positions[0] >= 0
        return scores[0][keep], positions[0][keep]

    def __len__(self) -> int:
        return len(self.vectors)

    def release_vectors(self) -> None:
        """Drop this index's reference to the float rows (a kind that searches its own codes);
        such a kind must override ``__len__``."""
        self.vectors = np.zeros((0, self.vectors.shape[1]), np.float32)

    def note(self) -> str | None:
        """A caveat every report of this index must carry (None: none)."""
        return None

    @property
    def memory_bytes(self) -> int:
        """Bytes the search structure holds (for exact kinds: the vectors themselves)."""
        return int(self.vectors.nbytes)

    @property
    def fixed_bytes(self) -> int:
        """The part of ``memory_bytes`` that does not grow with the rows (a PCA projection, int8
        ranges): left out of the bytes per vector, so a 5,000-document corpus does not inflate a
        projection to 1M documents; default 0."""
        return 0

    def save(self, folder: Path) -> IndexInfo:
        """Write this kind's own files into ``folder`` (atomically) and describe them; default: none."""
        return self.info()

    @classmethod
    def load(
        cls, folder: Path, info: IndexInfo, vectors: np.ndarray, ids: Sequence[object] | None = None
    ) -> VectorIndex:
        """Re-open a saved index over ``vectors``; default: rebuild (cheap for kinds without files)."""
        return cls(vectors, ids, options=info.params)

    @classmethod  # noqa: B027  (an optional hook: most kinds hold nothing outside their folder)
    def discard(cls, folder: Path, info: IndexInfo) -> None:
        """Free what a saved index holds outside ``folder`` (a server collection) when the folder
        is removed; default: nothing (its files go with the folder)."""

    def info(self) -> IndexInfo:
        recall = self._recall
        return IndexInfo(
            kind=self.kind,
            params=self.options.model_dump(exclude_none=True),
            file=self._file[0] if self._file else None,
            sha256=self._file[1] if self._file else None,
            recall_at_10=None if recall is None else round(recall[0], 4),
            recall_queries=None if recall is None else recall[1],
            recall_target=None if recall is None else recall[2],
            build_seconds=round(self.build_seconds, 3) if hasattr(self, "build_seconds") else None,
            note=self.note(),
        )

    def measure_recall(self, *, queries: int = RECALL_QUERIES, seed: int = 0) -> float:
        """Recall@10 against exact search, with seeded queries made from the index's own vectors.

        Each query is the mean of two random indexed vectors: it lies among the data, as a real
        query does, but on no indexed point, so its neighbours are spread as a real query's are.
        An indexed vector as its own query finds itself and a tight neighbourhood and overstates
        recall: all-MiniLM-L6-v2 on SciFact, Chroma HNSW at ef 64, measured recall@10 on the 300
        test queries 0.990-0.993 over three builds, on pair means 0.992-0.994, on indexed vectors
        0.9995-1.000; at ef 16: 0.934, 0.86-0.88 and 0.99.

        A result counts as found when its exact score reaches the 10th exact score, so
        interchangeable duplicates (a page header repeated in every file) are not misses."""
        from embedlab.index.exact import top_k

        n = len(self.vectors)
        if n != len(self):
            raise RuntimeError("recall is measured at build time, before the float vectors are released")
        rng = np.random.default_rng(seed)
        first = rng.choice(n, size=min(queries, n), replace=False)
        second = (first + rng.integers(1, n, size=len(first))) % n if n > 1 else first  # never the same row
        rows = np.asarray(self.vectors[first], dtype=np.float32) + np.asarray(self.vectors[second], dtype=np.float32)
        q = np.ascontiguousarray(rows / 2, dtype=np.float32)
        k = min(RECALL_K, n)
        exact_scores, _ = top_k(q, self.vectors, k)
        _, approx = self.search(q, k)
        found = 0
        for row in range(len(q)):
            got = approx[row][approx[row] >= 0]
            scores = np.asarray(self.vectors[got]) @ q[row]
            # float32 dot products of the same pair can differ by a few ulps between FAISS's and
            # numpy's kernels; 1e-5 is far above that for unit vectors and far below real gaps
            found += min(k, int((scores >= exact_scores[row, -1] - 1e-5).sum()))
        return found / (k * len(q))

    def _record_recall(self, recall: float, target: float | None) -> None:
        """Keep a build-time :meth:`measure_recall` result for :meth:`info` (and the manifest)."""
        self._recall = (recall, min(len(self.vectors), RECALL_QUERIES), target)


def tune_width(
    index: VectorIndex, set_width: Callable[[int], None], *, fixed: int | None, start: int, target: float
) -> int:
    """The search width (HNSW ef, IVF nprobe) to use, its recall@10 recorded on ``index``:
    ``fixed`` if given, else doubled from ``start`` until recall@10 against exact search
    (:meth:`VectorIndex.measure_recall`) reaches ``target`` or :data:`WIDTH_LIMIT`: one rule for
    ``faiss-hnsw``, ``milvus`` and ``chroma``, so the kinds compare at equal measured recall."""
    width = fixed or start
    while True:
        set_width(width)
        recall = index.measure_recall()
        if fixed is not None or recall >= target or width >= WIDTH_LIMIT:
            break
        width *= 2
    if recall < target:
        log.warning("%s recall@10 is %.3f at search width %d, under the %.2f target", index.kind, recall, width, target)
    index._record_recall(recall, target)
    return width


INDEXES: Registry[type[VectorIndex]] = Registry("index kind")


def register_index(cls: type[VectorIndex]) -> type[VectorIndex]:
    """Class decorator: make ``cls`` available under its ``kind`` name."""
    INDEXES.add(cls.kind, cls)
    return cls


def check_index_file(path: Path, sha256: str | None, kind: str) -> None:
    """A saved index file exists and has the SHA-256 its manifest recorded; else one line naming it."""
    if not path.is_file():
        raise EmbedlabError(f"the {kind} index file is missing", path=path, hint="rebuild the index")
    if sha256 is not None and file_sha256(path) != sha256:
        raise EmbedlabError(
            f"the {kind} index file does not match the checksum in its manifest",
            path=path,
            hint="the file is damaged; rebuild the index",
        )


def build_index(
    kind: str, vectors: np.ndarray, ids: Sequence[object] | None = None, *, options: Mapping[str, Any] | None = None
) -> VectorIndex:
    """Build an index of a registered ``kind`` ("Did you mean ...?" on a typo)."""
    return INDEXES.get(kind)(vectors, ids, options=options)


def load_index(folder: Path, info: IndexInfo, vectors: np.ndarray, ids: Sequence[object] | None = None) -> VectorIndex:
    return INDEXES.get(info.kind).load(folder, info, vectors, ids)

"""What the compact-code index kinds share (``int8``, ``binary``, ``pca``, ``matryoshka``).

Each searches its own smaller representation of the vectors instead of the float32 rows:
memory is the point, so after building (and measuring recall@10 against exact search while
the float rows are still at hand) it releases them, unless an option keeps them for exact
rescoring.  Its codes go into one ``.npz`` file on :meth:`save`, with the file's SHA-256 in
the returned :class:`IndexInfo`; :meth:`load` refuses a file that does not match it.  The
float vectors a collection passes to ``load`` are then only read for rescoring.
"""

from __future__ import annotations

import io
import zipfile
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from embedlab.atomic import atomic_write_bytes
from embedlab.checksum import file_sha256
from embedlab.errors import EmbedlabError
from embedlab.index.base import RECALL_QUERIES, IndexInfo, VectorIndex, check_index_file
from embedlab.index.exact import select_top

RESCORE_BLOCK = 1 << 22  # floats gathered at once when re-scoring candidates (16 MB)


class CodedIndex(VectorIndex):
    """A :class:`VectorIndex` over compact codes (subclasses: ``_encode``, ``_arrays``, ``_restore``)."""

    approximate = True
    FILE: ClassVar[str | None] = None  # None: nothing to save, the codes are rebuilt from the vectors

    def _build(self) -> None:
        self._count = len(self.vectors)
        self._encode()
        if self._count:
            self._recall = (self.measure_recall(), min(self._count, RECALL_QUERIES), None)
        if not self.keeps_vectors:
            self.release_vectors()

    def __len__(self) -> int:
        return self._count

    @property
    def keeps_vectors(self) -> bool:
        """Whether the float rows stay in memory (exact rescoring); default: no."""
        return False

    @abstractmethod
    def _encode(self) -> None:
        """Make the codes from ``self.vectors`` (still the float rows) and ``self.options``."""

    def _arrays(self) -> dict[str, np.ndarray]:
        """What :meth:`save` writes (and :meth:`_restore` reads back)."""
        return {}

    def _restore(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        """Set the codes from a saved file (shapes checked with :meth:`_expect_rows`).  Only kinds with a
        ``FILE`` are restored (the others are rebuilt by :meth:`load`); such a kind must override this."""
        raise TypeError(f"{type(self).__name__} saves {self.FILE!r} but does not override _restore")

    def _expect_rows(self, array: np.ndarray, path: Path, what: str) -> np.ndarray:
        if array.ndim != 2 or len(array) != self._count:
            raise EmbedlabError(
                f"the {self.kind} index file does not match the vectors",
                path=path,
                found=f"{what} of shape {array.shape}",
                expected=f"{self._count} rows",
                hint="rebuild the index",
            )
        return array

    def save(self, folder: Path) -> IndexInfo:
        if self.FILE is None:
            return self.info()
        buffer = io.BytesIO()
        savez: Any = np.savez  # its stub lets ``**arrays`` fill ``allow_pickle``; names here never do
        savez(buffer, allow_pickle=False, **self._arrays())
        path = folder / self.FILE
        atomic_write_bytes(path, buffer.getvalue())
        self._file = (self.FILE, file_sha256(path))
        return self.info()

    @classmethod
    def load(
        cls, folder: Path, info: IndexInfo, vectors: np.ndarray, ids: Sequence[object] | None = None
    ) -> VectorIndex:
        if cls.FILE is None:
            return cls(vectors, ids, options=info.params)
        path = folder / (info.file or cls.FILE)
        arrays = _read_arrays(path, info.sha256, cls.kind)
        self = cls._reopened(info, vectors, ids)
        self._count = len(vectors)
        self._restore(arrays, path)
        if not self.keeps_vectors:
            self.release_vectors()
        self._file = (info.file or cls.FILE, info.sha256)
        return self


def _read_arrays(path: Path, sha256: str | None, kind: str) -> dict[str, np.ndarray]:
    check_index_file(path, sha256, kind)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise EmbedlabError(f"cannot read the {kind} index file ({str(err)[:200]})", path=path) from None


def rescore(
    queries: np.ndarray,
    candidates: np.ndarray,
    k: int,
    rows_of: Callable[[np.ndarray], np.ndarray],
    *,
    id_order: np.ndarray | None,
    count: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-score each query's ``candidates`` (row positions, -1 = none) with the float query
    against ``rows_of(positions)`` (float or decoded rows) and keep the ``k`` best, ties by id."""
    n, width = candidates.shape
    k = min(k, width)
    order = id_order if id_order is not None else np.arange(count)
    out_s = np.full((n, k), -np.inf, np.float32)
    out_i = np.full((n, k), -1, np.int64)
    if width == 0:
        return out_s, out_i
    step = max(1, RESCORE_BLOCK // (width * queries.shape[1]))
    for q0 in range(0, n, step):
        cand = candidates[q0 : q0 + step]
        valid = cand >= 0
        safe = np.where(valid, cand, 0)
        docs = rows_of(safe.reshape(-1)).reshape(*cand.shape, -1)
        scores = np.einsum("qd,qcd->qc", queries[q0 : q0 + step], docs).astype(np.float32)
        scores = np.where(valid, scores, -np.inf).astype(np.float32)
        out_s[q0 : q0 + step], out_i[q0 : q0 + step] = select_top(scores, cand, order, k)
    return out_s, out_i

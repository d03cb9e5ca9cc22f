"""FAISS indexes behind the common interface, measured against the exact reference.

- ``faiss-flat``: exact inner product (``IndexFlatIP``).  FAISS chooses freely among items
  tied with the k-th score; when such a tie reaches the cut-off, the query is answered by the
  exact NumPy search instead, so the project-wide order (score desc, id asc) holds exactly.
- ``faiss-hnsw``: an HNSW graph (``IndexHNSWFlat``, M=32, efConstruction=200).  Approximate, so
  its recall@10 against exact search is measured at build time (a seeded sample of the indexed
  vectors as queries) and, unless ``ef_search`` is given, efSearch is doubled from 64 until
  recall@10 reaches ``recall_target`` (0.95) or 1024; the value used and the recall are kept in
  :meth:`info`.  A row filter uses a FAISS id selector, or exact search over the rows when they
  are few (under ``exact_below`` or 10% of the index): a graph walk that must skip most nodes
  loses recall and time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.atomic import atomic_write_bytes
from embedlab.checksum import file_sha256
from embedlab.errors import EmbedlabError
from embedlab.index.base import IndexInfo, VectorIndex, check_index_file, register_index, tune_width
from embedlab.index.exact import SMALL_PRODUCT, exact_search

log = logging.getLogger(__name__)

HNSW_FILE = "hnsw.faiss"


def faiss_module() -> Any:
    """``import faiss``, or a clear error naming the extra."""
    try:
        import faiss
    except ImportError:
        raise EmbedlabError("FAISS indexes need faiss-cpu", hint='pip install "embedlab[faiss]"') from None
    return faiss


@contextmanager
def one_faiss_thread_if_small(work: int) -> Iterator[None]:
    """One FAISS OpenMP thread for a small search (``work``: bytes or multiply-adds compared),
    else as set; :func:`embedlab.index.exact.one_blas_thread_if_small`'s reason, for FAISS.
    Measured here: a 128 px image query through onnxruntime, then a binary-code search of 1,862
    documents: search p50 0.27 ms either way, p95 9.7 ms with FAISS's two threads (waking beside
    onnxruntime's spinning ones) against 0.35 ms with one."""
    if work >= SMALL_PRODUCT:
        yield
        return
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _selector_params(faiss: Any, rows: np.ndarray, **extra: int) -> tuple[Any, Any]:
    selector = faiss.IDSelectorBatch(rows.astype(np.int64))
    params_type = faiss.SearchParametersHNSW if extra else faiss.SearchParameters
    return params_type(sel=selector, **extra), selector  # the selector must outlive the search


@register_index
class FaissFlatIndex(VectorIndex):
    kind = "faiss-flat"

    def _build(self) -> None:
        faiss = faiss_module()
        self.index = faiss.IndexFlatIP(self.vectors.shape[1])
        self.index.add(np.ascontiguousarray(self.vectors, dtype=np.float32))

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        n = len(self.vectors) if rows is None else len(rows)
        wide = min(n, k + 1)  # one more than asked: a tie across the cut-off shows
        if rows is None:
            scores, found = self.index.search(queries, wide)
        else:
            params, selector = _selector_params(faiss, rows)
            scores, found = self.index.search(queries, wide, params=params)
            del params, selector
        if wide > k:
            tied = np.flatnonzero(scores[:, k] == scores[:, k - 1])
            if len(tied):  # FAISS may have kept any of the tied items: decide exactly
                exact = exact_search(queries[tied], self.vectors, k, id_order=self.id_order, rows=rows)
                out_s, out_i = scores[:, :k].copy(), found[:, :k].copy()
                out_s[tied], out_i[tied] = exact
                return out_s, out_i
        return scores[:, :k], found[:, :k]

    @property
    def memory_bytes(self) -> int:
        return int(faiss_module().serialize_index(self.index).nbytes)


class HNSWOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    m: int = Field(default=32, ge=4, le=256)
    ef_construction: int = Field(default=200, ge=8, le=4096)
    ef_search: int | None = Field(default=None, ge=1, le=65_536)  # None: tuned to recall_target at build
    recall_target: float = Field(default=0.95, gt=0, le=1)
    exact_below: int = Field(default=50_000, ge=0)  # a row filter this small is searched exactly


@register_index
class FaissHNSWIndex(VectorIndex):
    kind = "faiss-hnsw"
    approximate = True
    Options = HNSWOptions

    def _build(self) -> None:
        faiss = faiss_module()
        opts = self._opts
        self.index = faiss.IndexHNSWFlat(self.vectors.shape[1], opts.m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = opts.ef_construction
        self.index.add(np.ascontiguousarray(self.vectors, dtype=np.float32))
        self._tune(opts)

    @property
    def _opts(self) -> HNSWOptions:
        assert isinstance(self.options, HNSWOptions)  # Options narrows the base type (not an input check)
        return self.options

    def _tune(self, opts: HNSWOptions) -> None:
        if not len(self.vectors):
            return

        def use(ef: int) -> None:
            self.index.hnsw.efSearch = ef

        ef = tune_width(self, use, fixed=opts.ef_search, start=64, target=opts.recall_target)
        self.options = opts.model_copy(update={"ef_search": ef})

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        opts = self._opts
        if rows is not None and (len(rows) < opts.exact_below or len(rows) < 0.1 * len(self.vectors)):
            return exact_search(queries, self.vectors, k, id_order=self.id_order, rows=rows)
        if rows is None:
            return self.index.search(queries, k)
        params, selector = _selector_params(faiss_module(), rows, efSearch=self.index.hnsw.efSearch)
        scores, found = self.index.search(queries, k, params=params)
        del params, selector
        return scores, found

    @property
    def memory_bytes(self) -> int:
        return int(faiss_module().serialize_index(self.index).nbytes)

    def save(self, folder: Path) -> IndexInfo:
        faiss = faiss_module()
        path = folder / HNSW_FILE
        atomic_write_bytes(path, faiss.serialize_index(self.index).tobytes())
        self._file = (HNSW_FILE, file_sha256(path))
        return self.info()

    @classmethod
    def load(
        cls, folder: Path, info: IndexInfo, vectors: np.ndarray, ids: Sequence[object] | None = None
    ) -> VectorIndex:
        faiss = faiss_module()
        path = folder / (info.file or HNSW_FILE)
        check_index_file(path, info.sha256, "HNSW")
        self = cls._reopened(info, vectors, ids)
        try:
            self.index = faiss.read_index(str(path))
        except RuntimeError as err:
            raise EmbedlabError(f"cannot read the HNSW index ({str(err).splitlines()[0][:200]})", path=path) from None
        if self.index.ntotal != len(vectors):
            raise EmbedlabError(
                "the HNSW index does not match the vectors",
                path=path,
                found=f"{self.index.ntotal} vectors",
                expected=str(len(vectors)),
            )
        self.index.hnsw.efSearch = int(info.params.get("ef_search", 128))
        self._file = (info.file or HNSW_FILE, info.sha256)
        return self

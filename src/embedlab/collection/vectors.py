"""Chunk vectors on disk (``vectors.npy``, float32, row i = i-th smallest chunk id) and dense search.

Below ``threshold`` chunks search is exact (blocked matrix products, the reference).  At
or above it an HNSW graph (FAISS, inner product) is built too, and its quality is
measured, never assumed: recall@10 against exact search, with ``RECALL_QUERIES`` chunk
vectors of the collection (a seeded sample) as queries.  An approximate result counts as
found when its exact score reaches the 10th exact score, so interchangeable duplicates
(a page header repeated in every file) do not count as misses.  ``efSearch`` is doubled
from 64 until recall@10 reaches ``RECALL_TARGET`` (or 1024), and the value used is stored.

A path filter restricts search to some rows: exact search over those rows when they are
few (under ``threshold``, or under 10% of the collection), else HNSW with a FAISS id
selector.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from embedlab.collection.manifest import DenseIndexInfo
from embedlab.index.exact import top_k
from embedlab.index.faiss_index import faiss_module, hnsw_index, order_ties

log = logging.getLogger(__name__)

VECTORS = "vectors.npy"
HNSW_FILE = "hnsw.faiss"
ANN_THRESHOLD = 50_000
RECALL_QUERIES = 200
RECALL_TARGET = 0.95
HNSW_M = 32
EF_CONSTRUCTION = 200
_COPY_BLOCK = 65_536


def write_vectors(path: Path, *, dim: int, kept_from: np.ndarray | None, kept_rows: np.ndarray,
                  new_part: Path | None, new_count: int) -> None:
    """``vectors.npy`` = the kept rows of the previous matrix, then the new rows (raw float32 in ``new_part``)."""
    total = len(kept_rows) + new_count
    if total == 0:  # a zero-length file cannot be memory-mapped
        np.save(path, np.zeros((0, dim), dtype=np.float32))
        return
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, dim))
    for start in range(0, len(kept_rows), _COPY_BLOCK):
        rows = kept_rows[start : start + _COPY_BLOCK]
        out[start : start + len(rows)] = kept_from[rows]  # type: ignore[index]
    if new_count:
        new = np.memmap(new_part, dtype=np.float32, mode="r", shape=(new_count, dim))  # type: ignore[arg-type]
        for start in range(0, new_count, _COPY_BLOCK):
            block = new[start : start + _COPY_BLOCK]
            out[len(kept_rows) + start : len(kept_rows) + start + len(block)] = block
        del new
    out.flush()
    del out


def load_vectors(path: Path) -> np.ndarray:
    """Memory-mapped, read-only (the OS pages it in; a 1M x 384 matrix does not need 1.5 GB up front)."""
    try:
        return np.load(path, mmap_mode="r")
    except ValueError:  # an empty matrix cannot be mapped
        return np.load(path)


def _recall_at_10(index, vectors: np.ndarray, sample: np.ndarray) -> float:  # noqa: ANN001
    queries = np.ascontiguousarray(vectors[sample], dtype=np.float32)
    k = min(10, len(vectors))
    exact_scores, _ = top_k(queries, vectors, k)
    _, approx = index.search(queries, k)
    found = 0
    for row in range(len(sample)):
        ids = approx[row][approx[row] >= 0]
        scores = vectors[ids] @ queries[row]
        found += min(k, int((scores >= exact_scores[row, -1] - 1e-5).sum()))
    return found / (k * len(sample))


def build_dense_index(vectors: np.ndarray, folder: Path, *, threshold: int) -> DenseIndexInfo:
    """Build (and save in ``folder``) the HNSW graph when there are ``threshold`` rows or more."""
    if len(vectors) < threshold:
        return DenseIndexInfo(kind="exact", threshold=threshold)
    faiss = faiss_module()
    started = time.perf_counter()
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    index = hnsw_index(matrix, m=HNSW_M, ef_construction=EF_CONSTRUCTION, ef_search=64)
    build_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(matrix), size=min(RECALL_QUERIES, len(matrix)), replace=False))
    ef = 64
    while True:
        index.hnsw.efSearch = ef
        recall = _recall_at_10(index, matrix, sample)
        if recall >= RECALL_TARGET or ef >= 1024:
            break
        ef *= 2
    if recall < RECALL_TARGET:
        log.warning("HNSW recall@10 is %.3f at efSearch=%d, under the %.2f target", recall, ef, RECALL_TARGET)
    faiss.write_index(index, str(folder / HNSW_FILE))
    return DenseIndexInfo(kind="faiss-hnsw", threshold=threshold, file=HNSW_FILE,
                          params={"M": HNSW_M, "ef_construction": EF_CONSTRUCTION, "ef_search": ef},
                          recall_at_10=round(recall, 4), recall_queries=len(sample), recall_target=RECALL_TARGET,
                          build_seconds=round(build_seconds, 3))


class DenseIndex:
    """Top-k inner product over a generation's vectors; results are rows, ordered score desc, row asc."""

    def __init__(self, vectors: np.ndarray, info: DenseIndexInfo, folder: Path) -> None:
        self.vectors = vectors
        self.info = info
        self.hnsw = None
        if info.kind == "faiss-hnsw" and len(vectors):
            faiss = faiss_module()
            self.hnsw = faiss.read_index(str(folder / (info.file or HNSW_FILE)))
            self.hnsw.hnsw.efSearch = int(info.params.get("ef_search", 128))

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, query: np.ndarray, k: int, *, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the best ``k`` rows for one query vector, within ``rows`` (sorted) when given."""
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        n = len(self.vectors) if rows is None else len(rows)
        k = min(k, n)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.hnsw is None or (rows is not None and (n < self.info.threshold or n < 0.1 * len(self.vectors))):
            if rows is None:
                scores, found = top_k(q, self.vectors, k)
                return scores[0], found[0]
            scores, found = top_k(q, np.asarray(self.vectors[rows]), k)
            return scores[0], rows[found[0]]
        faiss = faiss_module()
        if rows is None:
            scores, found = self.hnsw.search(q, k)
        else:
            selector = faiss.IDSelectorBatch(rows.astype(np.int64))  # kept alive until the search returns
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=self.hnsw.hnsw.efSearch)
            scores, found = self.hnsw.search(q, k, params=params)
            del params, selector
        scores, found = order_ties(scores, found)
        keep = found[0] >= 0
        return scores[0][keep], found[0][keep].astype(np.int64)

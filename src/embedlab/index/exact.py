"""Exact top-k by blocked matrix products with a bounded candidate set: the reference index.

Scores are computed for a block of queries against a block of documents at a time and
merged into a running top-k, so memory is O(query_block x doc_block + queries x k),
never queries x documents (1M documents x 10k queries stays small).

Ties are broken deterministically: score descending, then document id ascending
(``id_order`` gives each document's position in sorted-id order).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np

from embedlab.index.base import VectorIndex, register_index

QUERY_BLOCK = 256
DOC_BLOCK = 32_768


def select_top(scores: np.ndarray, ids: np.ndarray, order: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best of ``scores`` (columns named by ``ids``), sorted score desc, then ``order[id]`` asc."""
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_s = np.take_along_axis(scores, part, axis=1)
        top_i = np.take_along_axis(ids, part, axis=1)
        kth = top_s.min(axis=1, keepdims=True)
        # rare: more columns tie with the k-th score than fit; choose among them by id
        for r in np.flatnonzero((scores >= kth).sum(axis=1) > k):
            cols = np.flatnonzero(scores[r] >= kth[r])
            best = np.lexsort((order[ids[r, cols]], -scores[r, cols]))[:k]
            top_s[r], top_i[r] = scores[r, cols[best]], ids[r, cols[best]]
    else:
        top_s, top_i = scores, ids
    idx = np.lexsort((order[top_i], -top_s), axis=-1)
    return np.take_along_axis(top_s, idx, axis=1), np.take_along_axis(top_i, idx, axis=1)


def top_k(
    queries: np.ndarray, docs: np.ndarray, k: int, *, id_order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inner-product top-k: ``(scores, doc_indices)``, each (n_queries, min(k, n_docs))."""
    return blocked_top_k(queries, docs.shape[0], k, lambda qb, start, stop: qb @ docs[start:stop].T, id_order=id_order)


SMALL_PRODUCT = 1 << 26  # multiply-adds (~67M: a query against 170k x 384) that one core does in a few ms


def one_blas_thread_if_small(multiply_adds: int) -> AbstractContextManager[object]:
    """One BLAS thread for a small product (a single query against a collection), else as set.

    Why: OpenBLAS's pthreads workers spin for a while after each call (~0.1 s at its default
    timeout) instead of sleeping, so a 2-thread matrix-vector product of a few ms leaves a worker
    busy on the other core while the next stage runs.  Measured here: a dense first stage then
    a torch cross-encoder on 10 passages took p50 320 ms against 232 ms behind BM25, which uses
    no BLAS; with one BLAS thread for the search the two are alike (benchmarks/bench_multistage_scifact.py).
    A large product (many queries, or millions of rows) keeps every thread."""
    if multiply_adds >= SMALL_PRODUCT:
        return nullcontext()
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # inspects the loaded libraries once; limit() is then cheap


ScoreBlock = Callable[[np.ndarray, int, int], np.ndarray]


def blocked_top_k(
    queries: np.ndarray,
    n_docs: int,
    k: int,
    score_block: ScoreBlock,
    *,
    id_order: np.ndarray | None = None,
    doc_block: int = DOC_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of any score: ``score_block(query_block, start, stop)`` scores documents
    ``start:stop``; the same bounded block-and-merge as :func:`top_k` (compact codes are
    decoded one block at a time, never all at once).  A small product runs on one BLAS thread
    (:func:`one_blas_thread_if_small`)."""
    with one_blas_thread_if_small(queries.shape[0] * n_docs * queries.shape[1]):
        return _blocked_top_k(queries, n_docs, k, score_block, id_order=id_order, doc_block=doc_block)


def _blocked_top_k(
    queries: np.ndarray,
    n_docs: int,
    k: int,
    score_block: ScoreBlock,
    *,
    id_order: np.ndarray | None,
    doc_block: int,
) -> tuple[np.ndarray, np.ndarray]:
    k = max(0, min(k, n_docs))
    order = id_order if id_order is not None else np.arange(n_docs)
    all_scores = np.empty((queries.shape[0], k), dtype=np.float32)
    all_ids = np.empty((queries.shape[0], k), dtype=np.int64)
    if k == 0:
        return all_scores, all_ids
    for q0 in range(0, queries.shape[0], QUERY_BLOCK):
        qb = queries[q0 : q0 + QUERY_BLOCK]
        best_s = np.empty((qb.shape[0], 0), dtype=np.float32)
        best_i = np.empty((qb.shape[0], 0), dtype=np.int64)
        for d0 in range(0, n_docs, doc_block):
            block = score_block(qb, d0, min(n_docs, d0 + doc_block))
            cols = np.broadcast_to(np.arange(d0, d0 + block.shape[1]), block.shape)
            s, i = select_top(block, cols, order, min(k, block.shape[1]))
            merged_s = np.concatenate([best_s, s], axis=1)
            merged_i = np.concatenate([best_i, i], axis=1)
            best_s, best_i = select_top(merged_s, merged_i, order, min(k, merged_s.shape[1]))
        all_scores[q0 : q0 + qb.shape[0]] = best_s
        all_ids[q0 : q0 + qb.shape[0]] = best_i
    return all_scores, all_ids


def exact_search(
    queries: np.ndarray, vectors: np.ndarray, k: int, *, id_order: np.ndarray | None, rows: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` over all rows, or over ``rows`` only (positions returned are rows of ``vectors``)."""
    if rows is None:
        return top_k(queries, vectors, k, id_order=id_order)
    order = None if id_order is None else id_order[rows]
    scores, found = top_k(queries, np.asarray(vectors[rows], dtype=np.float32), k, id_order=order)
    return scores, rows[found]


@register_index
class ExactIndex(VectorIndex):
    """The vectors themselves; search is exact inner product over blocks (bounded memory)."""

    kind = "exact"

    def _build(self) -> None:
        pass  # nothing beyond the vectors

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(queries, self.vectors, k, id_order=self.id_order, rows=rows)

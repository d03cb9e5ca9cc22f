"""Blocked exact top-k equals a brute-force full sort, and never builds a score block larger
than QUERY_BLOCK x DOC_BLOCK (memory is bounded, not queries x documents)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import embedlab.index.exact as exact
from embedlab.index.exact import ExactIndex, top_k
from tests.float_tolerance import assert_same_ranking, float32_tolerance


def _brute(queries: np.ndarray, docs: np.ndarray, k: int, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    idx = np.array([np.lexsort((order, -row))[:k] for row in scores]).reshape(len(queries), -1)
    return np.take_along_axis(scores, idx, axis=1), idx


@pytest.mark.parametrize(
    ("n_queries", "n_docs", "k"),
    [(1, 1, 1), (5, 20, 3), (7, 23, 7), (10, 50, 8), (13, 61, 100), (4, 6, 10), (9, 100, 100), (3, 35, 14)],
)
@pytest.mark.parametrize("blocks", [(3, 7), (4, 16), (256, 32_768)])
def test_top_k_equals_full_sort(
    monkeypatch: pytest.MonkeyPatch, n_queries: int, n_docs: int, k: int, blocks: tuple[int, int]
) -> None:
    monkeypatch.setattr(exact, "QUERY_BLOCK", blocks[0])
    monkeypatch.setattr(exact, "DOC_BLOCK", blocks[1])
    rng = np.random.default_rng(n_queries * 1000 + n_docs + k)
    order = rng.permutation(n_docs)
    # integer-valued vectors: exact scores with many ties, so the comparison is bit for bit
    queries = rng.integers(-2, 3, size=(n_queries, 4)).astype(np.float32)
    docs = rng.integers(-2, 3, size=(n_docs, 4)).astype(np.float32)
    scores, indices = top_k(queries, docs, k, id_order=order)
    want_s, want_i = _brute(queries, docs, min(k, n_docs), order)
    assert scores.shape == indices.shape == (n_queries, min(k, n_docs))
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_array_equal(scores, want_s)


@pytest.mark.parametrize("blocks", [(3, 7), (256, 32_768)])
def test_top_k_float_data_matches_full_sort(monkeypatch: pytest.MonkeyPatch, blocks: tuple[int, int]) -> None:
    """Continuous scores (no ties): the same documents and scores as sorting the full matrix."""
    monkeypatch.setattr(exact, "QUERY_BLOCK", blocks[0])
    monkeypatch.setattr(exact, "DOC_BLOCK", blocks[1])
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((11, 16)).astype(np.float32)
    docs = rng.standard_normal((97, 16)).astype(np.float32)
    scores, indices = top_k(queries, docs, 10)
    full = queries.astype(np.float64) @ docs.astype(np.float64).T
    # float32 BLAS scores against exact float64 ones: a 16-term sum whose |terms| add up to at most
    # max(|q| @ |d|.T); the kernel (AVX2, AVX-512) and thread count only move the rounding.  Two documents
    # closer than that may come in either order on another machine, so the order is checked up to it.
    noise = float32_tolerance(scale=float((np.abs(queries) @ np.abs(docs).T).max()), terms=16)
    assert_same_ranking(indices, full, tolerance=noise)
    np.testing.assert_allclose(scores, np.take_along_axis(full, indices, axis=1), rtol=0, atol=noise)


def test_exact_index_search_uses_string_id_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact, "QUERY_BLOCK", 2)
    monkeypatch.setattr(exact, "DOC_BLOCK", 5)
    rng = np.random.default_rng(3)
    doc_ids = [str(i) for i in rng.permutation(31)]
    vectors = rng.integers(0, 2, size=(31, 2)).astype(np.float32)
    index = ExactIndex(vectors, doc_ids)
    scores, indices = index.search(np.array([[1, 1], [1, 0], [0, 0]], dtype=np.float64), 9)
    want_s, want_i = _brute(np.array([[1, 1], [1, 0], [0, 0]]), vectors, 9, index.id_order)
    np.testing.assert_array_equal(indices, want_i)
    np.testing.assert_array_equal(scores, want_s)  # 0/1 vectors: exact scores on any kernel
    assert [index.doc_ids[j] for j in indices[2]] == sorted(doc_ids)[:9]  # all scores 0: string order
    assert index.memory_bytes == 31 * 2 * 4


def test_score_blocks_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 queries x 50,000 documents, k=10: every score array ``select_top`` sees is at most
    QUERY_BLOCK x DOC_BLOCK, and peak memory stays well below the full score matrix."""
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((2_000, 8)).astype(np.float32)
    docs = rng.standard_normal((50_000, 8)).astype(np.float32)
    seen: list[tuple[int, int]] = []
    select = exact.select_top

    def recording(scores: np.ndarray, ids: np.ndarray, order: np.ndarray, k: int):
        seen.append(scores.shape)
        return select(scores, ids, order, k)

    monkeypatch.setattr(exact, "select_top", recording)
    tracemalloc.start()
    try:
        scores, indices = top_k(queries, docs, 10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert scores.shape == indices.shape == (2_000, 10)
    assert max(r for r, _ in seen) <= exact.QUERY_BLOCK
    assert max(c for _, c in seen) <= exact.DOC_BLOCK
    assert max(r * c for r, c in seen) <= exact.QUERY_BLOCK * exact.DOC_BLOCK
    assert len(seen) >= 2 * (2_000 // exact.QUERY_BLOCK) * (50_000 // exact.DOC_BLOCK)  # it really blocked
    full_matrix = 2_000 * 50_000 * 4
    assert peak < full_matrix / 2, f"peak {peak / 2**20:.0f} MiB vs full matrix {full_matrix / 2**20:.0f} MiB"
    sample = rng.choice(2_000, size=5, replace=False)
    reference = queries[sample].astype(np.float64) @ docs.T.astype(np.float64)
    noise = float32_tolerance(scale=float((np.abs(queries[sample]) @ np.abs(docs).T).max()), terms=8)
    assert_same_ranking(indices[sample], reference, tolerance=noise)  # near-ties may swap on other kernels

"""FAISS indexes are tested against exact NumPy search."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.index.exact import ExactIndex
from embedlab.index.faiss_index import FaissIndex

pytest.importorskip("faiss")


def _data(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    docs = rng.standard_normal((n, dim)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    q = rng.standard_normal((queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return docs, q, [f"doc{i:05d}" for i in range(n)]


def test_flat_equals_exact() -> None:
    docs, q, ids = _data(3000, 32, 50)
    exact_s, exact_i = ExactIndex(docs, ids).search(q, 20)
    flat_s, flat_i = FaissIndex(docs, ids, kind="faiss-flat").search(q, 20)
    np.testing.assert_array_equal(exact_i, flat_i)
    np.testing.assert_allclose(exact_s, flat_s, atol=1e-5)


def test_flat_breaks_ties_by_id() -> None:
    docs = np.ones((10, 4), dtype=np.float32)
    ids = [f"d{i}" for i in (5, 3, 9, 0, 7, 1, 8, 2, 6, 4)]
    _, idx = FaissIndex(docs, ids, kind="faiss-flat").search(np.ones((1, 4), np.float32), 10)
    assert [ids[i] for i in idx[0]] == sorted(ids)


def test_hnsw_recall_against_exact() -> None:
    docs, q, ids = _data(20_000, 64, 200)
    _, exact_i = ExactIndex(docs, ids).search(q, 10)
    index = FaissIndex(docs, ids, kind="faiss-hnsw")
    _, approx_i = index.search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx_i, exact_i, strict=True)])
    assert recall >= 0.95
    assert index.memory_bytes > docs.nbytes


def test_k_larger_than_collection() -> None:
    docs, q, ids = _data(5, 8, 2)
    s, i = FaissIndex(docs, ids, kind="faiss-flat").search(q, 50)
    assert i.shape == (2, 5) and (i >= 0).all()

"""Exact score ties are broken by document id ascending: in ``Run.ranking`` and in exact top-k,
also when the tied candidates straddle the k-th position across query and document blocks."""

from __future__ import annotations

import numpy as np
import pytest

import embedlab.index.exact as exact
from embedlab.data.types import Run
from embedlab.index.exact import ExactIndex, top_k


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exact, "DOC_BLOCK", 7)
    monkeypatch.setattr(exact, "QUERY_BLOCK", 3)


def test_run_ranking_breaks_ties_by_doc_id_ascending() -> None:
    run = Run({"q": {"b": 1.0, "d10": 0.5, "a": 1.0, "c": 2.0, "a2": 1.0, "d9": 0.5}})
    assert [d for d, _ in run.ranking("q")] == ["c", "a", "a2", "b", "d10", "d9"]
    assert run.ranking("missing") == []


def _brute(queries: np.ndarray, vectors: np.ndarray, doc_ids: list[str], k: int) -> list[list[tuple[str, float]]]:
    """Full sort by (score desc, string id asc); integer-valued vectors make scores exact."""
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    return [sorted(zip(doc_ids, row.tolist(), strict=True), key=lambda x: (-x[1], x[0]))[:k] for row in scores]


def _found(index: ExactIndex, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    scores, indices = index.search(queries, k)
    return [
        [(index.doc_ids[j], float(s)) for s, j in zip(srow, irow, strict=True)]
        for srow, irow in zip(scores, indices, strict=True)
    ]


@pytest.mark.usefixtures("small_blocks")
def test_all_equal_scores_pick_smallest_string_ids_across_blocks() -> None:
    n = 40
    rng = np.random.default_rng(0)
    doc_ids = [f"d{i}" for i in rng.permutation(n)]  # file order != string order != numeric order
    index = ExactIndex(np.ones((n, 4), dtype=np.float32), doc_ids)
    queries = np.ones((8, 4), dtype=np.float32)
    expected = sorted(doc_ids)  # d0, d1, d10, d11, ... d19, d2, d20, ...
    for k in (1, 5, 7, 8, 13, 40, 50):
        found = _found(index, queries, k)
        assert all([d for d, _ in row] == expected[:k] for row in found), k
        assert all(s == 4.0 for row in found for _, s in row)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("k", [1, 3, 6, 7, 10, 23])
def test_ties_at_the_kth_position_match_a_full_sort(k: int) -> None:
    """Few distinct scores (integer vectors), so many ties at every cutoff, spread over blocks."""
    rng = np.random.default_rng(k)
    n = 53  # not a multiple of DOC_BLOCK
    doc_ids = [f"doc-{i}" for i in rng.permutation(n)]
    vectors = rng.integers(0, 2, size=(n, 3)).astype(np.float32)
    queries = rng.integers(0, 2, size=(10, 3)).astype(np.float32)  # 10 queries: 4 query blocks
    index = ExactIndex(vectors, doc_ids)
    assert _found(index, queries, k) == _brute(queries, vectors, doc_ids, k)


@pytest.mark.usefixtures("small_blocks")
def test_top_k_without_id_order_breaks_ties_by_position() -> None:
    docs = np.ones((20, 2), dtype=np.float32)
    docs[[3, 15]] = 2.0
    scores, indices = top_k(np.ones((4, 2), dtype=np.float32), docs, 6)
    assert indices.tolist() == [[3, 15, 0, 1, 2, 4]] * 4
    assert scores.tolist() == [[4.0, 4.0, 2.0, 2.0, 2.0, 2.0]] * 4

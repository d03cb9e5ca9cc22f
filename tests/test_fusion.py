"""Reciprocal rank fusion: hand-computed scores, weights, ties, runs."""

from __future__ import annotations

import pytest

from embedlab.data.types import Run
from embedlab.errors import EmbedlabError
from embedlab.search.fusion import fuse, rrf


def test_rrf_scores_by_hand() -> None:
    fused = rrf([["d1", "d2", "d3"], ["d3", "d1", "d4"]], rrf_k=60)
    expected = {"d1": 1 / 61 + 1 / 62, "d3": 1 / 63 + 1 / 61, "d2": 1 / 62, "d4": 1 / 63}
    assert [doc for doc, _ in fused] == ["d1", "d3", "d2", "d4"]
    for doc, score in fused:
        assert score == pytest.approx(expected[doc], abs=1e-15)


def test_rrf_weights_change_the_order() -> None:
    fused = dict(rrf([["d1", "d2", "d3"], ["d3", "d1", "d4"]], rrf_k=60, weights=(1, 3)))
    assert fused["d3"] == pytest.approx(1 / 63 + 3 / 61)
    assert fused["d1"] == pytest.approx(1 / 61 + 3 / 62)
    assert list(fused) == ["d3", "d1", "d4", "d2"]  # 0.06505, 0.06478, 3/63, 1/62


def test_rrf_constant() -> None:
    fused = dict(rrf([["a", "b"], ["b"]], rrf_k=0))
    assert fused == {"b": pytest.approx(1 / 2 + 1 / 1), "a": pytest.approx(1.0)}


def test_ties_are_broken_by_id_and_are_exact() -> None:
    assert [d for d, _ in rrf([["b"], ["a"]])] == ["a", "b"]
    assert [d for d, _ in rrf([[5], [3]])] == [3, 5]  # chunk ids compare as numbers
    # same multiset of ranks in a different order of rankings: bit-identical sums
    fused = rrf([["p", "q", "r"], ["q", "r", "p"], ["r", "p", "q"]])
    assert len({score for _, score in fused}) == 1
    assert [d for d, _ in fused] == ["p", "q", "r"]


def test_duplicates_and_zero_weight() -> None:
    fused = dict(rrf([["a", "a", "b"], ["c"]], weights=(1, 0)))
    assert fused == {"a": pytest.approx(1 / 61), "b": pytest.approx(1 / 63)}  # "a" counts once, at rank 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": (1,)}, "wrong number of fusion weights"),
        ({"weights": (1, -1)}, "invalid fusion weight"),
        ({"weights": (0, 0)}, "all fusion weights are 0"),
        ({"rrf_k": -1}, "invalid RRF constant"),
        ({"rrf_k": float("nan")}, "invalid RRF constant"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(EmbedlabError, match=message):
        rrf([["a"], ["b"]], **kwargs)


def test_fuse_runs() -> None:
    dense = Run({"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.1}, "q2": {"d9": 0.5}}, name="dense")
    bm25 = Run({"q1": {"d3": 12.0, "d1": 7.0, "d4": 7.0}, "q3": {"d5": 1.0}}, name="bm25")
    fused = fuse([dense, bm25], rrf_k=60)
    assert fused.name == "rrf"
    assert fused.query_ids == ["q1", "q2", "q3"]
    ranking = fused.ranking("q1")
    assert [d for d, _ in ranking] == ["d1", "d3", "d2", "d4"]  # bm25 tie d1/d4 at 7.0: d1 first (id order)
    assert dict(ranking)["d1"] == pytest.approx(1 / 61 + 1 / 62)
    assert dict(ranking)["d4"] == pytest.approx(1 / 63)
    assert fused.ranking("q2") == [("d9", pytest.approx(1 / 61))]
    top = fuse([dense, bm25], k=2, depth=1)
    assert [d for d, _ in top.ranking("q1")] == ["d1", "d3"]  # depth 1: only each run's first result
    assert dict(top.ranking("q1")) == {"d1": pytest.approx(1 / 61), "d3": pytest.approx(1 / 61)}
    with pytest.raises(EmbedlabError, match="invalid fusion k"):
        fuse([dense], k=0)

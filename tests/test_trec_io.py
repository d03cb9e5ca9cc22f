"""TREC run and qrels files round trip: ranks, tie order, float32 scores, and the same metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedlab.data.trec import read_trec_qrels, read_trec_run, write_trec_qrels, write_trec_run
from embedlab.data.types import Qrels, Run
from embedlab.errors import EmbedlabError
from embedlab.eval.evaluate import evaluate
from embedlab.eval.metrics import DEFAULT_METRICS, parse_metrics


def _dense_like_run(seed: int = 0) -> Run:
    """float32 scores as a dense search returns them, with some exact ties."""
    rng = np.random.default_rng(seed)
    scores: dict[str, dict[str, float]] = {}
    for q in range(12):
        docs = [f"doc{i}" for i in rng.choice(500, size=int(rng.integers(1, 60)), replace=False)]
        values = rng.standard_normal(len(docs)).astype(np.float32) * np.float32(3.7)
        values[: len(docs) // 4] = np.float32(0.123456789)  # a block of exact ties
        scores[f"q{q}"] = {d: float(v) for d, v in zip(docs, values, strict=True)}
    return Run(scores, name="dense run")


def test_run_round_trip(tmp_path: Path) -> None:
    run = _dense_like_run()
    path = tmp_path / "out" / "run.trec"
    write_trec_run(run, path)
    lines = [line.split() for line in path.read_text().splitlines()]
    assert all(len(cells) == 6 and cells[1] == "Q0" and cells[5] == "dense_run" for cells in lines)
    by_query: dict[str, list[list[str]]] = {}
    for cells in lines:
        by_query.setdefault(cells[0], []).append(cells)
    assert list(by_query) == run.query_ids
    for query_id, rows in by_query.items():
        assert [int(r[3]) for r in rows] == list(range(1, len(rows) + 1))
        assert [r[2] for r in rows] == [d for d, _ in run.ranking(query_id)]  # ties by id ascending
        ranked = [(r[2], float(r[4])) for r in rows]
        assert ranked == sorted(ranked, key=lambda x: (-x[1], x[0]))

    back = read_trec_run(path)
    assert back.name == "dense_run"
    assert set(back.scores) == set(run.scores)
    for query_id in run.query_ids:
        assert set(back.scores[query_id]) == set(run.scores[query_id])
        for doc, score in run.scores[query_id].items():
            assert np.float32(back.scores[query_id][doc]) == np.float32(score)
        assert [d for d, _ in back.ranking(query_id)] == [d for d, _ in run.ranking(query_id)]


def test_run_tag_override(tmp_path: Path) -> None:
    write_trec_run(Run({"q": {"a": 1.0}}), tmp_path / "r.trec", tag="my model")
    assert (tmp_path / "r.trec").read_text() == "q Q0 a 1 1 my_model\n"
    assert read_trec_run(tmp_path / "r.trec").name == "my_model"


def test_qrels_round_trip(tmp_path: Path) -> None:
    qrels = Qrels({"q2": {"d1": 1, "d10": 0, "d2": 3}, "q1": {"x": -1, "y": 2}, "10": {"z": 4}})
    path = tmp_path / "qrels.txt"
    write_trec_qrels(qrels, path)
    assert path.read_text().splitlines()[:3] == ["10 0 z 4", "q1 0 x -1", "q1 0 y 2"]
    back = read_trec_qrels(path)
    assert back.judgments == qrels.judgments
    assert back.relevant("q2") == {"d1": 1, "d2": 3}
    write_trec_qrels(back, tmp_path / "again.txt")
    assert (tmp_path / "again.txt").read_text() == path.read_text()


def test_evaluate_on_a_run_read_back_gives_the_same_means(tmp_path: Path) -> None:
    run = _dense_like_run(seed=3)
    rng = np.random.default_rng(4)
    judgments: dict[str, dict[str, int]] = {}
    for query_id, docs in run.scores.items():
        picked = rng.choice(sorted(docs), size=min(3, len(docs)), replace=False)
        judgments[query_id] = {str(d): int(rng.integers(0, 3)) for d in picked} | {"unretrieved": 1}
    judgments["q-not-in-run"] = {"doc1": 1}
    qrels = Qrels(judgments)
    write_trec_run(run, tmp_path / "run.trec")
    write_trec_qrels(qrels, tmp_path / "qrels.txt")
    specs = parse_metrics(DEFAULT_METRICS)
    before = evaluate(run, qrels, specs)
    after = evaluate(read_trec_run(tmp_path / "run.trec"), read_trec_qrels(tmp_path / "qrels.txt"), specs)
    assert after.queries == before.queries == 13
    assert after.per_query == before.per_query
    assert after.mean == pytest.approx(before.mean, abs=1e-12)
    assert before.mean["ndcg_at_10"] > 0


def test_bad_run_line_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.trec"
    path.write_text("q Q0 a 1 0.5 tag\nq Q0 b 2 high tag\n")
    with pytest.raises(EmbedlabError, match="score is not a number") as err:
        read_trec_run(path)
    assert ":2" in str(err.value) or "line 2" in str(err.value)

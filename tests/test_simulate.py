"""``embedlab simulate`` against a real server: clicks land in feedback.sqlite, the same seed gives the
same clicks (whatever the concurrency), a scheduled stream change, click models, bad input."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from embedlab.cli.main import main
from embedlab.monitor.simulate import ClickModel
from embedlab.serve import ServeConfig, create_app
from tests.ab_fixtures import build_topic_collection, write_topics
from tests.serve_fixtures import running


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(dataset, other dataset with another vocabulary, collections root with 'good' built from the first)."""
    tmp = tmp_path_factory.mktemp("sim")
    dataset = write_topics(tmp / "topics")
    other = write_topics(tmp / "other", prefix="u", seed=2)
    root = tmp / "collections"
    build_topic_collection(dataset, root, "good")
    return dataset, other, root


def _run(lab, tmp: Path, name: str, *extra: str) -> tuple[dict, list[dict], Path]:
    """A fresh server (its own feedback file), one simulation; (summary, log rows, feedback file)."""
    _, _, root = lab
    db = tmp / f"{name}.sqlite"
    log = tmp / f"{name}.jsonl"
    app = create_app(ServeConfig(collection="good", root=root, feedback_path=db))
    with running(app) as url:
        assert main(["simulate", url, "--log", str(log), *extra]) == 0
        app.state.search_log.flush()
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return rows and {"n": len(rows)}, rows, db


def _clicks(rows: list[dict]) -> list[tuple]:
    return [(r["session"], r["query_id"], tuple(r["shown"]), tuple(r["clicks"])) for r in rows]


def test_clicks_land_in_feedback_and_repeat_with_the_seed(lab, tmp_path: Path, capsys) -> None:
    dataset, other, _ = lab
    stream = f"{dataset}:60,{other}:30"
    _, first, db = _run(lab, tmp_path, "a", "--stream", stream, "--seed", "5", "--concurrency", "1")
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _, again, _ = _run(lab, tmp_path, "b", "--stream", stream, "--seed", "5", "--concurrency", "1")
    _, parallel, _ = _run(lab, tmp_path, "c", "--stream", stream, "--seed", "5", "--concurrency", "4")
    _, other_seed, _ = _run(lab, tmp_path, "d", "--stream", stream, "--seed", "6")
    assert _clicks(first) == _clicks(again)  # same seed, same rankings: same sessions, queries and clicks
    assert _clicks(first) != _clicks(other_seed)
    # run side by side, queries are batched and near-tied scores may swap (float summation order); the
    # sessions are the same, and so are the clicks of every page whose relevance came out the same
    assert [(r["session"], r["query_id"]) for r in parallel] == [(r["session"], r["query_id"]) for r in first]
    same = [(a, b) for a, b in zip(first, parallel, strict=True) if a["relevant"] == b["relevant"]]
    assert len(same) > 0.9 * len(first) and all(a["clicks"] == b["clicks"] for a, b in same)
    assert summary["searches"] == 90 and summary["per_dataset"][str(dataset)]["searches"] == 60
    assert summary["relevant_shown"] == sum(any(r["relevant"]) for r in first) > 0.8 * 60
    assert [r["dataset"] for r in first] == [str(dataset)] * 60 + [str(other)] * 30  # the scheduled switch
    sessions = {r["session"]: r["dataset"] for r in first}
    assert all(sessions[r["session"]] == r["dataset"] for r in first)  # no session spans the switch
    db_rows = sqlite3.connect(db)
    feedback = db_rows.execute("SELECT session, search_id, rank, kind FROM feedback").fetchall()
    searches = db_rows.execute("SELECT session, search_id FROM searches").fetchall()
    db_rows.close()
    assert len(searches) == 90 and {s for s, _ in searches} == set(sessions)
    assert len(feedback) == summary["clicks"] == sum(len(r["clicks"]) for r in first)
    assert all(kind == "click" for *_, kind in feedback)
    assert {sid for _, sid in searches} >= {sid for _, sid, _, _ in feedback}  # every click names its search
    # clicks follow relevance: the good model ranks the topic's documents first
    own = [r for r in first if r["dataset"] == str(dataset)]
    assert sum(r["relevant"][0] for r in own if r["relevant"]) > 0.8 * len(own)
    assert all(not any(r["relevant"]) for r in first if r["dataset"] == str(other))  # nothing relevant in the corpus
    clicked_at_1 = sum(1 in r["clicks"] for r in own) / len(own)
    assert 0.6 < clicked_at_1 < 1.0  # p_relevant 0.9 at rank 1 (binomial spread of 60 draws: +-0.12)


def test_click_models_follow_their_definitions() -> None:
    rng = random.Random(0)
    pbm = ClickModel(kind="pbm", eta=1.0, p_relevant=1.0, p_other=0.0)
    n = 4000
    at3 = sum(3 in pbm.clicks([True] * 5, rng) for _ in range(n)) / n
    assert at3 == pytest.approx(1 / 3, abs=0.03)  # exam(3) = 1/3; 4000 draws: sd 0.0075, 4 sd
    cascade = ClickModel(kind="cascade", p_relevant=0.5, p_other=0.0)
    draws = [cascade.clicks([True, True, False], rng) for _ in range(n)]
    assert all(len(d) <= 1 for d in draws)  # the user stops at the first click
    second = sum(d == [2] for d in draws) / n
    assert second == pytest.approx(0.25, abs=0.03)  # 0.5 * 0.5; sd 0.007
    assert ClickModel(p_relevant=0.0, p_other=0.0).clicks([True] * 10, rng) == []


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["http://example.com:8000", "--stream", "x:10"], "only talks to a server on this machine"),
        (["http://127.0.0.1:1", "--stream", "DATASET"], "not found"),
        (["http://127.0.0.1:8000", "--stream", "scifact:0"], "invalid --stream"),
        (["http://127.0.0.1:8000", "--stream", "scifact:10", "--p-relevant", "1.5"], "invalid click model"),
    ],
)
def test_bad_input_is_one_line(lab, capsys, args, words) -> None:
    dataset = str(lab[0])
    args = [a.replace("DATASET", dataset + "-missing") for a in args]
    assert main(["simulate", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_an_unreachable_server_or_a_missing_key_is_one_line(lab, tmp_path: Path, capsys) -> None:
    dataset, _, root = lab
    assert main(["simulate", "http://127.0.0.1:1", "--stream", f"{dataset}:5"]) == 2
    assert "cannot reach the server" in capsys.readouterr().err
    app = create_app(ServeConfig(collection="good", root=root, api_key="k" * 20, feedback_path=tmp_path / "f.db"))
    with running(app) as url:
        assert main(["simulate", url, "--stream", f"{dataset}:5", "--api-key-env", "EMBEDLAB_TEST_NO_SUCH_KEY"]) == 2
    assert "wants an API key" in capsys.readouterr().err

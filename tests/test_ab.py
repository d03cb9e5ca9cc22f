"""A/B arms served for real: interleaving and traffic split between a good and a deliberately bad
arm, an A/A test, session assignment, the arms file re-read on change, bad input, the API key.
Traffic comes from the simulator (hashing model, a synthetic 24-topic dataset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from embedlab.atomic import atomic_write_text
from embedlab.cli.main import main
from embedlab.errors import EmbedlabError
from embedlab.monitor.events import load_searches
from embedlab.serve import ServeConfig, create_app
from embedlab.serve import arms as arms_module
from tests.ab_fixtures import build_topic_collection, write_topics
from tests.serve_fixtures import call_json, running

INTERLEAVE = 'kind = "interleave"\nlive = "good"\n[arms.good]\n[arms.bad]\ncollection = "bad"\n'
SPLIT = 'kind = "split"\nlive = "good"\n[arms.good]\nshare = {g}\n[arms.bad]\ncollection = "bad"\nshare = {b}\n'
AA = 'kind = "interleave"\nlive = "a"\nseed = 4\n[arms.a]\n[arms.b]\n'


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, collections root): 'good' (hashing, 64 dims) and 'bad' (1 dim: ignores the query)."""
    tmp = tmp_path_factory.mktemp("ab")
    dataset = write_topics(tmp / "topics")
    root = tmp / "collections"
    build_topic_collection(dataset, root, "good")
    build_topic_collection(dataset, root, "bad", dim=1)
    return dataset, root


def _experiment(lab, tmp: Path, arms_text: str, *, queries: int, seed: int = 1) -> Path:
    """Serve 'good' with these arms, simulate ``queries`` queries; returns the feedback file."""
    dataset, root = lab
    arms = tmp / "arms.toml"
    arms.write_text(arms_text)
    db = tmp / "feedback.sqlite"
    app = create_app(ServeConfig(collection="good", root=root, arms=arms, feedback_path=db))
    with running(app) as url:
        assert main(["simulate", url, "--stream", f"{dataset}:{queries}", "--seed", str(seed)]) == 0
        app.state.search_log.flush()
    return db


def _ab(lab, db: Path, out: Path, *extra: str) -> dict:
    _, root = lab
    args = ["monitor", "ab", "good", "--root", str(root), "--feedback-db", str(db), "--json", str(out), *extra]
    assert main(args) == 0
    return json.loads(out.read_text())


def test_interleaving_names_the_good_arm_and_credits_every_result(lab, tmp_path: Path, capsys) -> None:
    db = _experiment(lab, tmp_path, INTERLEAVE, queries=120)
    report = _ab(lab, db, tmp_path / "ab.json")
    outcome = report["outcome"]
    assert outcome["kind"] == "interleave" and outcome["verdict"] == "A wins" and outcome["winner"] == "good"
    assert outcome["p_value"] < 0.05 and outcome["low"] > 0  # the interval excludes no preference
    assert "verdict: A wins (good)" in capsys.readouterr().out
    searches = load_searches(db, collection="good")
    assert searches and all(s.arm == "good|bad" and s.teams is not None for s in searches)
    assert all(len(s.teams or ()) == len(s.result_ids) and set(s.teams or ()) <= {"good", "bad"} for s in searches)
    sizes = [abs((s.teams or ()).count("good") - (s.teams or ()).count("bad")) for s in searches]
    assert max(sizes) <= 1  # team draft: team sizes differ by at most one on every page


def test_an_aa_test_finds_no_difference(lab, tmp_path: Path) -> None:
    db = _experiment(lab, tmp_path, AA, queries=120)
    outcome = _ab(lab, db, tmp_path / "ab.json")["outcome"]
    assert (outcome["arm_a"], outcome["arm_b"]) == ("a", "b")
    assert outcome["verdict"] == "no difference yet" and outcome["p_value"] >= 0.05
    assert outcome["wins_a"] + outcome["wins_b"] > 20  # clicks were credited to both: not an empty test


def test_split_sends_each_session_to_one_arm_and_finds_the_worse_one(lab, tmp_path: Path) -> None:
    db = _experiment(lab, tmp_path, SPLIT.format(g=1, b=1), queries=240)
    searches = load_searches(db, collection="good")
    by_session: dict[str, set[str]] = {}
    for s in searches:
        by_session.setdefault(s.session or "", set()).add(s.arm)
    assert all(len(arms) == 1 for arms in by_session.values())
    counts = {arm: sum(arms == {arm} for arms in by_session.values()) for arm in ("good", "bad")}
    assert min(counts.values()) > 0.3 * len(by_session)  # 1:1 shares by hash: both get a fair part
    outcome = _ab(lab, db, tmp_path / "ab.json")["outcome"]
    assert outcome["kind"] == "split" and outcome["winner"] == "good" and outcome["p_value"] < 0.05
    assert outcome["needed_sessions"] is not None and outcome["needed_sessions"] > 0


def test_the_arms_file_is_reread_on_change_and_a_bad_one_changes_nothing(
    lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, root = lab
    monkeypatch.setattr(arms_module, "RECHECK_S", 0.0)
    arms = tmp_path / "arms.toml"
    arms.write_text(SPLIT.format(g=1, b=0))
    key = "k" * 24
    app = create_app(ServeConfig(collection="good", root=root, arms=arms, api_key=key, feedback_path=tmp_path / "f.db"))
    auth = {"X-API-Key": key}
    with running(app) as url:
        assert call_json(url + "/v1/arms")[0] == 401  # behind the API key like every /v1 route
        body = {"query": "t3w1 t3w2", "k": 3, "session": "s1"}
        assert call_json(url + "/v1/search", body, headers=auth)[1]["arm"] == "good"
        atomic_write_text(arms, SPLIT.format(g=0, b=1))  # promote 'bad' (what a later `promote` will do)
        assert call_json(url + "/v1/search", body, headers=auth)[1]["arm"] == "bad"
        atomic_write_text(arms, 'kind = "split"\nlive = "nobody"\n[arms.good]\n')
        status, answer = call_json(url + "/v1/search", body, headers=auth)
        assert status == 200 and answer["arm"] == "bad"  # kept
        status, info = call_json(url + "/v1/arms", headers=auth)
        assert status == 200 and info["live"] == "good" and info["active"] == ["bad"]
        assert "unknown arm 'nobody'" in info["reload_error"]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('kind = "split"\nlive = "godo"\n[arms.good]\n', None, "Did you mean 'good'"),
        ('kind = "interleave"\nlive = "good"\n[arms.good]\n', None, "exactly two arms"),
        ('kind = "split"\nlive = "good"\n[arms.good]\nshare = -1\n', 4, "share"),
        ('kind = "split"\nlive = "good"\n[arms.good]\ncolour = "red"\n', 4, "colour"),
        ('kind = "split"\nlive = "good"\n[arms.good]\ncollection = "missing"\n', None, "missing"),
        ('kind = "split"\nlive = "good"\n[arms.good\n', 3, "TOML"),
    ],
)
def test_a_malformed_arms_file_stops_serve_with_one_line(lab, tmp_path: Path, capsys, text, line, words) -> None:
    _, root = lab
    path = tmp_path / "arms.toml"
    path.write_text(text)
    assert main(["serve", "good", "--root", str(root), "--arms", str(path), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    if line is not None:
        assert f"{path}:{line}:" in err[0]


def test_monitor_ab_bad_input_is_one_line(lab, tmp_path: Path, capsys) -> None:
    db = _experiment(lab, tmp_path, INTERLEAVE, queries=20)
    _, root = lab
    common = ["monitor", "ab", "good", "--root", str(root), "--feedback-db", str(db)]
    for extra, words in [
        (["--arms", "good,nope"], "unknown arm 'nope'"),
        (["--arms", "good"], "invalid --arms"),
        (["--since", "2999-01-01T00:00:00"], "no searches in this period"),
        (["--kind", "split"], "cannot tell which two arms"),
    ]:
        assert main(common + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (extra, err)


def test_a_json_arms_file_loads_and_arms_need_a_collection(lab, tmp_path: Path, capsys) -> None:
    path = tmp_path / "arms.json"
    path.write_text(json.dumps({"kind": "split", "live": "good", "arms": {"good": {}, "bad": {"collection": "bad"}}}))
    loaded = arms_module.load_arms(path)
    assert loaded.active() == ["bad", "good"] and loaded.assign(None) == ("good",)
    assert loaded.assign("s1") == loaded.assign("s1")  # a session keeps its arm
    path.write_text("{")
    with pytest.raises(EmbedlabError, match="invalid JSON"):
        arms_module.load_arms(path)
    assert main(["serve", "--model", "hashing", "--arms", str(path)]) == 2
    assert "--arms needs a collection" in capsys.readouterr().err

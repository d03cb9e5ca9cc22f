"""The loop, for real: a collection served with A/B arms, simulated clicks, `monitor retrain` (a real
fine-tune of a tiny transformer) -> gate -> candidate staged -> `monitor promote` -> the running server
answers from the new live arm without a restart -> `monitor rollback`; a deliberately broken fine-tune
fails the gate and can never be promoted; the audit log; bad input; clicks on another collection's
results read from that collection."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sentence_transformers")

from embedlab.cli.main import main
from embedlab.collection import build, open_collection
from embedlab.collection.corpus import corpus_folder
from embedlab.data.beir import load_dataset
from embedlab.encoders.spec import ModelSpec
from embedlab.serve import ServeConfig, create_app
from embedlab.serve import arms as arms_module
from embedlab.serve.feedback import FeedbackStore
from tests.ab_fixtures import build_topic_collection, write_topics
from tests.retrain_fixtures import write_loop_dataset
from tests.serve_fixtures import call_json, running
from tests.tiny_models import make_tiny_sentence_transformer

BASE_ARMS = 'kind = "split"\nlive = "base"\n[arms.base]\n'
# the fine-tune that works on this data (tested to pass the gate with a wide margin: 0.67 -> ~1.0)
GOOD = ["--learning-rate", "1e-2", "--epochs", "2", "--batch-size", "32", "--dev-ratio", "0"]
GATE = ["--holdout", "0.25", "--min-clicks", "50", "--min-holdout", "10"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections root: 'live' (a tiny transformer over the synthetic dataset) served with one arm,
    and the feedback of 240 simulated queries (clicks on relevant results only, every rank read)."""
    tmp = tmp_path_factory.mktemp("loop")
    dataset, words = write_loop_dataset(tmp / "data", topics=40, queries_per_topic=6)
    model = make_tiny_sentence_transformer(tmp / "tiny", words=words)
    root = tmp / "collections"
    folder = corpus_folder(load_dataset(dataset), cache_dir=tmp / "corpora")
    build(folder, "live", model_spec=ModelSpec(model=str(model)), root=root, use_cache=False, max_tokens=64, overlap=8)
    arms = root / "live" / "arms.toml"
    arms.write_text(BASE_ARMS)
    app = create_app(ServeConfig(collection="live", root=root, arms=arms))
    sim = ["--stream", f"{dataset}:240", "--seed", "1", "--p-relevant", "1", "--p-other", "0", "--eta", "0"]
    with running(app) as url:
        assert main(["simulate", url, *sim]) == 0
        app.state.search_log.flush()
    return root


def _copy(lab: Path, tmp: Path) -> Path:
    root = tmp / "collections"
    shutil.copytree(lab, root)
    return root


def _wait_active(url: str, active: list[str]) -> dict:
    """The arms in force once the server has re-read the file (bounded: the re-read is due within 1 s)."""
    deadline = time.monotonic() + 10
    while True:
        info = call_json(url + "/v1/arms")[1]
        if info["active"] == active or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def _audit(root: Path) -> list[dict]:
    path = root / "live" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_retrain_gate_stage_promote_and_rollback_without_a_restart(
    lab: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(lab, tmp_path)
    arms = root / "live" / "arms.toml"
    monkeypatch.setenv("EMBEDLAB_OPERATOR", "alice")
    monkeypatch.setattr(arms_module, "RECHECK_S", 0.0)
    app = create_app(ServeConfig(collection="live", root=root, arms=arms))
    query = {"query": "placeholder", "k": 5, "session": "u1", "mode": "dense"}
    with running(app) as url:
        retrain = ["monitor", "retrain", "live", "--root", str(root), "--candidate", "cand", *GATE, *GOOD]
        assert main([*retrain, "--out", str(tmp_path / "models" / "cand")]) == 0
        out = capsys.readouterr().out
        assert "gate PASSED" in out and "staged (interleave)" in out
        record = json.loads((root / "live" / "candidates" / "cand.json").read_text())
        gate = record["gate"]["held_out"]
        assert record["gate"]["passed"] and gate["improved"] and gate["p_value"] < 0.05
        assert gate["ndcg_at_10_tuned"] > gate["ndcg_at_10_base"] and gate["queries"] >= 10
        assert Path(record["model"]).is_dir() and (root / "cand").is_dir()
        staged = arms_module.load_arms(arms)
        assert staged.kind == "interleave" and staged.live == "base" and staged.active() == ["base", "cand"]

        (clicks,) = (root / "live" / "retrain").glob("*/train-clicks.jsonl")
        query["query"] = json.loads(clicks.read_text().splitlines()[0])["query"]
        info = _wait_active(url, ["base", "cand"])
        assert info["live"] == "base" and info["kind"] == "interleave" and info["reload_error"] is None
        answer = call_json(url + "/v1/search", query)[1]
        assert answer["arm"] == "base|cand" and {hit["arm"] for hit in answer["hits"]} <= {"base", "cand"}

        assert main(["monitor", "promote", "live", "--root", str(root), "--arm", "cand", "--why", "won"]) == 0
        assert "promote: live arm base -> cand" in capsys.readouterr().out
        info = _wait_active(url, ["cand"])
        assert info["live"] == "cand" and info["kind"] == "split"
        answer = call_json(url + "/v1/search", query)[1]
        assert answer["arm"] == "cand" and answer["collection"] == "cand" and answer["hits"]

        assert main(["monitor", "rollback", "live", "--root", str(root), "--why", "CTR fell"]) == 0
        assert _wait_active(url, ["base"])["live"] == "base"
        assert call_json(url + "/v1/search", query)[1]["arm"] == "base"
    entries = _audit(root)
    assert [(e["action"], e["from"], e["to"]) for e in entries] == [
        ("stage", "base", "cand"),
        ("promote", "base", "cand"),
        ("rollback", "cand", "base"),
    ]
    assert all(e["who"] == "alice" and e["time"] for e in entries)
    assert entries[1]["why"] == "won" and "significantly better" in entries[1]["gate"]
    assert entries[2]["why"] == "CTR fell"
    # a second rollback has nothing left to undo; promoting the vetted candidate again is allowed
    assert main(["monitor", "rollback", "live", "--root", str(root), "--why", "again"]) == 2
    assert "nothing to roll back to" in capsys.readouterr().err


def test_a_broken_finetune_fails_the_gate_stages_nothing_and_is_never_promoted(
    lab: Path, tmp_path: Path, capsys
) -> None:
    root = _copy(lab, tmp_path)
    arms = root / "live" / "arms.toml"
    broken = ["--learning-rate", "0.9", "--epochs", "1", "--batch-size", "32", "--dev-ratio", "0"]
    args = ["monitor", "retrain", "live", "--root", str(root), "--candidate", "broken", *GATE, *broken]
    assert main([*args, "--out", str(tmp_path / "models" / "broken")]) == 1
    out = capsys.readouterr().out
    assert "gate FAILED" in out and "nothing staged" in out
    assert arms.read_text() == BASE_ARMS and not (root / "broken").exists() and not _audit(root)
    record = json.loads((root / "live" / "candidates" / "broken.json").read_text())
    assert record["gate"]["passed"] is False and record["staged"] is None
    # staged by hand anyway: promotion still refuses it, and changes nothing
    by_hand = BASE_ARMS + '[arms.broken]\ncollection = "live"\nshare = 0\n'
    arms.write_text(by_hand)
    assert main(["monitor", "promote", "live", "--root", str(root), "--arm", "broken", "--why", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has not passed the retrain gate" in err[0] and "gate failed" in err[0]
    assert arms.read_text() == by_hand and not _audit(root)


def test_bad_input_is_one_line_and_changes_nothing(lab: Path, tmp_path: Path, capsys) -> None:
    root = _copy(lab, tmp_path)
    other = tmp_path / "other.sqlite"
    store = FeedbackStore(other)
    store.add(
        collection="elsewhere",
        generation=1,
        query="q",
        mode="dense",
        kind="click",
        chunk_id=1,
        path=None,
        page=None,
        rank=1,
        result_ids=[1],
        session="s",
    )
    store.close()
    common = ["--root", str(root)]
    cases = [
        (["monitor", "promote", "live", *common, "--arm", "nope", "--why", "x"], "unknown arm 'nope'"),
        (["monitor", "promote", "live", *common, "--arm", "base", "--why", "x"], "already the live arm"),
        (["monitor", "promote", "live", *common, "--arm", "base", "--why", " "], "a reason is required"),
        (["monitor", "promote", "nolive", *common, "--arm", "base", "--why", "x"], "nolive"),
        (["monitor", "rollback", "live", *common, "--why", "x"], "nothing to roll back to"),
        (["monitor", "rollback", "live", *common, "--arms", str(tmp_path / "none.toml"), "--why", "x"], "no arms file"),
        (["monitor", "retrain", "live", *common, "--arms", str(tmp_path / "none.toml")], "no arms file"),
        (["monitor", "retrain", "live", *common, "--feedback-db", str(other)], "another collection"),
        (["monitor", "retrain", "live", *common, "--min-clicks", "100000"], "at least 100000 training pages"),
        (["monitor", "retrain", "live", *common, "--holdout", "1.5"], "invalid --holdout"),
        (["monitor", "retrain", "live", *common, "--propensity-eta", "-1"], "invalid --propensity-eta"),
        (["monitor", "retrain", "live", *common, "--learning-rate", "5"], "bad learning rate"),
    ]
    before = sorted(p.relative_to(root) for p in root.rglob("*") if "feedback.sqlite" not in p.name)
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (args, err)
    after = sorted(p.relative_to(root) for p in root.rglob("*") if "feedback.sqlite" not in p.name)
    assert after == before and (root / "live" / "arms.toml").read_text() == BASE_ARMS


def test_clicks_on_another_collections_results_are_read_from_that_collection(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two collections whose chunk ids overlap (both 1..48), interleaved: a click on arm b's result
    names b's chunk in the feedback row and in the exported click log, never a's chunk with that id."""
    root = tmp_path / "collections"
    build_topic_collection(write_topics(tmp_path / "ta", prefix="t"), root, "a")
    build_topic_collection(write_topics(tmp_path / "ub", prefix="u"), root, "b")
    arms = tmp_path / "arms.toml"
    arms.write_text('kind = "interleave"\nlive = "a"\n[arms.a]\n[arms.b]\ncollection = "b"\n')
    db = tmp_path / "feedback.sqlite"
    app = create_app(ServeConfig(collection="a", root=root, arms=arms, feedback_path=db))
    with running(app) as url:
        answer = call_json(url + "/v1/search", {"query": "u3w1 u3w2 t3w1", "k": 6, "session": "s1"})[1]
        ids = [hit["chunk_id"] for hit in answer["hits"]]
        hit = next(h for h in answer["hits"] if h["arm"] == "b")
        click = {"query": "u3w1 u3w2 t3w1", "chunk_id": hit["chunk_id"], "kind": "click", "rank": hit["rank"]}
        status, body = call_json(url + "/v1/feedback", click | {"result_ids": ids, "search_id": answer["search_id"]})
        assert status == 200 and body["known_chunk"]
        status, body = call_json(url + "/v1/feedback", click | {"result_ids": ids})  # no search id: unknown arm
        assert status == 200 and not body["known_chunk"]
        # another worker answered the search (nothing in this process's memory): the logged search says
        monkeypatch.setattr(arms_module, "RECENT_SEARCHES", 0)
        again = call_json(url + "/v1/search", {"query": "u3w1 u3w2 t3w1", "k": 6, "session": "s2"})[1]
        app.state.search_log.flush()
        other = next(h for h in again["hits"] if h["arm"] == "b")
        body = {"query": "q", "chunk_id": other["chunk_id"], "kind": "up", "rank": other["rank"]}
        ids2 = [h["chunk_id"] for h in again["hits"]]
        assert call_json(url + "/v1/feedback", body | {"result_ids": ids2, "search_id": again["search_id"]})[1][
            "known_chunk"
        ]
    rows = FeedbackStore(db).db.execute("SELECT path FROM feedback ORDER BY id").fetchall()
    assert rows[0][0] == hit["path"] and hit["path"].startswith("u") and rows[1][0] is None
    assert rows[2][0] == other["path"] and other["path"].startswith("u")
    out = tmp_path / "clicks.jsonl"
    assert (
        main(
            [
                "feedback",
                "export",
                "a",
                "--root",
                str(root),
                "--feedback-db",
                str(db),
                "--arms",
                str(arms),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "1 events of arms not in the arms file left out" in capsys.readouterr().out  # the one without search id
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    (row,) = [r for r in rows if r["query"] == "u3w1 u3w2 t3w1"]
    assert len(rows) == 2  # and the thumbs-up of the second page
    texts = {}
    for name in ("a", "b"):
        with open_collection(name, root=root) as collection:
            texts[name] = " ".join(collection.store.chunks([hit["chunk_id"]])[hit["chunk_id"]].text.split())
    assert row["clicked"] == [texts["b"]] and texts["a"] != texts["b"]
    assert any(re.search(r"\bt\d+w", text) for text in row["shown"])  # a's results are on the page too
    assert main(["feedback", "export", "a", "--root", str(root), "--feedback-db", str(db), "--out", str(out)]) == 0
    assert "3 events of arms not in the arms file left out" in capsys.readouterr().out  # no arms file: b unknown


def test_an_alert_starts_a_gated_retrain_that_stages_but_never_promotes(lab: Path, tmp_path: Path, capsys) -> None:
    root = _copy(lab, tmp_path)
    arms = root / "live" / "arms.toml"
    rules = tmp_path / "monitor.toml"
    models = tmp_path / "models"
    good = "learning_rate = 1e-2\nepochs = 2\nbatch_size = 32\ndev_ratio = 0\nholdout = 0.25\nmin_clicks = 50\n"
    rules.write_text(
        '[reference]\nfirst = 20\n\n[[rule]]\nname = "ctr floor"\nmetric = "ctr"\nwindow = "30d"\nbelow = 1.01\n'
        f'min_volume = 5\n\n[retrain]\non = ["ctr floor"]\nout_dir = "{models}"\n{good}'
    )
    assert main(["monitor", "check", "live", "--root", str(root), "--rules", str(rules)]) == 1  # the alert's status
    out = capsys.readouterr().out
    assert "retrain: started by ctr floor" in out and "gate PASSED" in out and "staged (interleave)" in out
    staged = arms_module.load_arms(arms)
    assert staged.live == "base" and len(staged.active()) == 2  # interleaved with the candidate, not promoted
    (audit,) = _audit(root)
    assert audit["action"] == "stage" and audit["why"] == "alert: ctr floor"
    assert any(models.iterdir())  # the candidate's model went to [retrain] out_dir

    rules.write_text(rules.read_text().replace('on = ["ctr floor"]', 'on = ["no such rule"]'))
    assert main(["monitor", "check", "live", "--root", str(root), "--rules", str(rules)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[retrain] on names no rule: 'no such rule'" in err[0]


def test_held_out_clicks_weigh_the_inverse_of_their_ranks_examination() -> None:
    """IPS grades (monitor/retrain.py's doc): a click at displayed rank r weighs min(r, CLIP_RANK)^eta,
    summed over a query's pages, x GRADE_SCALE; eta 0 is the plain label 1 for every clicked chunk.
    Integer arithmetic, so exact equality."""
    from embedlab.monitor.retrain import CLIP_RANK, GRADE_SCALE, click_grades

    shown = [f"doc  {n}" for n in range(1, 31)]  # flattened on both sides: "doc  3" is "doc 3"
    rows = [
        {"query": "q1", "clicked": ["doc 3"], "shown": shown},
        {"query": "q1", "clicked": ["doc 2", "doc 3"], "shown": shown[1:]},  # another page: doc 3 at rank 2
        {"query": "q2", "clicked": ["doc 30"], "shown": shown},
        {"query": "q3", "clicked": ["gone"], "shown": ["gone"]},  # not in the corpus: no judgment
    ]
    by_text = {f"doc {n}": [n] for n in range(1, 31)}
    assert click_grades(rows, by_text, eta=1) == {
        "q1": {3: (3 + 2) * GRADE_SCALE, 2: 1 * GRADE_SCALE},
        "q2": {30: CLIP_RANK * GRADE_SCALE},
    }
    assert click_grades(rows, by_text, eta=2)["q1"] == {3: (9 + 4) * GRADE_SCALE, 2: GRADE_SCALE}
    assert click_grades(rows, by_text, eta=0) == {"q1": {3: 1, 2: 1}, "q2": {30: 1}}


@pytest.mark.parametrize(
    ("delta", "p_value", "improve", "no_regression"),
    [(0.04, 0.001, True, True), (0.01, 0.3, False, True), (-0.027, 0.074, False, True), (-0.03, 0.01, False, False)],
)
def test_click_gate_rules(delta: float, p_value: float, improve: bool, no_regression: bool) -> None:
    """``improve``: significantly better; ``no-regression``: not significantly worse; ``report``:
    never gates (the held-out clicks' rule beside a labelled set; monitor/retrain.py's doc says why)."""
    from embedlab.eval.stats import Interval
    from embedlab.monitor.retrain import RetrainSpec, _gate_figures, click_rule
    from embedlab.train.verdict import MetricComparison, Verdict

    assert click_rule(RetrainSpec("c")) == "improve" and click_rule(RetrainSpec("c", test_dataset="x")) == "report"
    assert click_rule(RetrainSpec("c", test_dataset="x", click_gate="improve")) == "improve"

    def interval(mean: float) -> Interval:
        return Interval(mean, mean - 0.01, mean + 0.01, 0.95, "bootstrap")

    ndcg = MetricComparison("ndcg_at_10", interval(0.9), interval(0.9 + delta), interval(delta), p_value, "paired")
    verdict = Verdict("heldout", "test", 87, (ndcg,), None, None, alpha=0.05)  # type: ignore[arg-type]  # sides unused
    assert _gate_figures(verdict, rule="improve")["passed"] is improve
    figures = _gate_figures(verdict, rule="no-regression")
    assert figures["passed"] is no_regression and figures["rule"] == "no-regression"
    assert ("significantly worse" in figures["reason"]) is (not no_regression)
    reported = _gate_figures(verdict, rule="report")
    assert reported["passed"] is True and reported["reason"].endswith("(reported, not gated)")

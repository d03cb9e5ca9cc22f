"""``embedlab monitor``: search events logged by the real server, online metrics from seeded simulated
traffic (the simulator keeps its own tally, compared exactly), report/check CLI exit codes, /metrics gauges."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from embedlab.cli.main import main
from embedlab.monitor.events import load_searches
from embedlab.monitor.online import Options, group_metrics, reformulated
from embedlab.serve import ServeConfig, create_app
from embedlab.serve.feedback import SCHEMA_VERSION, FeedbackStore
from tests.serve_fixtures import build_collection, call, call_json, make_library, running

OTHER_TESTS = ("query_centroid", "out_of_domain", "vocabulary_drift")
QUERIES = ["fresnel lens beam", "sourdough bread oven", "reset password", "tide tables causeway", "lighthouse storm"]


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory):
    """A collection served for real, 40 seeded sessions of searches and clicks; yields (root, tally)."""
    tmp = tmp_path_factory.mktemp("monitor")
    root = tmp / "collections"
    build_collection(make_library(tmp / "library"), root)
    rng = random.Random(15)
    tally = {"searches": 0, "clicked": 0, "at1": 0, "at3": 0, "rr": 0.0, "ups": 0, "downs": 0, "pairs": []}
    app = create_app(ServeConfig(collection="lib", root=root))
    with running(app) as url:
        for session in range(40):
            previous = None
            for _ in range(rng.randint(1, 3)):
                query = rng.choice(QUERIES)
                status, res = call_json(url + "/v1/search", {"query": query, "k": 5, "session": f"s{session}"})
                assert status == 200 and len(res["search_id"]) == 32
                tally["searches"] += 1
                if previous is not None:
                    tally["pairs"].append(previous != query)
                previous = query
                shown = [h["chunk_id"] for h in res["hits"]]
                ranks = sorted({rng.randint(1, len(shown)) for _ in range(rng.randint(0, 2))}) if shown else []
                for rank in ranks:
                    body = {"query": query, "chunk_id": shown[rank - 1], "kind": "click", "rank": rank,
                            "result_ids": shown, "session": f"s{session}", "search_id": res["search_id"]}  # fmt: skip
                    assert call_json(url + "/v1/feedback", body)[0] == 200
                if ranks:
                    tally["clicked"] += 1
                    tally["at1"] += ranks[0] <= 1
                    tally["at3"] += ranks[0] <= 3
                    tally["rr"] += 1.0 / ranks[0]
                    if rng.random() < 0.3:
                        kind = rng.choice(["up", "down"])
                        tally["ups" if kind == "up" else "downs"] += 1
                        body = {"query": query, "chunk_id": shown[0], "kind": kind, "result_ids": shown,
                                "search_id": res["search_id"]}  # fmt: skip
                        assert call_json(url + "/v1/feedback", body)[0] == 200
        app.state.search_log.flush()
        tally["url_metrics"] = call(url + "/metrics")[2].decode()
    return root, tally


def test_every_search_is_one_row_with_what_was_shown(traffic) -> None:
    root, tally = traffic
    db = sqlite3.connect(root / "lib" / "feedback.sqlite")
    rows = db.execute(
        "SELECT arm, session, query, result_ids, latency_ms, compute_ms, top_score FROM searches"
    ).fetchall()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    linked = db.execute("SELECT COUNT(*) FROM feedback WHERE search_id IN (SELECT search_id FROM searches)").fetchone()
    total = db.execute("SELECT COUNT(*) FROM feedback").fetchone()
    db.close()
    assert len(rows) == tally["searches"]
    assert all(r[0] == "lib" and r[1].startswith("s") and r[2] in QUERIES for r in rows)
    assert all(isinstance(json.loads(r[3]), list) and r[4] >= r[5] >= 0 for r in rows)  # latency includes compute
    assert linked == total and total[0] > 0


def test_online_metrics_equal_the_simulators_tally(traffic) -> None:
    root, tally = traffic
    searches = load_searches(root / "lib" / "feedback.sqlite", collection="lib")
    options = Options(reformulation_s=600.0, price_per_hour=3.6)
    m = group_metrics(searches, options=options, reformulations=reformulated(searches, within_s=600.0), thresholds={})
    n = tally["searches"]
    assert m["queries"] == n
    assert m["ctr"] == pytest.approx(tally["clicked"] / n, abs=1e-12)  # exact counts: only float rounding
    assert m["ctr_at_1"] == pytest.approx(tally["at1"] / n, abs=1e-12)
    assert m["ctr_at_3"] == pytest.approx(tally["at3"] / n, abs=1e-12)
    assert m["mrr"] == pytest.approx(tally["rr"] / n, abs=1e-12)
    assert m["abandonment"] == pytest.approx(1 - tally["clicked"] / n, abs=1e-12)
    assert m["reformulation"] == pytest.approx(sum(tally["pairs"]) / n, abs=1e-12)  # every search has a session
    if tally["ups"] + tally["downs"]:
        assert m["thumbs_up_share"] == pytest.approx(tally["ups"] / (tally["ups"] + tally["downs"]), abs=1e-12)
    assert m["latency_p50"] <= m["latency_p95"] <= m["latency_p99"]
    # price 3.6/h = 0.001 per second: cost per 1k = mean compute seconds per query (x1000 x 0.001)
    mean_compute_s = sum(s.compute_ms for s in searches) / n / 1000
    assert m["cost_per_1k"] == pytest.approx(mean_compute_s, rel=1e-9)


def test_report_writes_json_and_dashboard(traffic, tmp_path: Path, capsys) -> None:
    root, tally = traffic
    out = tmp_path / "report"
    code = main(["monitor", "report", "lib", "--root", str(root), "--window", "30s", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "monitor.json").read_text())
    assert report["searches"] == tally["searches"] and report["overall"][0]["queries"] == tally["searches"]
    assert sum(w["queries"] for w in report["windows"]) == tally["searches"]
    page = (out / "dashboard.html").read_text()
    assert page.count("<svg") >= 5 and "<script" not in page
    assert "lib" in capsys.readouterr().out


def _rules(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return path


def test_check_exit_codes_and_gauges(traffic, tmp_path: Path, capsys) -> None:
    root, _ = traffic
    quiet = _rules(
        tmp_path, '[reference]\nfirst = 20\n\n[[rule]]\nmetric = "ctr"\nwindow = "1d"\nbelow = 0.0\nmin_volume = 5\n'
    )
    assert main(["monitor", "check", "lib", "--root", str(root), "--rules", str(quiet)]) == 0
    loud = _rules(
        tmp_path,
        '[reference]\nfirst = 20\n\n[[rule]]\nname = "ctr floor"\nmetric = "ctr"\nwindow = "1d"\nbelow = 1.01\n'
        'min_volume = 5\n\n[[rule]]\nmetric = "query_drift"\nwindow = "1d"\np_value = 0.001\nmin_volume = 5\n'
        + "".join(f'\n[[rule]]\nmetric = "{m}"\nwindow = "1d"\np_value = 0.001\nmin_volume = 5\n' for m in OTHER_TESTS),
    )
    assert main(["monitor", "check", "lib", "--root", str(root), "--rules", str(loud)]) == 1
    printed = capsys.readouterr().out
    assert "ALERT      ctr floor" in printed and "query_drift" in printed
    state = json.loads((root / "lib" / "monitor-state.json").read_text())
    # drift: the same seeded traffic throughout, so no drift test alarms at p < 0.001
    assert [v["status"] for v in state["verdicts"]] == ["alert", "ok", "ok", "ok", "ok"]
    assert all(v["p_value"] is not None for v in state["verdicts"][1:])
    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        text = call(url + "/metrics")[2].decode()
    assert 'embedlab_monitor_alert{rule="ctr floor"} 1.0' in text


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('[[rule]]\nmetric = "ctr"\nwindow = "1h"\nbelow = 0.1\nbogus = 1\n', 5, "bogus"),
        ('[[rule]]\nmetric = "ctr"\nbelow = 0.1\n\n[[rule]]\nmetric = "nope"\n', 5, "unknown metric"),
        ('[[rule]]\nmetric = "query_drift"\nwindow = "1h"\nbelow = 0.1\n', 1, "p_value"),
        ('[[rule]]\nmetric = "ctr"\nwindow = "soon"\nbelow = 0.1\n', 3, "window"),
        ('[[rule]\nmetric = "ctr"\n', 1, "invalid TOML"),
    ],
)
def test_malformed_rules_are_one_line_with_file_and_line(traffic, tmp_path: Path, capsys, text, line, words) -> None:
    root, _ = traffic
    path = _rules(tmp_path, text)
    before = (
        (root / "lib" / "monitor-state.json").read_bytes() if (root / "lib" / "monitor-state.json").exists() else None
    )
    assert main(["monitor", "check", "lib", "--root", str(root), "--rules", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:{line}:" in err[0] and words in err[0]
    after = (
        (root / "lib" / "monitor-state.json").read_bytes() if (root / "lib" / "monitor-state.json").exists() else None
    )
    assert before == after  # nothing changed


def test_wrong_collection_and_empty_window_are_refused(traffic, tmp_path: Path, capsys) -> None:
    root, _ = traffic
    db = root / "lib" / "feedback.sqlite"
    assert main(["monitor", "report", "other", "--root", str(root), "--feedback-db", str(db)]) == 2
    assert "another collection" in capsys.readouterr().err
    future = "2999-01-01T00:00:00"
    assert main(["monitor", "report", "lib", "--root", str(root), "--since", future, "--out", str(tmp_path / "r")]) == 2
    assert "no searches" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_an_old_feedback_file_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, created TEXT NOT NULL, collection TEXT NOT NULL,"
        " generation INTEGER, query TEXT NOT NULL, mode TEXT, kind TEXT NOT NULL, chunk_id INTEGER NOT NULL, path TEXT,"
        " page INTEGER, rank INTEGER, result_ids TEXT NOT NULL, session TEXT);"
        "INSERT INTO feedback (created, collection, query, kind, chunk_id, result_ids) "
        "VALUES ('2024-01-01T00:00:00+00:00', 'lib', 'q', 'click', 3, '[3]');"
    )
    old.close()
    store = FeedbackStore(path)
    events, skipped = store.events()
    store.close()
    assert [e.chunk_id for e in events] == [3] and not skipped
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert "search_id" in [c[1] for c in db.execute("PRAGMA table_info(feedback)")]
    assert db.execute("SELECT COUNT(*) FROM searches").fetchone()[0] == 0
    db.close()

"""End to end on the tiny fixture with the fake encoder and BM25: the CLI writes every output."""

from __future__ import annotations

import json
from pathlib import Path

from embedlab.cli.main import main


def test_eval_cli_writes_all_outputs(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "hashing",
            "-m",
            "bm25",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--latency-queries",
            "5",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and "bm25" in printed
    for name in ("summary.json", "report.md", "report.html"):
        assert (out / name).is_file()
    result = json.loads((out / "tiny" / "bm25.json").read_text())
    scores = result["scores"]["test"][0]
    assert 0.0 <= scores["ndcg_at_10"] <= 1.0
    assert scores["main_score"] == scores["ndcg_at_10"]
    assert result["embedlab"]["manifest"]["dataset"]["queries"] == 3  # only judged queries
    run_lines = (out / "tiny" / "bm25.run.trec").read_text().splitlines()
    assert run_lines[0].split()[1] == "Q0" and len(run_lines[0].split()) == 6
    per_query = json.loads((out / "tiny" / "hashing.per_query.json").read_text())
    assert set(per_query["ndcg_at_10"]) == {"q1", "q2", "q3"}


def test_compare_with_an_mteb_results_file(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    reference = tmp_path / "mteb.json"
    reference.write_text(json.dumps({"scores": {"test": [{"ndcg_at_10": 0.5, "mrr_at_10": 0.4}]}}))
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "hashing:index=faiss-flat",
            "--out",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
            "--latency-queries",
            "3",
            "--compare",
            str(reference),
        ]
    )
    assert code == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("compared with"))
    assert "ndcg_at_10 0.50000" in line and "tiny/hashing:index=faiss-flat" in line


def test_compare_file_that_is_not_mteb_is_one_line(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    code = main(["eval", "-d", str(tiny_dataset), "-m", "hashing", "--out", str(tmp_path / "o"), "--compare", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "not an MTEB results file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()

"""``--json`` on eval, select, pooling and finetune: stdout holds exactly one JSON document, the same
as the summary file written next to the reports; everything meant for people goes to stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.train.guardrails import MIN_PAIRS
from tests.helpers import TRAIN_CORPUS, TRAIN_QRELS, TRAIN_QUERIES, write_beir


def _only_json(printed: str) -> object:
    """json.loads rejects trailing text, so this also proves nothing else reached stdout."""
    assert printed.endswith("\n") and printed.count("\n{") == 0 and printed.startswith("{")
    return json.loads(printed)


def test_eval_json_prints_summary_json(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["eval", "-d", str(tiny_dataset), "-m", "hashing", "-m", "bm25", "--out", str(out)]
    code = main([*args, "--cache-dir", str(tmp_path / "c"), "--latency-queries", "3", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    printed = _only_json(captured.out)
    assert printed == json.loads((out / "summary.json").read_text())
    assert [r["embedlab"]["model"] for r in printed["results"]] == ["hashing", "bm25"]  # type: ignore[index]
    assert (out / "report.html").is_file() and (out / "tiny" / "bm25.run.trec").is_file()
    assert f"results: {out}/" in captured.err  # the human line moved to stderr, not dropped


def test_eval_without_json_still_prints_the_table(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["eval", "-d", str(tiny_dataset), "-m", "bm25", "--out", str(out), "--latency-queries", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ndcg@10" in printed and f"results: {out}/" in printed
    with pytest.raises(json.JSONDecodeError):
        json.loads(printed)


def test_select_json_prints_selection_json(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sel"
    args = ["select", "-d", str(tiny_dataset), "-m", "hashing", "-m", "bm25", "--out", str(out)]
    code = main([*args, "--cache-dir", str(tmp_path / "c"), "--latency-queries", "3", "--no-progress", "--json"])
    captured = capsys.readouterr()
    printed = _only_json(captured.out)
    assert printed == json.loads((out / "selection.json").read_text())
    assert {s["model"] for s in printed["summaries"]} == {"hashing", "bm25"}  # type: ignore[index]
    assert code == (0 if printed["recommended"] is not None else 1)  # type: ignore[index]
    assert (out / "selection.html").is_file() and (out / "eval" / "summary.json").is_file()
    assert f"results: {out}/" in captured.err


def test_pooling_accepts_json_and_a_refused_run_prints_nothing_on_stdout(
    tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    """bm25 has no pooling head: the run is refused in one line (exit 2) before any work or output."""
    code = main(["pooling", "-m", "bm25", "-d", str(tiny_dataset), "--out", str(tmp_path / "p"), "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1


@pytest.mark.model
def test_pooling_json_prints_selection_json(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pool"
    args = ["pooling", "-m", "all-MiniLM-L6-v2", "-d", str(tiny_dataset), "--out", str(out), "--json"]
    main([*args, "--cache-dir", str(tmp_path / "c"), "--latency-queries", "3", "--no-progress"])
    printed = _only_json(capsys.readouterr().out)
    assert printed == json.loads((out / "selection.json").read_text())
    assert len(printed["summaries"]) == 3  # type: ignore[index]


def test_finetune_json_refused_run_prints_nothing_on_stdout(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    train = tmp_path / "few.jsonl"
    rows = [{"query": f"bird {i} migration", "positive": f"bird {i} flies south"} for i in range(MIN_PAIRS - 1)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["finetune", "--base", "hashing", "--train", str(train), "--test", str(tiny_dataset)]
    code = main([*args, "--out", str(tmp_path / "out"), "--dev-ratio", "0", "--no-progress", "--json"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "too few training pairs" in captured.err


@pytest.mark.model
def test_finetune_json_prints_finetune_json(tmp_path: Path, tiny_dataset: Path, capsys) -> None:
    """The cheap run of tests/test_finetune_guardrails.py (1 epoch, tiny data, MiniLM on CPU: seconds)."""
    train = write_beir(tmp_path / "train", corpus=TRAIN_CORPUS, queries=TRAIN_QUERIES, qrels=TRAIN_QRELS, split="train")
    out = tmp_path / "models" / "ft"
    args = ["finetune", "--base", "all-MiniLM-L6-v2", "--train", str(train), "--test", str(tiny_dataset)]
    args += ["--out", str(out), "--epochs", "1", "--batch-size", "4", "--dev-ratio", "0.3", "--mine-ranks", "2-6"]
    code = main([*args, "--latency-queries", "3", "--drop-leaked", "--no-progress", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    printed = _only_json(captured.out)
    assert printed == json.loads((out / "finetune.json").read_text())
    assert f"model: {out}/" in captured.err and (out / "README.md").is_file()


def test_collection_eval_json_prints_summary_json(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    root, out = tmp_path / "collections", tmp_path / "out"
    build = ["index", "build", "--dataset", str(tiny_dataset), "--collection", "tiny", "--model", "hashing:dim=64"]
    assert main([*build, "--root", str(root), "--no-progress"]) == 0
    capsys.readouterr()
    args = ["eval", "-d", str(tiny_dataset), "--collection", "tiny", "--root", str(root), "--out", str(out)]
    assert main([*args, "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    printed = _only_json(captured.out)
    assert printed == json.loads((out / "summary.json").read_text())
    assert (out / "comparisons.json").is_file() and " vs " in captured.err  # the comparison lines, on stderr

"""Bad input gets a clear error, never a traceback (DESIGN.md, "Things that must be true everywhere").

Every case runs the real CLI (``embedlab eval``) on a malformed dataset, model or metric and
checks: exit code 2, exactly one line on stderr starting ``embedlab: error:``, the file (and
``:LINE`` where a line applies) and what was found / expected, no traceback text, and
nothing written to ``--out``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from embedlab.cli.main import main
from tests.helpers import TINY_CORPUS, TINY_QRELS, TINY_QUERIES, write_beir


def run_eval_cli(
    dataset: str | Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str, model: str = "hashing"
) -> tuple[int, str, str, Path]:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(dataset),
            "-m",
            model,
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--latency-queries",
            "2",
            *extra,
        ]
    )
    captured = capsys.readouterr()
    return code, captured.out, captured.err, out


def assert_clean_failure(code: int, stdout: str, stderr: str, out: Path, *needles: str) -> str:
    """One line on stderr, exit 2, no traceback, nothing written; every needle is in the line."""
    assert code == 2, f"exit code {code}; stderr: {stderr!r}"
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {stderr!r}"
    line = lines[0]
    assert line.startswith("embedlab: error: "), line
    assert "Traceback" not in stdout + stderr
    assert not out.exists() or not any(out.rglob("*")), f"files written to --out: {list(out.rglob('*'))}"
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def jsonl(records: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


# --------------------------------------------------------------------------- dataset files


@dataclass(frozen=True)
class DataCase:
    """``breaks`` damages a fresh copy of the tiny dataset; ``expect`` gets the folder, returns needles."""

    breaks: Callable[[Path], None]
    expect: Callable[[Path], list[str]]


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def breaks(folder: Path) -> None:
        target = folder / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)

    return breaks


def _remove(name: str) -> Callable[[Path], None]:
    return lambda folder: (folder / name).unlink()


def _corpus_gz_truncated(folder: Path) -> None:
    data = gzip.compress(jsonl(TINY_CORPUS * 40).encode())  # several blocks, cut in the middle
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.jsonl.gz").write_bytes(data[: len(data) // 2])


def _corpus_gz_not_gzip(folder: Path) -> None:
    (folder / "corpus.jsonl").unlink()
    (folder / "corpus.jsonl.gz").write_bytes(b"this is not gzip data\n")


def _only_dev_split(folder: Path) -> None:
    (folder / "qrels" / "test.tsv").rename(folder / "qrels" / "dev.tsv")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")


def _qrels(rows: str) -> Callable[[Path], None]:
    return _write("qrels/test.tsv", "query-id\tcorpus-id\tscore\n" + rows)


CORPUS_BAD_JSON = jsonl(TINY_CORPUS[:2]) + '{"_id": "d3", "text": "unterminated\n' + jsonl(TINY_CORPUS[3:])
DATA_CASES: dict[str, DataCase] = {
    "missing-corpus": DataCase(
        _remove("corpus.jsonl"), lambda f: [str(f), "corpus file missing", "expected corpus.jsonl or corpus.jsonl.gz"]
    ),
    "missing-queries": DataCase(_remove("queries.jsonl"), lambda f: [str(f / "queries.jsonl"), "missing file"]),
    "missing-qrels-split": DataCase(
        _only_dev_split, lambda f: [str(f / "qrels" / "test.tsv"), "missing file", "splits found: dev, train"]
    ),
    "corpus-malformed-json": DataCase(
        _write("corpus.jsonl", CORPUS_BAD_JSON),
        lambda f: [
            f"{f / 'corpus.jsonl'}:3:",
            "malformed JSON (Unterminated string starting at column 23)",
            'found \'{"_id": "d3"',
            "expected one JSON object per line",
        ],
    ),
    "queries-malformed-json": DataCase(
        _write("queries.jsonl", jsonl(TINY_QUERIES[:1]) + '{"_id": "q2", "text": "bread",}\n'),
        lambda f: [f"{f / 'queries.jsonl'}:2:", "malformed JSON", "expected one JSON object per line"],
    ),
    "corpus-line-is-array": DataCase(
        _write("corpus.jsonl", jsonl(TINY_CORPUS[:4]) + '["d5", "Sourdough", "text"]\n'),
        lambda f: [f"{f / 'corpus.jsonl'}:5:", "not a JSON object", "found list", "expected an object"],
    ),
    "queries-line-is-string": DataCase(
        _write("queries.jsonl", jsonl(TINY_QUERIES[:2]) + '"q3 protect account"\n'),
        lambda f: [f"{f / 'queries.jsonl'}:3:", "not a JSON object", "found str"],
    ),
    "corpus-missing-id": DataCase(
        _write("corpus.jsonl", jsonl([*TINY_CORPUS[:1], {"id": "d2", "text": "no underscore"}, *TINY_CORPUS[2:]])),
        lambda f: [
            f"{f / 'corpus.jsonl'}:2:",
            "missing field '_id'",
            "found fields ['id', 'text']",
            "expected a '_id' field",
        ],
    ),
    "corpus-missing-text-and-title": DataCase(
        _write("corpus.jsonl", jsonl([*TINY_CORPUS[:2], {"_id": "d3", "body": "x"}, *TINY_CORPUS[3:]])),
        lambda f: [f"{f / 'corpus.jsonl'}:3:", "missing field 'text'", "found fields ['_id', 'body']"],
    ),
    "queries-missing-id": DataCase(
        _write("queries.jsonl", jsonl([*TINY_QUERIES[:3], {"text": "no id here"}])),
        lambda f: [f"{f / 'queries.jsonl'}:4:", "missing field '_id'", "found fields ['text']"],
    ),
    "queries-missing-text": DataCase(
        _write("queries.jsonl", jsonl([{"_id": "q1", "query": "reset password"}, *TINY_QUERIES[1:]])),
        lambda f: [
            f"{f / 'queries.jsonl'}:1:",
            "missing field 'text'",
            "found fields ['_id', 'query']",
            "expected a 'text' field",
        ],
    ),
    "corpus-id-is-list": DataCase(
        _write("corpus.jsonl", jsonl([*TINY_CORPUS[:2], {"_id": ["d3"], "text": "a list id"}, *TINY_CORPUS[3:]])),
        lambda f: [f"{f / 'corpus.jsonl'}:3:", "field '_id' has the wrong type", "found list", "expected a string"],
    ),
    "queries-text-is-number": DataCase(
        _write("queries.jsonl", jsonl([*TINY_QUERIES[:1], {"_id": "q2", "text": 1.5}, *TINY_QUERIES[2:]])),
        lambda f: [f"{f / 'queries.jsonl'}:2:", "field 'text' has the wrong type", "found float"],
    ),
    "corpus-empty-id": DataCase(
        _write("corpus.jsonl", jsonl([*TINY_CORPUS, {"_id": "  ", "text": "blank id"}])),
        lambda f: [f"{f / 'corpus.jsonl'}:6:", "empty '_id'", "expected a non-empty document id"],
    ),
    "queries-empty-id": DataCase(
        _write("queries.jsonl", jsonl([*TINY_QUERIES[:2], {"_id": "", "text": "blank id"}, *TINY_QUERIES[2:]])),
        lambda f: [f"{f / 'queries.jsonl'}:3:", "empty '_id'", "expected a non-empty query id"],
    ),
    "corpus-duplicate-id": DataCase(
        _write("corpus.jsonl", jsonl([*TINY_CORPUS, {"_id": "d2", "text": "again"}])),
        lambda f: [
            f"{f / 'corpus.jsonl'}:6:",
            "duplicate document id 'd2' (first at line 2)",
            "expected unique '_id' values",
        ],
    ),
    "queries-duplicate-id": DataCase(
        _write("queries.jsonl", jsonl([*TINY_QUERIES, {"_id": "q1", "text": "again"}])),
        lambda f: [f"{f / 'queries.jsonl'}:5:", "duplicate query id 'q1' (first at line 1)"],
    ),
    "qrels-two-columns": DataCase(
        _qrels("q1\td1\t2\nq1\td4\n"),
        lambda f: [
            f"{f / 'qrels' / 'test.tsv'}:3:",
            "wrong number of columns (2)",
            "found 'q1\\td4'",
            "expected 3 tab-separated columns",
        ],
    ),
    "qrels-four-columns": DataCase(
        _qrels("q1\t0\td1\t2\n"),
        lambda f: [f"{f / 'qrels' / 'test.tsv'}:2:", "wrong number of columns (4)", "expected 3 tab-separated columns"],
    ),
    "qrels-space-separated": DataCase(
        _qrels("q1\td1\t2\nq1 d4 1\n"), lambda f: [f"{f / 'qrels' / 'test.tsv'}:3:", "wrong number of columns (1)"]
    ),
    "qrels-float-score": DataCase(
        _qrels("q1\td1\t2\nq1\td4\t1.5\n"),
        lambda f: [
            f"{f / 'qrels' / 'test.tsv'}:3:",
            "relevance score is not an integer",
            "found '1.5'",
            "expected an integer grade",
        ],
    ),
    "qrels-word-score": DataCase(
        _qrels("q1\td1\tabc\n"),
        lambda f: [f"{f / 'qrels' / 'test.tsv'}:2:", "relevance score is not an integer", "found 'abc'"],
    ),
    "qrels-unknown-query": DataCase(
        _qrels("q1\td1\t2\nq2\td2\t1\nq7\td3\t1\n"),
        lambda f: [f"{f / 'qrels' / 'test.tsv'}:4:", "'q7'", "not in queries.jsonl"],
    ),
    "qrels-unknown-document": DataCase(
        _qrels("q1\td1\t2\nq1\td99\t1\n"), lambda f: [f"{f / 'qrels' / 'test.tsv'}:3:", "'d99'", "not in the corpus"]
    ),
    "corpus-empty-file": DataCase(
        _write("corpus.jsonl", ""),
        lambda f: [str(f / "corpus.jsonl"), "empty corpus", "expected at least one document"],
    ),
    "corpus-blank-lines-only": DataCase(
        _write("corpus.jsonl", "\n  \n\n"), lambda f: [str(f / "corpus.jsonl"), "empty corpus"]
    ),
    "queries-empty-file": DataCase(
        _write("queries.jsonl", ""), lambda f: [str(f / "queries.jsonl"), "no queries", "expected at least one query"]
    ),
    "qrels-header-only": DataCase(
        _qrels(""), lambda f: [str(f / "qrels" / "test.tsv"), "no judgments", "expected at least one qrels row"]
    ),
    "corpus-not-utf8": DataCase(
        _write(
            "corpus.jsonl",
            jsonl(TINY_CORPUS[:3]).encode()
            + b'{"_id": "d4", "text": "caf\xe9 au lait"}\n'
            + jsonl(TINY_CORPUS[4:]).encode(),
        ),
        lambda f: [
            f"{f / 'corpus.jsonl'}:4:",
            "not valid UTF-8",
            "found byte 0xe9 at column 27",
            "expected UTF-8",
            "iconv",
        ],
    ),
    "queries-not-utf8": DataCase(
        _write("queries.jsonl", b'{"_id": "q1", "text": "\xff\xfe"}\n'),
        lambda f: [f"{f / 'queries.jsonl'}:1:", "not valid UTF-8", "found byte 0xff"],
    ),
    "qrels-not-utf8": DataCase(
        _write("qrels/test.tsv", b"query-id\tcorpus-id\tscore\nq\xe91\td1\t1\n"),
        lambda f: [f"{f / 'qrels' / 'test.tsv'}:2:", "not valid UTF-8", "found byte 0xe9 at column 2"],
    ),
    "corpus-gz-truncated": DataCase(
        _corpus_gz_truncated,
        lambda f: [f"{f / 'corpus.jsonl.gz'}:", "cannot read file", "end-of-stream", "expected a complete gzip file"],
    ),
    "corpus-gz-not-gzip": DataCase(
        _corpus_gz_not_gzip, lambda f: [f"{f / 'corpus.jsonl.gz'}:1:", "cannot read file", "gzip"]
    ),
}


@pytest.mark.parametrize("case", list(DATA_CASES.values()), ids=list(DATA_CASES))
def test_malformed_dataset_is_one_clear_line(case: DataCase, tmp_path: Path, capsys) -> None:
    folder = write_beir(tmp_path / "tiny")
    case.breaks(folder)
    code, stdout, stderr, out = run_eval_cli(folder, tmp_path, capsys)
    assert_clean_failure(code, stdout, stderr, out, *case.expect(folder))


def test_every_data_case_starts_from_a_valid_dataset(tmp_path: Path, capsys) -> None:
    """The fixture itself evaluates cleanly, so each failure above is caused by its one defect."""
    folder = write_beir(tmp_path / "tiny")
    code, _, stderr, out = run_eval_cli(folder, tmp_path, capsys, "--no-progress")
    assert code == 0, stderr
    assert (out / "summary.json").is_file()


# --------------------------------------------------------------------------- dataset location


def test_missing_dataset_folder(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDLAB_DATA", raising=False)
    missing = tmp_path / "no-such-dataset"
    code, stdout, stderr, out = run_eval_cli(missing, tmp_path, capsys)
    assert_clean_failure(code, stdout, stderr, out, str(missing), "not found", "not a folder", "EMBEDLAB_DATA")


def test_dataset_name_did_you_mean(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "datasets"
    write_beir(data / "scifact")
    write_beir(data / "nfcorpus")
    monkeypatch.setenv("EMBEDLAB_DATA", str(data))
    code, stdout, stderr, out = run_eval_cli("scifac", tmp_path, capsys)
    assert_clean_failure(
        code,
        stdout,
        stderr,
        out,
        "'scifac' not found",
        f"$EMBEDLAB_DATA={data}",
        "Did you mean 'scifact'?",
        "nfcorpus, scifact",
    )


def test_dataset_name_found_in_embedlab_data_still_validated(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset found by name reports the real file path of its defect."""
    data = tmp_path / "datasets"
    folder = write_beir(data / "scifact", qrels=[*TINY_QRELS, ("q3", "d404", 1)])
    monkeypatch.setenv("EMBEDLAB_DATA", str(data))
    code, stdout, stderr, out = run_eval_cli("scifact", tmp_path, capsys)
    assert_clean_failure(code, stdout, stderr, out, f"{folder / 'qrels' / 'test.tsv'}:7:", "'d404'")


def test_dataset_path_is_a_file(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBEDLAB_DATA", raising=False)
    folder = write_beir(tmp_path / "tiny")
    code, stdout, stderr, out = run_eval_cli(folder / "corpus.jsonl", tmp_path, capsys)
    assert_clean_failure(code, stdout, stderr, out, str(folder / "corpus.jsonl"), "not a folder")


def test_bad_second_dataset_stops_before_any_model_runs(tmp_path: Path, capsys) -> None:
    good = write_beir(tmp_path / "good")
    bad = write_beir(tmp_path / "bad", qrels=[("q1", "d1", 1), ("q1", "d1x", 1)])
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(good),
            "-d",
            str(bad),
            "-m",
            "hashing",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--latency-queries",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert_clean_failure(code, captured.out, captured.err, out, f"{bad / 'qrels' / 'test.tsv'}:3:", "'d1x'")


# --------------------------------------------------------------------------- models and metrics


@pytest.mark.parametrize(
    ("model", "needles"),
    [
        ("bm52", ["'bm52'", "Did you mean 'bm25'?", "local folder", "installed packages", "Hugging Face hub"]),
        ("all-MiniLM-L6-v3", ["'all-MiniLM-L6-v3'", "all-minilm-l6-v2", "offline (HF_HUB_OFFLINE is set)"]),
        ("hashing:poolng=cls", ["'poolng'", "'hashing:poolng=cls'", "allowed options:", "pooling", "batch_size"]),
        ("hashing:batch_size=-1", ["'batch_size'", "'hashing:batch_size=-1'", "greater than 0"]),
        ("hashing:pooling=median", ["'pooling'", "'mean'", "'cls'"]),
        ("hashing:normalize=maybe", ["'normalize'", "bool"]),
        ("hashing:dim=8,cls", ["cannot read model option 'cls'", "'hashing:dim=8,cls'", "expected key=value"]),
        ("hashing:dim", ["cannot load model 'hashing:dim'", "Did you mean 'hashing'?"]),
    ],
    ids=[
        "unknown-kind",
        "unknown-model-name",
        "unknown-option",
        "option-out-of-range",
        "option-not-allowed",
        "option-not-bool",
        "option-without-value",
        "option-without-equals",
    ],
)
def test_bad_model_is_one_clear_line(
    model: str, needles: list[str], tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stdout, stderr, out = run_eval_cli(tiny_dataset, tmp_path, capsys, model=model)
    assert_clean_failure(code, stdout, stderr, out, *needles)


def test_unknown_model_among_good_ones_stops_before_any_work(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "bm25",
            "-m",
            "hashhing",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--latency-queries",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert_clean_failure(code, captured.out, captured.err, out, "'hashhing'", "Did you mean 'hashing'?")


@pytest.mark.parametrize(
    ("metric", "needles"),
    [
        ("ndgc@10", ["Unknown metric 'ndgc'", "Did you mean 'ndcg'?", "Available:"]),
        ("ndcg", ["cannot read metric 'ndcg'", "expected NAME@K such as ndcg@10", "recall"]),
        ("ndcg@0", ["'ndcg@0'", "cutoff must be >= 1"]),
        ("ndcg@ten", ["cannot read metric 'ndcg@ten'", "expected NAME@K"]),
        ("@10", ["cannot read metric '@10'"]),
    ],
    ids=["unknown-metric", "metric-without-cutoff", "metric-cutoff-zero", "metric-cutoff-word", "metric-no-name"],
)
def test_bad_metric_is_one_clear_line(
    metric: str, needles: list[str], tiny_dataset: Path, tmp_path: Path, capsys
) -> None:
    code, stdout, stderr, out = run_eval_cli(tiny_dataset, tmp_path, capsys, "--metric", "ndcg@10", "--metric", metric)
    assert_clean_failure(code, stdout, stderr, out, *needles)

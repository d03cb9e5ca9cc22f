"""Fuzzing the file readers: generated malformed BEIR datasets, TREC files and training JSONL.

Seeded and bounded (a few hundred cases, seconds in total).  Each case starts from a valid
file and applies one to three random defects: truncation, byte flips, inserted bytes, a BOM,
an empty file, gzip (valid, truncated, flipped), CRLF, NUL bytes, and at the JSON level wrong
types, missing keys, null, huge and infinite numbers, NaN, deep nesting, lone surrogates.

Every reader must either read the file or raise ``EmbedlabError`` whose message is one line
naming the file.  A sample goes through the real CLI (``embedlab eval`` with the ``hashing``
encoder, ``embedlab finetune`` up to its data checks), which must exit 0 or 2 -- never 1 or 70
for input -- with, on 2, exactly one stderr line ``embedlab: error: ...`` and no traceback.
A case that runs longer than ``CASE_SECONDS`` fails as a hang.

There is no CLI command that scores a TREC run file (``embedlab eval`` scores models), so
TREC files go to :func:`read_trec_run` / :func:`read_trec_qrels` directly.  A failure prints
the case's name (reader, case number, defects); ``case_seed`` regenerates it exactly.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import random
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.data.beir import load_dataset
from embedlab.data.judgments import GRADE_LIMIT
from embedlab.data.trec import read_trec_qrels, read_trec_run
from embedlab.data.types import Qrels, Run
from embedlab.errors import EmbedlabError
from embedlab.train.data import TrainingSet, load_training_set
from tests.helpers import TINY_CORPUS, TINY_QRELS, TINY_QUERIES, write_beir

SEED = 9_2024
CASES = {"beir": 160, "trec-run": 60, "trec-qrels": 40, "train": 100}
CLI_EVERY = 5  # every 5th BEIR case also runs `embedlab eval`; every 10th training case `embedlab finetune`
CASE_SECONDS = 20

DEEP = 50_000
# raw JSON values a hostile or broken exporter can produce
RAW_VALUES = [
    '"plain text"',
    "null",
    "1.5",
    "[]",
    "{}",
    "true",
    "12",
    '""',
    '"   "',
    "9" * 5000,
    "-" + "9" * 4301,
    "1e400",
    "-1e400",
    "NaN",
    "Infinity",
    '"\\ud800"',
    '"a\\udc00b"',
    '"\\ud83d\\ude00 fine"',
    '"nul\\u0000byte"',
    "[" * DEEP + "]" * DEEP,
    '{"a":' * 2000 + "1" + "}" * 2000,
    '["x", "y"]',
    '"' + "word " * 3000 + '"',
]
RAW_SCORES = ["0.5", "1e400", "-1e400", "nan", "inf", "abc", "9" * 400, "", "1e-400", "0x10", "1_0", "-0"]
RAW_GRADES = ["1", "0", "-1", "2", "1.5", "x", "9" * 400, "", "+3", "1e3", "٣"]


def case_seed(kind: str, number: int) -> int:
    return SEED * 1_000 + sum(map(ord, kind)) * 100_000 + number


@contextlib.contextmanager
def time_limit(seconds: int, name: str) -> Iterator[None]:
    """Fail a case that hangs (SIGALRM: the tests run in the main thread)."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"{name}: still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- defects


def _json_line(rng: random.Random, fields: dict[str, str]) -> str:
    """One JSONL row from raw JSON snippets, with a key dropped, renamed or given a hostile value."""
    items = dict(fields)
    action = rng.choice(["value", "value", "drop", "rename", "extra"])
    key = rng.choice(list(items))
    if action == "value":
        items[key] = rng.choice(RAW_VALUES)
    elif action == "drop":
        del items[key]
    elif action == "rename":
        items[key + "_x"] = items.pop(key)
    else:
        items["extra"] = rng.choice(RAW_VALUES)
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in items.items()) + "}"


def _byte_defect(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    name = rng.choice(
        ["truncate", "flip", "insert", "bom", "empty", "crlf", "nul", "duplicate", "blank-lines", "latin1", "long-line"]
    )
    if name == "truncate":
        return name, data[: rng.randrange(0, max(1, len(data)))]
    if name == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if out:
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return name, bytes(out)
    if name == "insert":
        at = rng.randrange(len(data) + 1)
        return name, data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]
    if name == "bom":
        return name, b"\xef\xbb\xbf" + data
    if name == "empty":
        return name, b""
    if name == "crlf":
        return name, data.replace(b"\n", b"\r\n")
    if name == "nul":
        at = rng.randrange(len(data) + 1)
        return name, data[:at] + b"\x00" + data[at:]
    if name == "duplicate":
        lines = data.splitlines(keepends=True)
        return name, data + (rng.choice(lines) if lines else b"")
    if name == "blank-lines":
        return name, b"\n\n" + data.replace(b"\n", b"\n  \n")
    if name == "latin1":
        return name, data + "caf\xe9\n".encode("latin-1")
    return name, data + b"x" * 200_000 + b"\n"


def _mutate_lines(rng: random.Random, lines: list[str], make_row: Callable[[random.Random], str]) -> tuple[str, str]:
    """Replace, append or drop a row; returns (defect name, text)."""
    lines = list(lines)
    action = rng.choice(["replace", "append", "drop"])
    if action == "drop" and lines:
        del lines[rng.randrange(len(lines))]
    elif action == "replace" and lines:
        lines[rng.randrange(len(lines))] = make_row(rng)
    else:
        lines.append(make_row(rng))
    return f"row-{action}", "".join(line + "\n" for line in lines)


def _defects(rng: random.Random, text: str, make_row: Callable[[random.Random], str]) -> tuple[list[str], bytes]:
    names: list[str] = []
    lines = text.splitlines()
    if rng.random() < 0.7:
        name, text = _mutate_lines(rng, lines, make_row)
        names.append(name)
    data = text.encode("utf-8", "surrogatepass")
    for _ in range(rng.randint(0, 2)):
        name, data = _byte_defect(rng, data)
        names.append(name)
    return names, data


def _gzip_defect(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    packed = gzip.compress(data * rng.randint(1, 30))
    kind = rng.choice(["gz", "gz-truncated", "gz-flipped", "gz-garbage"])
    if kind == "gz-truncated":
        return kind, packed[: rng.randrange(len(packed))]
    if kind == "gz-flipped":
        out = bytearray(packed)
        out[rng.randrange(10, len(out))] ^= 1 << rng.randrange(8)
        return kind, bytes(out)
    if kind == "gz-garbage":
        return kind, b"\x1f\x8b" + bytes(rng.randrange(256) for _ in range(64))
    return kind, packed


# --------------------------------------------------------------------------- generated files


def _corpus_row(rng: random.Random) -> str:
    return _json_line(rng, {"_id": json.dumps(f"d{rng.randint(1, 9)}"), "title": '"t"', "text": '"some text"'})


def _query_row(rng: random.Random) -> str:
    return _json_line(rng, {"_id": json.dumps(f"q{rng.randint(1, 9)}"), "text": '"a query"'})


def _qrels_row(rng: random.Random) -> str:
    cells = [f"q{rng.randint(1, 3)}", f"d{rng.randint(1, 5)}", rng.choice(RAW_GRADES)]
    if rng.random() < 0.2:
        cells = cells[: rng.randint(0, 2)] + (["extra"] if rng.random() < 0.5 else [])
    return rng.choice(["\t", "\t", " "]).join(cells)


def make_beir(rng: random.Random, folder: Path) -> list[str]:
    """A tiny valid dataset with defects in one or more of its files; returns the defects."""
    write_beir(folder)
    files = {
        "corpus.jsonl": _corpus_row,
        "queries.jsonl": _query_row,
        "qrels/test.tsv": _qrels_row,
    }
    defects: list[str] = []
    for name in rng.sample(list(files), rng.randint(1, 2)):
        path = folder / name
        names, data = _defects(rng, path.read_text(encoding="utf-8"), files[name])
        path.write_bytes(data)
        defects += [f"{name}:{n}" for n in names]
    if rng.random() < 0.2:
        data = (folder / "corpus.jsonl").read_bytes()
        kind, packed = _gzip_defect(rng, data)
        (folder / "corpus.jsonl.gz").write_bytes(packed)
        if rng.random() < 0.8:
            (folder / "corpus.jsonl").unlink()
        defects.append(f"corpus.jsonl.gz:{kind}")
    return defects


def _run_row(rng: random.Random) -> str:
    cells = [
        f"q{rng.randint(1, 3)}",
        "Q0",
        f"d{rng.randint(1, 5)}",
        str(rng.randint(1, 9)),
        rng.choice(RAW_SCORES),
        "tag",
    ]
    if rng.random() < 0.2:
        del cells[rng.randrange(len(cells))]
    return rng.choice([" ", "\t"]).join(cells)


def _trec_qrels_row(rng: random.Random) -> str:
    cells = [f"q{rng.randint(1, 3)}", "0", f"d{rng.randint(1, 5)}", rng.choice(RAW_GRADES)]
    if rng.random() < 0.2:
        del cells[rng.randrange(len(cells))]
    return " ".join(cells)


VALID_RUN = "".join(f"q{q} Q0 d{d} {d} {1 / d:.4f} base\n" for q in (1, 2) for d in (1, 2, 3))
VALID_TREC_QRELS = "".join(f"{q} 0 {d} {g}\n" for q, d, g in TINY_QRELS)


def _train_row(kind: str) -> Callable[[random.Random], str]:
    def row(rng: random.Random) -> str:
        fields = {"query": '"how to reset"', "positive": '"use the link"'}
        if kind == "triplets":
            fields["negative"] = rng.choice(['"bread"', '["bread", "soup"]', "[]", "[null]"])
        if kind == "clicks":
            fields = {
                "query": '"reset"',
                "clicked": '"a"',
                "shown": rng.choice(['["a", "b"]', '["b"]', "[]", '"a"', "[1, 2]"]),
            }
        if rng.random() < 0.3:
            fields["query_id"] = rng.choice(['"q1"', "7", "null", "9" * 5000, "1e400"])
        return _json_line(rng, fields)

    return row


VALID_TRAIN = {
    "pairs": '{"query": "how to reset", "positive": "use the link"}\n{"query": "bread", "positive": "flour"}\n',
    "triplets": '{"query": "reset", "positive": "link", "negative": ["bread", "soup"]}\n',
    "clicks": '{"query": "reset", "clicked": "b", "shown": ["a", "b", "c"]}\n',
}


# --------------------------------------------------------------------------- checks


def check_reader(name: str, path: Path, call: Callable[[], object]) -> None:
    """Reads, or fails with a one-line EmbedlabError naming the file; anything else fails the case."""
    with time_limit(CASE_SECONDS, name):
        try:
            call()
        except EmbedlabError as err:
            line = err.one_line()
            assert "\n" not in line and "\r" not in line, f"{name}: multi-line error {line!r}"
            assert str(path) in line, f"{name}: the error does not name {path}: {line!r}"
        except Exception as err:
            pytest.fail(f"{name}: {type(err).__name__} escaped the reader: {str(err)[:200]}")


def check_grades(qrels: Qrels) -> None:
    for grades in qrels.judgments.values():
        assert all(abs(g) <= GRADE_LIMIT for g in grades.values()), grades


def check_scores(run: Run) -> None:
    for query_id in run.query_ids:
        assert all(math.isfinite(score) for _, score in run.ranking(query_id)), query_id


def check_texts(data: TrainingSet) -> None:
    for example in data.examples:
        for text in (example.query_id, *example.texts()):
            text.encode("utf-8")


def check_cli(name: str, argv: list[str], capsys: pytest.CaptureFixture[str], *, allowed: set[int]) -> int:
    with time_limit(CASE_SECONDS, name):
        code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, f"{name}: traceback\n{captured.err[-2000:]}"
    assert code in allowed, f"{name}: exit code {code}\n{captured.err[-2000:]}"
    if code == 2:
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("embedlab: error: "), f"{name}: stderr {captured.err!r}"
    return code


# --------------------------------------------------------------------------- the fuzz tests


def test_fuzz_beir_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codes: dict[int, int] = {}
    for number in range(CASES["beir"]):
        rng = random.Random(case_seed("beir", number))
        folder = tmp_path / f"beir-{number}"
        defects = make_beir(rng, folder)
        name = f"beir case {number} ({', '.join(defects)})"

        def read(folder: Path = folder) -> None:
            dataset = load_dataset(folder)  # what was read is usable: encodable text, grades that fit
            for doc in dataset.iter_documents():
                doc.content.encode("utf-8")
            for text in dataset.queries.values():
                text.encode("utf-8")
            check_grades(dataset.qrels)

        with time_limit(CASE_SECONDS, name):
            try:
                read()
            except EmbedlabError as err:
                line = err.one_line()
                assert "\n" not in line, f"{name}: {line!r}"
                assert str(folder) in line, f"{name}: the error names no file of the dataset: {line!r}"
            except Exception as err:
                pytest.fail(f"{name}: {type(err).__name__} escaped: {str(err)[:200]}")
        if number % CLI_EVERY == 0:
            out = tmp_path / f"out-{number}"
            code = check_cli(
                name,
                [
                    "eval",
                    "-d",
                    str(folder),
                    "-m",
                    "hashing",
                    "--out",
                    str(out),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                    "--latency-queries",
                    "2",
                    "--metric",
                    "ndcg@10",
                    "--no-progress",
                ],
                capsys,
                allowed={0, 2},
            )
            codes[code] = codes.get(code, 0) + 1
        shutil.rmtree(folder)
    # the generator is worth something only if it produces both outcomes through the CLI
    assert codes.get(2, 0) >= 5 and codes.get(0, 0) >= 1, codes


@pytest.mark.parametrize("kind", ["trec-run", "trec-qrels"])
def test_fuzz_trec_files(kind: str, tmp_path: Path) -> None:
    reader, valid, row, usable = (
        (read_trec_run, VALID_RUN, _run_row, check_scores)
        if kind == "trec-run"
        else (read_trec_qrels, VALID_TREC_QRELS, _trec_qrels_row, check_grades)
    )
    errors = 0
    for number in range(CASES[kind]):
        rng = random.Random(case_seed(kind, number))
        defects, data = _defects(rng, valid, row)
        suffix = ".txt"
        if rng.random() < 0.15:
            kind_gz, data = _gzip_defect(rng, data)
            defects.append(kind_gz)
            suffix = ".txt.gz"
        path = tmp_path / f"{kind}-{number}{suffix}"
        path.write_bytes(data)
        name = f"{kind} case {number} ({', '.join(defects)})"
        try:
            reader(path)
        except EmbedlabError:
            errors += 1
        except Exception:
            pass
        check_reader(name, path, lambda path=path: usable(reader(path)))  # a file that reads has usable values
    assert errors >= CASES[kind] // 4, f"only {errors} of {CASES[kind]} cases were defective"


def test_fuzz_training_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test_set = write_beir(tmp_path / "held-out", corpus=TINY_CORPUS, queries=TINY_QUERIES)
    for number in range(CASES["train"]):
        rng = random.Random(case_seed("train", number))
        kind = rng.choice(list(VALID_TRAIN))
        defects, data = _defects(rng, VALID_TRAIN[kind], _train_row(kind))
        path = tmp_path / f"train-{number}.jsonl"
        path.write_bytes(data)
        fmt = rng.choice(["auto", "auto", kind, "pairs", "clicks"])
        name = f"train case {number} ({kind}, --train-format {fmt}: {', '.join(defects)})"
        check_reader(name, path, lambda path=path, fmt=fmt: check_texts(load_training_set(path, format=fmt)))
        if number % (2 * CLI_EVERY) == 0:
            # the held-out set is missing, so a valid training file also stops (exit 2) before any training
            check_cli(
                name,
                [
                    "finetune",
                    "--base",
                    "hashing",
                    "--train",
                    str(path),
                    "--train-format",
                    fmt,
                    "--test",
                    str(test_set / "missing"),
                    "--out",
                    str(tmp_path / f"ft-{number}"),
                    "--no-progress",
                ],
                capsys,
                allowed={2},
            )

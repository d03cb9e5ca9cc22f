"""The CLI boundary (``embedlab.cli.main``): input and environment faults are one line and exit 2;
bugs keep their traceback, ask to be reported and exit 70.  See main.py's docstring for the rule.

A command handler is replaced by one that raises the exception under test, so each class of
failure is checked at the boundary itself, independent of where it could arise today.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from embedlab.cli import eval_cmd
from embedlab.cli.main import EXIT_BUG, main
from embedlab.errors import EmbedlabError


def run_raising(
    make_error: Callable[[], BaseException],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *flags: str,
) -> tuple[int, str]:
    def handler(args: object) -> int:
        raise make_error()

    monkeypatch.setattr(eval_cmd, "run", handler)
    code = main([*flags, "eval", "-d", "anything", "-m", "hashing"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def assert_one_line(code: int, output: str, *needles: str) -> str:
    assert code == 2, output
    lines = output.splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("embedlab: error: "), output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_bug(code: int, output: str, name: str) -> None:
    assert code == EXIT_BUG == 70, output
    assert "Traceback (most recent call last)" in output
    assert f"{name}" in output
    last = output.splitlines()[-1]
    assert "bug in embedlab" in last and "please report it" in last, last


# --------------------------------------------------------------------------- bugs stay visible


def _type_error() -> BaseException:
    return TypeError("unsupported operand type(s) for +: 'int' and 'str'")


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (_type_error, "TypeError"),
        (lambda: AttributeError("'NoneType' object has no attribute 'id'"), "AttributeError"),
        (lambda: KeyError("doc-7"), "KeyError"),
        (lambda: IndexError("list index out of range"), "IndexError"),
        (lambda: ZeroDivisionError("division by zero"), "ZeroDivisionError"),
        # no file name attached: a reader that failed to check its input, i.e. a bug to fix there
        (lambda: ValueError("invalid literal for int() with base 10: 'x'"), "ValueError"),
        (lambda: json.JSONDecodeError("Expecting value", "{", 1), "JSONDecodeError"),
        (lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), "UnicodeDecodeError"),
        (lambda: RecursionError("maximum recursion depth exceeded"), "RecursionError"),
        (lambda: EOFError("Compressed file ended before the end-of-stream marker was reached"), "EOFError"),
        (lambda: OSError(errno.EBADF, "Bad file descriptor"), "OSError"),  # a closed handle: our bug
        (lambda: OSError("Not a gzipped file"), "OSError"),  # no errno: nothing proves the environment
        (lambda: sqlite3.ProgrammingError("Cannot operate on a closed database."), "ProgrammingError"),
        (lambda: RuntimeError("unreachable"), "RuntimeError"),
    ],
)
def test_a_bug_keeps_its_traceback_and_asks_to_be_reported(
    make: Callable[[], BaseException], name: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    code, output = run_raising(make, monkeypatch, capsys)
    assert_bug(code, output, name)


def test_a_bug_inside_a_real_command_path(
    monkeypatch: pytest.MonkeyPatch, capsys, tiny_dataset: Path, tmp_path: Path
) -> None:
    """Not only the handler itself: a TypeError deep inside the library reaches the user as a bug."""
    from embedlab.eval import runner

    def broken(*args: object, **kwargs: object) -> None:
        return None + 1  # type: ignore[operator]

    monkeypatch.setattr(runner, "_throughput", broken)
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "hashing",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--latency-queries",
            "2",
            "--no-progress",
        ]
    )
    output = capsys.readouterr().err
    assert_bug(code, output, "TypeError")
    assert "_throughput" not in output.splitlines()[-1]
    assert "in broken" in output  # the traceback points at the faulty code


# --------------------------------------------------------------------------- environment: one line


def test_full_disk_names_the_file_and_the_free_space(monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path) -> None:
    target = tmp_path / "results" / "summary.json"  # not created yet: free space of the nearest folder
    code, output = run_raising(
        lambda: OSError(errno.ENOSPC, "No space left on device", str(target)), monkeypatch, capsys
    )
    line = assert_one_line(
        code,
        output,
        str(target),
        "No space left on device",
        "[ENOSPC]",
        " free of ",
        f"on the file system of {tmp_path}",
    )
    free = shutil.disk_usage(tmp_path).free
    assert any(unit in line for unit in ("B free", "KiB free", "MiB free", "GiB free", "TiB free")), (line, free)


def test_full_disk_without_a_file_name_is_still_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, output = run_raising(lambda: OSError(errno.ENOSPC, "No space left on device"), monkeypatch, capsys)
    assert_one_line(code, output, "No space left on device", "free some disk space")


@pytest.mark.parametrize(
    ("make", "needles"),
    [
        (
            lambda: PermissionError(errno.EACCES, "Permission denied", "/data/out/report.md"),
            ["/data/out/report.md", "Permission denied [EACCES]"],
        ),
        (
            lambda: OSError(errno.EROFS, "Read-only file system", "/mnt/ro/cache/embeddings.sqlite"),
            ["/mnt/ro/cache/embeddings.sqlite", "[EROFS]"],
        ),
        (
            lambda: IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp/x/summary.json"),
            ["/tmp/x/summary.json", "[EISDIR]"],
        ),
        (
            lambda: FileNotFoundError(errno.ENOENT, "No such file or directory", "/gone/corpus.jsonl"),
            ["/gone/corpus.jsonl", "[ENOENT]"],
        ),
        (
            lambda: OSError(errno.EXDEV, "Invalid cross-device link", "/a/tmp", None, "/b/final"),
            ["/a/tmp -> /b/final", "[EXDEV]"],
        ),
        (lambda: OSError(errno.EIO, "Input/output error", "/disk/corpus.jsonl"), ["/disk/corpus.jsonl", "[EIO]"]),
        (lambda: OSError(errno.EMFILE, "Too many open files"), ["Too many open files", "[EMFILE]", "-vv"]),
    ],
    ids=["eacces", "erofs", "eisdir", "enoent", "exdev-two-paths", "eio", "emfile-no-path"],
)
def test_environment_oserror_is_one_line(
    make: Callable[[], BaseException], needles: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    code, output = run_raising(make, monkeypatch, capsys)
    assert_one_line(code, output, *needles)


def test_out_of_memory_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, output = run_raising(MemoryError, monkeypatch, capsys)
    assert_one_line(code, output, "out of memory while running `embedlab eval`", "peak memory")


def test_a_damaged_sqlite_file_that_escaped_its_reader_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    """A real SQLite error (not a constructed one), so its result code is what SQLite sets."""
    garbage = tmp_path / "x.sqlite"
    garbage.write_bytes(b"definitely not a database" * 200)

    def open_garbage() -> BaseException:
        try:
            sqlite3.connect(garbage).execute("SELECT 1 FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError as err:
            return err
        raise AssertionError("sqlite opened garbage")

    code, output = run_raising(open_garbage, monkeypatch, capsys)
    assert_one_line(code, output, "file is not a database", "[SQLITE_NOTADB]")


def test_embedlab_error_is_printed_on_one_line_even_with_newlines(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, output = run_raising(
        lambda: EmbedlabError("two\nlines", path="f.txt", line=3, found="a\r\nb"), monkeypatch, capsys
    )
    assert_one_line(code, output, "f.txt:3: two lines; found a b")


def test_very_verbose_shows_the_traceback_of_an_environment_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, output = run_raising(
        lambda: PermissionError(errno.EACCES, "Permission denied", "/x"), monkeypatch, capsys, "-vv"
    )
    assert code == 2
    assert "Traceback" in output
    assert output.splitlines()[-1].startswith("embedlab: error: /x: Permission denied")


def test_interrupt_is_130(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    code, output = run_raising(KeyboardInterrupt, monkeypatch, capsys)
    assert code == 130
    assert "Traceback" not in output


def test_a_real_environment_fault_end_to_end(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    """No monkeypatching: --cache-dir under a regular file (ENOTDIR) is one line naming it."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "hashing",
            "--out",
            str(tmp_path / "out"),
            "--cache-dir",
            str(blocker / "cache"),
            "--latency-queries",
            "2",
            "--no-progress",
        ]
    )
    output = capsys.readouterr().err
    assert_one_line(code, output, str(blocker))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_unreadable_dataset_file_is_one_line(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    queries = tiny_dataset / "queries.jsonl"
    queries.chmod(0)
    try:
        code = main(
            [
                "eval",
                "-d",
                str(tiny_dataset),
                "-m",
                "hashing",
                "--out",
                str(tmp_path / "out"),
                "--no-cache",
                "--latency-queries",
                "2",
                "--no-progress",
            ]
        )
    finally:
        queries.chmod(0o644)
    assert_one_line(code, capsys.readouterr().err, str(queries))

"""An unwritable ``--out`` is found before the work starts (one line, exit 2); a write that fails at
the end leaves none of the run's files; a full disk under the cache or a result file is one line
naming the path and the free space.

The tests run as root, where ``chmod 0555`` denies nothing, so unwritable places are made with a
regular file where a folder should be and with ``/dev/full`` (a device, not a folder).  A full
disk cannot be created here without mounting a file system (root mount tricks are not available
in CI), so: SQLite's own "database or disk is full" is reached for real with ``max_page_count``;
a process file-size limit (RLIMIT_FSIZE, a real refusal by the kernel) makes the final writes of
``embedlab eval`` fail; and exactly one test replaces ``os.fsync`` to raise ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedlab import atomic
from embedlab.atomic import WriteError, atomic_write_text
from embedlab.cache.store import EmbeddingCache
from embedlab.cli.main import main
from embedlab.output import check_output_file, check_output_folder

DEVICE_FOLDER = Path("/dev/full/results")  # /dev/full is a device: nothing can be created below it


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("embedlab: error: "), err
    return err


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text("not a folder\n")
    return path


def _eval_args(dataset: Path, out: Path, cache: Path) -> list[str]:
    return [
        "eval",
        "-d",
        str(dataset),
        "-m",
        "hashing",
        "-m",
        "bm25",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
        "--latency-queries",
        "0",
        "--no-progress",
    ]


@pytest.mark.parametrize("where", ["file", "device", "below-file"])
def test_eval_refuses_an_unwritable_out_before_any_work(
    where: str, tiny_dataset: Path, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = {"file": a_file, "device": DEVICE_FOLDER, "below-file": a_file / "results"}[where]
    cache = tmp_path / "cache"
    assert main(_eval_args(tiny_dataset, out, cache)) == 2
    line = _one_error_line(capsys)
    assert f"--out {out}: cannot write results there: " in line, line
    assert not cache.exists()  # nothing was encoded: the check came first
    assert a_file.read_text() == "not a folder\n"


def test_other_commands_check_their_output_first(
    tiny_dataset: Path, a_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "select",
                "-d",
                str(tiny_dataset),
                "-m",
                "hashing",
                "--out",
                str(a_file),
                "--cache-dir",
                str(tmp_path / "c1"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert f"--out {a_file}: cannot write results there: it exists and is not a folder" in _one_error_line(capsys)
    assert not (tmp_path / "c1").exists()

    assert (
        main(
            [
                "finetune",
                "--base",
                "all-MiniLM-L6-v2",
                "--train",
                str(tiny_dataset),
                "--test",
                str(tiny_dataset),
                "--out",
                str(DEVICE_FOLDER),
            ]
        )
        == 2
    )
    assert f"--out {DEVICE_FOLDER}: cannot write results there: " in _one_error_line(capsys)

    library = tmp_path / "library"
    library.mkdir()
    (library / "a.txt").write_text("some text to index\n")
    assert (
        main(
            [
                "index",
                "build",
                str(library),
                "--collection",
                "lib",
                "--model",
                "hashing",
                "--root",
                str(a_file / "collections"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert f"--root {a_file / 'collections'}: cannot write results there: " in _one_error_line(capsys)

    for out, reason in (
        (Path("/dev/full"), "it is not a regular file"),
        (tmp_path, "it is a folder"),
        (a_file / "clicks.jsonl", f"{a_file} exists and is not a folder"),
    ):
        assert main(["feedback", "export", "lib", "--root", str(tmp_path / "none"), "--out", str(out)]) == 2
        line = _one_error_line(capsys)
        assert f"--out {out}: cannot write results there: " in line and reason in line, line


def test_the_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    check_output_folder(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []  # the folders it made are gone again, and the probe file
    (tmp_path / "kept").mkdir()
    check_output_folder(tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []
    check_output_file(tmp_path / "kept" / "clicks.jsonl")
    with pytest.raises(Exception, match="cannot write results there"):
        check_output_file(Path("/dev/full"))


_FILE_SIZE_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing us
from embedlab.cli.main import main
args = sys.argv[1:]
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # after the imports (they may write caches)
sys.exit(main(args))
"""


def test_a_failed_final_write_leaves_no_result_of_this_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """The kernel refuses files over 4 KB (RLIMIT_FSIZE): the small per-model files of the set are
    written, report.html is not; none may appear next to the earlier run's file, which stays."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"earlier": "run"}')
    args = _eval_args(tiny_dataset, out, tmp_path / "cache")
    args[args.index("--cache-dir") : args.index("--cache-dir") + 2] = ["--no-cache"]
    done = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stderr.count("embedlab: error:") == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the progress log lines
    assert line.startswith(f"embedlab: error: --out {out}: cannot write results there: File too large"), line
    assert "none of this run's results were written" in line
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]  # no staging folder, no partial set
    assert json.loads((out / "summary.json").read_text()) == {"earlier": "run"}


def test_a_full_disk_during_an_atomic_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The only simulated failure in this file (a full disk cannot be made here without mounting):
    fsync, where a delayed-allocation file system reports ENOSPC, raises it."""
    target = tmp_path / "result.json"
    target.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(WriteError) as caught:
        atomic_write_text(target, "new" * 1000)
    line = caught.value.one_line()
    assert line.startswith(f"{target}: cannot write there: No space left on device (") and " free there)" in line
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_a_full_embedding_cache_is_one_line_and_keeps_its_batches(tmp_path: Path) -> None:
    """SQLite's real "database or disk is full", reached by capping the file's pages."""
    cache = EmbeddingCache(tmp_path)
    space = cache.space({"model": "x"}, 8)
    cache.put(space, [b"a" * 32], np.ones((1, 8), dtype=np.float32))
    pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count = {pages}")
    rng = np.random.default_rng(0)
    with pytest.raises(WriteError) as caught:
        cache.put(
            space,
            [bytes([i % 256, i // 256]) * 16 for i in range(5000)],
            rng.standard_normal((5000, 8)).astype(np.float32),
        )
    line = caught.value.one_line()
    assert line.startswith(f"{cache.path}: cannot write there: database or disk is full (") and "free there" in line
    assert cache.count(space) == 1  # the failed batch rolled back, the earlier one stays
    cache.close()

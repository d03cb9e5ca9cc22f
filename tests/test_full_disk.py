"""A real full disk (a small tmpfs mounted for the test) under a collection or the embedding cache:
one line naming the path and the free space, exit 2, and nothing lost (the previous generation
still opens and searches).  Mounting needs root (CI and the developers' machines run as root);
elsewhere these tests are skipped, and tests/test_output_location.py covers the conversions."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.collection import open_collection
from tests.library_fixtures import write_library


@contextlib.contextmanager
def small_disk(where: Path, *, size_kb: int) -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'not root'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, *, leave_bytes: int) -> None:
    """Take all free space but ``leave_bytes`` with one file."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with (disk / "filler").open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("embedlab: error: "), err
    return err


def test_a_full_disk_under_a_collection_keeps_the_live_generation(tmp_path: Path, capsys) -> None:
    library = write_library(tmp_path / "library")
    with small_disk(tmp_path / "disk", size_kb=2048) as disk:
        root = disk / "collections"
        args = [
            "index",
            "build",
            str(library),
            "--collection",
            "lib",
            "--model",
            "hashing",
            "--root",
            str(root),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--chunk-tokens",
            "40",
            "--overlap",
            "8",
            "--no-progress",
        ]
        assert main(args) == 0, capsys.readouterr().err
        capsys.readouterr()
        (library / "more.txt").write_text("A new file about sourdough starters and flour. " * 200)
        fill(disk, leave_bytes=4096)
        code = main(
            ["index", "update", "lib", "--root", str(root), "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
        )
        line = _one_line(capsys)
        assert code == 2
        assert str(disk) in line and "free" in line, line
        with open_collection("lib", root=root) as collection:  # the previous generation is intact
            assert collection.generation == 1
            assert collection.search("sourdough flour", k=3, mode="bm25").hits


def test_a_full_disk_under_the_cache_is_one_line(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    with small_disk(tmp_path / "disk", size_kb=512) as disk:
        fill(disk, leave_bytes=2048)
        code = main(
            [
                "eval",
                "-d",
                str(tiny_dataset),
                "-m",
                "hashing:dim=4096",
                "--out",
                str(tmp_path / "out"),
                "--cache-dir",
                str(disk / "cache"),
                "--latency-queries",
                "2",
            ]
        )
        line = _one_line(capsys)
        assert code == 2 and str(disk) in line and "free" in line, line

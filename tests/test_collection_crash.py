"""SIGKILL during ``embedlab index build/update``: the live generation stays loadable, a re-run finishes
with no lost and no duplicated chunks.

Two kinds of kill: at named points of the write (``$EMBEDLAB_CRASH_AT``: after the first encoded
group, after all encoding, with the new generation complete, after its rename, after the pointer
switch), and from outside at an arbitrary moment while a slow encoder is working.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedlab.collection import build, open_collection, update
from embedlab.errors import EmbedlabError
from tests.library_fixtures import CHUNK, HASHING, LIBRARY, chunk_rows, live_generation, places, write_library

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")

EXTRA = {
    f"notes/note{i}.md": f"Note {i}. " + " ".join(f"word{i}x{j} appears in sentence {j}." for j in range(24))
    for i in range(5)
}


def _cli(args: list[str], root: Path, cache: Path, crash_at: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "EMBEDLAB_COLLECTIONS": str(root), "EMBEDLAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("EMBEDLAB_CRASH_AT", None)
    if crash_at is not None:
        env["EMBEDLAB_CRASH_AT"] = crash_at
    return subprocess.Popen(
        [sys.executable, "-m", "embedlab.cli.main", "-q", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _change(library: Path) -> None:
    (library / "guide" / "passwords.md").write_text(LIBRARY["guide/passwords.md"].replace("twelve", "sixteen"))
    (library / "recipes" / "soup.txt").unlink()
    write_library(library, EXTRA)


def _expected(library: Path, root: Path) -> list[tuple]:
    build(library, "expected", model_spec=HASHING, root=root, use_cache=False, **CHUNK)
    return places(chunk_rows(live_generation(root, "expected")))


def _assert_complete(root: Path, name: str, expected: list[tuple]) -> None:
    rows = chunk_rows(live_generation(root, name))
    keys = [(r[1], r[2], r[3]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicated chunks"
    assert places(rows) == expected, "lost or stale chunks"
    leftovers = sorted(p.name for p in (root / name).iterdir() if p.name not in {".lock", "CURRENT"})
    assert leftovers == [live_generation(root, name).name]
    with open_collection(name, root=root) as collection:
        assert len(collection) == len(expected)
        assert collection.search("word1x3 sentence", k=1, mode="hybrid").hits[0].path == "notes/note1.md"


@pytest.mark.parametrize("stage", ["group", "encoded", "written", "renamed", "switched"])
def test_update_killed_at_each_stage(tmp_path: Path, stage: str) -> None:
    root, cache = tmp_path / "collections", tmp_path / "cache"
    library = write_library(tmp_path / "library")
    first = build(library, "lib", model_spec=HASHING, root=root, cache_dir=cache, **CHUNK)
    _change(library)
    expected = _expected(library, root)

    proc = _cli(["index", "update", "lib"], root, cache, crash_at=stage)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err

    with open_collection("lib", root=root) as collection:  # still loadable, and consistent
        if stage == "switched":
            assert collection.generation == 2 and len(collection) == len(expected)
        else:
            assert collection.generation == 1 and len(collection) == first.chunks
            assert collection.search("twelve characters", k=1, mode="bm25").hits[0].path == "guide/passwords.md"
        assert collection.search("reset password", k=3).hits

    report = update("lib", root=root, cache_dir=cache)
    assert report.up_to_date == (stage == "switched")
    if stage in ("group", "encoded", "written", "renamed"):
        assert report.encoded == 0 and report.cache_hits > 0  # the killed run's encoding was kept
    _assert_complete(root, "lib", expected)


def test_first_build_killed_then_rerun(tmp_path: Path) -> None:
    root, cache = tmp_path / "collections", tmp_path / "cache"
    library = write_library(tmp_path / "library", {**LIBRARY, **EXTRA})
    proc = _cli(
        [
            "index",
            "build",
            str(library),
            "--collection",
            "lib",
            "--model",
            "hashing:dim=64",
            "--chunk-tokens",
            "40",
            "--overlap",
            "8",
        ],
        root,
        cache,
        crash_at="encoded",
    )
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(EmbedlabError, match="has no finished build yet"):
        open_collection("lib", root=root)
    assert any(p.name.startswith(".gen-000001.tmp-") for p in (root / "lib").iterdir())
    report = build(library, "lib", model_spec=HASHING, root=root, cache_dir=cache, **CHUNK)
    assert report.generation == 1 and report.encoded == 0 and report.cache_hits == report.chunks
    _assert_complete(root, "lib", _expected(library, root))


def _cache_rows(cache: Path) -> int:
    path = cache / "embeddings.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("batches_done", [1, 4])
def test_update_killed_from_outside_while_encoding(tmp_path: Path, batches_done: int) -> None:
    root, cache = tmp_path / "collections", tmp_path / "cache"
    library = write_library(tmp_path / "library")
    slow = "hashing:dim=64,delay_ms=100,batch_size=2"  # the update uses the collection's (slow) model too
    first = build(library, "lib", model_spec=slow, root=root, cache_dir=cache, **CHUNK)
    _change(library)
    expected = _expected(library, root)
    baseline = _cache_rows(cache)

    proc = _cli(["index", "update", "lib"], root, cache)
    deadline = time.monotonic() + 60
    while _cache_rows(cache) < baseline + 2 * batches_done:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the update never started encoding"
        time.sleep(0.02)
    assert any(p.name.startswith(".gen-000002.tmp-") for p in (root / "lib").iterdir())
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with open_collection("lib", root=root) as collection:
        assert collection.generation == 1 and len(collection) == first.chunks
        assert collection.search("sourdough starter", k=1).hits[0].path == "recipes/bread.html"

    report = update("lib", root=root, cache_dir=cache)
    assert report.generation == 2 and report.cache_hits >= 2 * batches_done
    _assert_complete(root, "lib", expected)

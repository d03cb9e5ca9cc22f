"""``embedlab index build|update|info`` and ``embedlab search``: output, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from embedlab.cli.main import main
from tests.library_fixtures import write_library


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    return tmp_path / "collections"


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("embedlab: error: ")
    return err


def test_build_info_search_update(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    library = write_library(tmp_path / "library")
    (library / "broken.pdf").write_bytes(random.Random(3).randbytes(300))
    assert (
        main(
            [
                "-q",
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
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "lib: generation 1: 4 files" in out and "skipped 1 file:" in out and "broken.pdf: broken PDF" in out

    assert main(["index", "info", "lib"]) == 0
    out = capsys.readouterr().out
    assert "model:    hashing:dim=64" in out and "chunking: 40 tokens, overlap 8 (words)" in out
    assert "skipped:  broken.pdf: broken PDF" in out

    assert main(["search", "lib", "reset password", "--k", "2", "--mode", "bm25"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(" 1. guide/passwords.md  p. 1  score")
    assert "password" in out and "**" not in out and "bm25, " in out and "total" in out  # piped: plain text

    assert main(["search", "lib", "bread", "--json", "--filter", "path=recipes/*", "--rerank", "word-overlap"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "hybrid" and data["reranker"] == "word-overlap"
    assert data["hits"] and all(h["path"].startswith("recipes/") for h in data["hits"])
    assert {"chunk_id", "page", "char_start", "char_end", "snippet", "highlights"} <= set(data["hits"][0])

    (library / "recipes" / "soup.txt").unlink()
    assert main(["-q", "index", "update", "lib", "--no-progress"]) == 0
    assert "0 new, 0 changed, 3 unchanged, 1 removed files" in capsys.readouterr().out
    assert main(["-q", "index", "update", "lib"]) == 0
    assert "lib: up to date (generation 2" in capsys.readouterr().out


def test_one_line_errors(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    library = write_library(tmp_path / "library")
    assert main(["-q", "index", "build", str(library), "-c", "papers", "-m", "hashing:dim=64"]) == 0
    capsys.readouterr()

    err = _one_line_error(capsys, ["search", "paper", "query"])
    assert "Unknown collection 'paper'" in err and "Did you mean 'papers'?" in err
    err = _one_line_error(capsys, ["search", "papers", "query", "--mode", "sparse"])
    assert "Unknown search mode 'sparse'" in err and "Available: bm25, dense, hybrid" in err
    err = _one_line_error(capsys, ["search", "papers", "query", "--weights", "1"])
    assert "invalid --weights '1'" in err
    err = _one_line_error(capsys, ["search", "papers", "query", "--rerank", "cross-encoder/nowhere"])
    assert "unknown re-ranker" in err
    err = _one_line_error(capsys, ["search", "papers", "query", "--model", "hashing:dim=32"])
    assert "different encoder" in err
    err = _one_line_error(capsys, ["index", "info", "papr"])
    assert "Did you mean 'papers'?" in err
    err = _one_line_error(capsys, ["index", "update", "nothing-here"])
    assert "Unknown collection 'nothing-here'" in err

    empty = tmp_path / "empty"
    empty.mkdir()
    err = _one_line_error(capsys, ["index", "build", str(empty), "-c", "e", "-m", "hashing"])
    assert "nothing to index" in err
    err = _one_line_error(capsys, ["index", "build", str(tmp_path / "missing"), "-c", "e", "-m", "hashing"])
    assert "library folder not found" in err
    err = _one_line_error(capsys, ["index", "build", str(library), "-c", "papers", "-m", "hashing:dim=64"])
    assert "already exists" in err
    err = _one_line_error(capsys, ["index", "build", str(library), "-c", "x", "-m", "bm25"])
    assert "not an embedding model" in err
    err = _one_line_error(capsys, ["index", "build", str(library), "-c", "x", "-m", "hashing", "--overlap", "300"])
    assert "invalid chunk overlap" in err
    err = _one_line_error(capsys, ["index", "build", str(library), "-c", "x", "-m", "hashing:index=faiss-hnsw"])
    assert "does not apply to collections" in err
    err = _one_line_error(capsys, ["index", "build", str(library), "-c", "../x", "-m", "hashing"])
    assert "invalid collection name" in err

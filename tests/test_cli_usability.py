"""Everyday CLI use (issue 12, "The command line"): where collections live, `index list`, the
positional collection name, `models`, help text, shell completion, tables that fit the terminal,
and a BM25 search that loads no model."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embedlab.cli.help import walk
from embedlab.cli.main import _parser, main
from embedlab.collection.layout import ENV_ROOT, collections_root, default_root
from tests.library_fixtures import write_library

BUILD = ["--model", "hashing:dim=64", "--chunk-tokens", "40", "--overlap", "8", "--no-progress"]
MY_COMMANDS = {("index",), ("index", "build"), ("index", "update"), ("index", "info"), ("index", "list"),
               ("search",), ("models",), ("completion",), ("pooling",), ("select",), ("eval",)}  # fmt: skip


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "collections"))
    return tmp_path / "collections"


def test_default_root_is_per_user_not_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_ROOT, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert collections_root() == default_root() == tmp_path / "data" / "embedlab" / "collections"
    assert collections_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "env"))
    assert collections_root() == tmp_path / "env"


def test_positional_build_list_and_deprecated_alias(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = write_library(tmp_path / "library")
    assert main(["-q", "index", "build", "lib", str(library), *BUILD]) == 0
    out = capsys.readouterr()
    assert f"collection folder: {(root / 'lib').absolute()}" in out.out and "deprecated" not in out.err
    # the old spelling still works, and says so once, after the work
    assert main(["-q", "index", "build", str(library), "--collection", "old", *BUILD]) == 0
    out = capsys.readouterr()
    assert "old: generation 1: 4 files" in out.out and "--collection is deprecated" in out.err
    assert main(["index", "build", "a", str(library), "--collection", "b", *BUILD]) == 2
    assert "the collection is named twice" in capsys.readouterr().err

    assert main(["index", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["root"] == str(root.absolute())
    rows = {r["name"]: r for r in data["collections"]}
    assert set(rows) == {"lib", "old"}
    assert rows["lib"]["generation"] == 1 and rows["lib"]["chunks"] > 0 and rows["lib"]["model"] == "hashing:dim=64"
    assert rows["lib"]["path"] == str((root / "lib").absolute()) and rows["lib"]["size_bytes"] > 0
    assert main(["index", "list"]) == 0
    assert "lib" in capsys.readouterr().out


def test_unknown_collection_points_at_the_old_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    library = write_library(tmp_path / "library")
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "index", "build", "lib", str(library), "--root", "collections", *BUILD]) == 0
    capsys.readouterr()
    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "elsewhere"))
    assert main(["search", "lib", "password", "--mode", "bm25"]) == 2
    err = capsys.readouterr().err
    assert "Unknown collection 'lib'" in err and "old default folder ./collections" in err
    assert f"--root {tmp_path / 'collections'}" in err


def test_bm25_search_loads_no_model(tmp_path: Path, root: Path) -> None:
    from embedlab.api.collections import build_collection, open_collection

    build_collection(write_library(tmp_path / "library"), "lib", model="hashing:dim=64", chunk_tokens=40, overlap=8)
    with open_collection("lib", load_model=False) as lib:
        assert lib.search("reset password", k=2, mode="bm25").hits
        assert lib._encoder is None  # BM25 alone never touched the encoder
        assert lib.search("reset password", k=2, mode="dense").hits
        assert lib._encoder is not None


def test_every_option_has_help_and_every_command_an_example() -> None:
    leaves = 0
    for path, parser in walk(_parser()):
        if not path or any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
            continue  # groups (`index`, `monitor`, ...) only list their verbs
        leaves += 1
        assert parser.epilog and "Examples:" in parser.epilog, path
        assert parser.description, path
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert action.help, (path, action.option_strings)
    assert leaves >= len(MY_COMMANDS)  # the walk reached every sub-command


def test_help_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "number of results (default: 10)" in text and "RRF constant (default: 60.0)" in text
    assert "Examples:" in text and "embedlab search lib" in text


def test_models_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from embedlab.encoders.registry import MODELS
    from embedlab.encoders.resolve import CARRIERS

    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    listed = {r["name"] for r in rows} | {a for r in rows for a in r["aliases"]}
    assert set(MODELS.names()) <= listed  # generated from the registry: nothing registered is missing
    assert {key.split("/")[-1] for key in CARRIERS} <= listed
    bm25 = next(r for r in rows if r["name"] == "bm25")
    assert bm25["installed"] and bm25["dim"] is None and bm25["kind"].startswith("lexical")
    for row in rows:
        assert row["kind"] and row["source"]


def test_models_licences_cover_every_carrier() -> None:
    from embedlab.encoders.catalog import TRANSFORMER_LICENCES
    from embedlab.encoders.resolve import CARRIERS

    assert set(TRANSFORMER_LICENCES) == set(CARRIERS)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("words", "expected", "absent"),
    [
        (["embedlab", "ind"], {"index"}, set()),
        (["embedlab", "index", ""], {"build", "update", "info", "list"}, {"index"}),
        (["embedlab", "index", "build", "--ch"], {"--chunk-tokens"}, set()),
        (["embedlab", "finetune", "--loss", ""], {"mnrl", "cached-mnrl", "triplet"}, set()),
        (["embedlab", "completion", ""], {"bash", "zsh"}, set()),
    ],
)
def test_bash_completion_from_the_parser(
    words: list[str], expected: set[str], absent: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    quoted = " ".join(f"'{w}'" for w in words)
    probe = (
        f'{script}\nCOMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _embedlab; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    got = set(done.stdout.split())
    assert expected <= got and not (absent & got), got


def test_zsh_completion_wraps_the_bash_function(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef embedlab") and "bashcompinit" in script and "_embedlab()" in script


@pytest.mark.parametrize("columns", [80, 200])
def test_tables_fit_the_terminal_width(columns: int, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": str(columns), "EMBEDLAB_PLUGINS": "embedlab.encoders.fake"}
    done = subprocess.run(
        [sys.executable, "-m", "embedlab.cli.main", "models"], capture_output=True, text=True, env=env, check=True
    )
    lines = done.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= columns
    if columns == 200:  # room enough: no cell is folded, one line per model
        assert any("all-minilm-l6-v2-int8" in line and "384" in line for line in lines)


def test_empty_columns_are_dropped() -> None:
    from rich.console import Console

    from embedlab.reports.terminal import rich_table

    console = Console(width=120, record=True)
    console.print(rich_table("t", ["model", "cost", "p95 ms"], [["a", "-", "1.0"], ["b", None, "2.0"]]))
    text = console.export_text()
    assert "p95 ms" in text and "cost" not in text

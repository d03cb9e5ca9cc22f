"""Corpus drift on ``index update``: the added chunks' embeddings against the previous generation's
(MMD permutation test), stored in the manifest, printed, and alerted on by ``monitor check``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from embedlab.cli.main import main

GARDEN = ["tomato", "basil", "compost", "seedling", "watering", "mulch", "greenhouse", "pruning", "soil"]
ENGINES = ["piston", "crankshaft", "gasket", "torque", "cylinder", "carburettor", "spark", "valve"]


def _write(folder: Path, words: list[str], start: int, count: int, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        (folder / f"note{n:03d}.txt").write_text(" ".join(rng.choice(words) for _ in range(25)) + ".\n")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    return tmp_path / "collections"


def _manifest(root: Path) -> dict:
    live = root / "lib" / "live"
    return json.loads(((live if live.exists() else root / "lib") / "manifest.json").read_text())


def test_update_tests_the_added_chunks_against_the_collection(tmp_path: Path, root: Path, capsys) -> None:
    library = tmp_path / "library"
    _write(library, GARDEN, 0, 60, seed=1)
    build = ["-q", "index", "build", "lib", str(library), "--model", "hashing:dim=64", "--no-progress"]
    assert main([*build, "--chunk-tokens", "60"]) == 0
    capsys.readouterr()
    info = json.loads(_info(capsys))
    assert info.get("corpus_drift") is None  # a first build has nothing to compare with

    _write(library, GARDEN, 60, 10, seed=2)  # fewer than 20 added chunks: no test
    assert main(["-q", "index", "update", "lib", "--no-progress"]) == 0
    assert "corpus drift" not in capsys.readouterr().out

    _write(library, GARDEN, 70, 40, seed=3)  # more of the same topic: no shift
    assert main(["-q", "index", "update", "lib", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    same = json.loads(_info(capsys))["corpus_drift"]
    assert same["chunks_added"] == 40 and same["p_value"] >= 0.01 and "no clear shift" in printed

    _write(library, ENGINES, 110, 40, seed=4)  # another topic altogether
    assert main(["-q", "index", "update", "lib", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    moved = json.loads(_info(capsys))["corpus_drift"]
    # 200 permutations: the smallest p-value a permutation test can give is 1/201
    assert moved["p_value"] == pytest.approx(1 / 201) and moved["statistic"] > same["statistic"]
    assert "the added chunks differ from the collection" in printed

    rules = tmp_path / "monitor.toml"  # corpus rules alone: no search log is needed
    rules.write_text('[[rule]]\nmetric = "corpus_drift"\np_value = 0.01\nmin_volume = 20\n')
    assert main(["monitor", "check", "lib", "--rules", str(rules)]) == 1
    assert "corpus_drift over the last update" in capsys.readouterr().out
    rules.write_text(rules.read_text().replace("min_volume = 20", "min_volume = 41"))
    assert main(["monitor", "check", "lib", "--rules", str(rules)]) == 0  # 40 added chunks: low volume


def _info(capsys) -> str:
    assert main(["index", "info", "lib", "--json"]) == 0
    return capsys.readouterr().out

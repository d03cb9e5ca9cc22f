"""Shared fixtures: a tiny hand-made BEIR dataset, isolated caches, the shared data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("EMBEDLAB_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))

TINY_CORPUS = [
    {"_id": "d1", "title": "Password reset", "text": "How to reset your password from the login page."},
    {"_id": "d2", "title": "Banana bread", "text": "A recipe with ripe bananas, flour and sugar."},
    {"_id": "d3", "title": "Account security", "text": "Enable two factor authentication to protect your account."},
    {"_id": "d4", "title": "", "text": "Forgot password? Use the reset link sent by email."},
    {"_id": "d5", "title": "Sourdough", "text": "Bake sourdough bread with a starter, flour and water."},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "reset password"},
    {"_id": "q2", "text": "bread recipe flour"},
    {"_id": "q3", "text": "protect account"},
    {"_id": "q9", "text": "an unjudged query"},
]
TINY_QRELS = [("q1", "d1", 2), ("q1", "d4", 1), ("q2", "d2", 1), ("q2", "d5", 1), ("q3", "d3", 1)]


def write_beir(folder: Path, corpus=TINY_CORPUS, queries=TINY_QUERIES, qrels=TINY_QRELS, split="test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels").mkdir(exist_ok=True)
    rows = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download and never touch the user's cache; ONNX exports are shared per session."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EMBEDLAB_CACHE", str(_session_cache(tmp_path_factory)))


_SESSION_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _SESSION_CACHE:
        _SESSION_CACHE.append(factory.mktemp("embedlab-cache"))
    return _SESSION_CACHE[0]


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"shared dataset {path} not present")
    return path

"""Shared fixtures: a tiny hand-made BEIR dataset, isolated caches (data helpers: tests/helpers.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import write_beir

# the deterministic ``hashing`` test encoder is a plugin, not a user-facing model: every test and
# every process a test starts (CLI subprocesses, servers) registers it through this variable
os.environ["EMBEDLAB_PLUGINS"] = "embedlab.encoders.fake"


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download and never touch the user's cache or collections; ONNX exports are shared per
    session.  The per-user data folder (collections' default home) is a fresh temporary folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EMBEDLAB_CACHE", str(_session_cache(tmp_path_factory)))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg-data")))
    monkeypatch.delenv("EMBEDLAB_COLLECTIONS", raising=False)


_SESSION_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _SESSION_CACHE:
        _SESSION_CACHE.append(factory.mktemp("embedlab-cache"))
    return _SESSION_CACHE[0]

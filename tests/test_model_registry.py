"""One model registry: names -> encoders, per-model options, plugins; retrievers are composed from it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedlab.encoders.fake import HashingEncoder
from embedlab.encoders.registry import MODELS, load_encoder
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.index.lexical import BM25Options
from embedlab.search.bm25 import BM25Retriever
from embedlab.search.build import build_retriever
from embedlab.search.dense import DenseRetriever


def test_the_readme_bm25_example_parses_with_digits_in_keys() -> None:
    spec = parse_model_spec("bm25:k1=1.2,b=0.75")
    assert spec.options == {"k1": 1.2, "b": 0.75} and spec.name == "bm25:k1=1.2,b=0.75"
    retriever = build_retriever(spec)
    assert isinstance(retriever, BM25Retriever) and retriever.options == BM25Options(k1=1.2, b=0.75)


def test_flat_and_nested_options_are_the_same_spec() -> None:
    flat = ModelSpec.model_validate({"model": "hashing", "dim": 16, "label": "x"})
    assert flat == ModelSpec(model="hashing", options={"dim": 16}, label="x")
    assert flat.flat() == {"model": "hashing", "label": "x", "dim": 16}
    assert ModelSpec.model_validate(flat.flat()) == flat  # what a manifest stores reads back


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bm25:pooling=cls", "unknown model option 'pooling' for 'bm25'"),
        ("bm25:k1=-1", "invalid model option 'k1' for 'bm25'"),
        ("hashing:dimm=3", "Did you mean 'dim'?"),
        ("all-MiniLM-L6-v2:k1=1.2", "unknown model option 'k1' for 'all-MiniLM-L6-v2'"),
        ("all-MiniLM-L6-v2:poolng=cls", "Did you mean 'pooling'?"),
    ],
)
def test_options_belong_to_their_model(text: str, needle: str) -> None:
    with pytest.raises(EmbedlabError) as caught:
        parse_model_spec(text)
    assert needle in caught.value.one_line()


def test_retrievers_are_built_from_encoders_not_the_other_way_round() -> None:
    encoder = load_encoder(ModelSpec(model="hashing", dim=8))
    assert isinstance(encoder, HashingEncoder) and encoder.dim == 8
    retriever = build_retriever(ModelSpec(model="hashing", dim=8, index="faiss-flat"))
    assert isinstance(retriever, DenseRetriever) and retriever.encoder.fingerprint == encoder.fingerprint
    with pytest.raises(EmbedlabError, match="not an embedding model"):
        load_encoder(ModelSpec(model="bm25"))


def _cli(tmp_path: Path, plugins: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EMBEDLAB_PLUGINS"}
    if plugins is not None:
        env["EMBEDLAB_PLUGINS"] = plugins
    return subprocess.run(
        [sys.executable, "-m", "embedlab.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


def test_the_test_encoder_is_a_plugin_not_a_user_model(tiny_dataset: Path, tmp_path: Path) -> None:
    assert "hashing" in MODELS  # this process has the plugin (tests/conftest.py)
    common = (
        "eval",
        "-d",
        str(tiny_dataset),
        "-m",
        "hashing",
        "--out",
        str(tmp_path / "o"),
        "--no-cache",
        "--latency-queries",
        "2",
    )
    without = _cli(tmp_path, None, *common)
    assert without.returncode == 2 and "hashing" in without.stderr and "Traceback" not in without.stderr
    assert len(without.stderr.strip().splitlines()) == 1
    assert _cli(tmp_path, "embedlab.encoders.fake", *common).returncode == 0
    broken = _cli(tmp_path, "no_such_plugin_module", *common)
    assert broken.returncode == 2 and "no_such_plugin_module" in broken.stderr and "EMBEDLAB_PLUGINS" in broken.stderr

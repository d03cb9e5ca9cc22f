"""Model name -> retriever.  Built-in kinds by name; anything else is a transformer model
resolved offline first (local folder, weight-carrier package, hub)."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from embedlab.encoders.resolve import CARRIERS, locate_model
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.registry import Registry
from embedlab.search.retriever import Retriever

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

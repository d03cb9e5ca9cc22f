"""Retrievers from specs: a model (an encoder from the model registry + a vector index, or the
lexical index for ``bm25``) or a pipeline of them (:mod:`embedlab.search.pipeline`).

Encoders come from :mod:`embedlab.encoders.registry`; this module only composes.  It also checks
a dense model's vector index (``index=KIND,index_<option>=...``) against the index registry,
which the encoders layer does not import."""

from __future__ import annotations

from embedlab.encoders.registry import check_model_exists, entry_for, load_encoder
from embedlab.encoders.spec import INDEX_PREFIX, ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.index import INDEXES
from embedlab.search.pipeline import PipelineSpec
from embedlab.search.retriever import Retriever


def build_retriever(spec: ModelSpec | PipelineSpec) -> Retriever:
    if isinstance(spec, PipelineSpec):
        if spec.single is not None:
            return build_retriever(spec.single.model_copy(update={"label": spec.label or spec.single.label}))
        from embedlab.search.staged import PipelineRetriever

        return PipelineRetriever(spec, [build_retriever(model) for model in spec.first])
    check_model_exists(spec)
    entry = entry_for(spec)
    if entry is not None and entry.lexical:
        from embedlab.index.lexical import BM25Options
        from embedlab.search.bm25 import BM25Retriever

        return BM25Retriever(BM25Options.model_validate(spec.options), label=spec.name)
    from embedlab.search.dense import DenseRetriever

    options = check_index(spec)
    return DenseRetriever(load_encoder(spec), label=spec.name, index=spec.index, index_options=options)


def check_index(spec: ModelSpec) -> dict[str, object]:
    """The index kind exists and takes the options (``index_dim=...``) as written; returns them
    validated, only those given (one line with "Did you mean" for a typo)."""
    kind = INDEXES.get(spec.index)
    try:
        options = kind.validate_options(spec.index_options, prefix=INDEX_PREFIX)
    except EmbedlabError as err:
        raise EmbedlabError(f"{err.message} (model {spec.model!r})", hint=err.hint) from None
    return options.model_dump(include=set(spec.index_options))


def check_retrievable(spec: ModelSpec | PipelineSpec) -> None:
    """Every model a spec names exists and takes its options (before any work starts)."""
    for model in spec.first if isinstance(spec, PipelineSpec) else (spec,):
        check_model_exists(model)
        entry = entry_for(model)
        if entry is None or not entry.lexical:
            check_index(model)
    if isinstance(spec, PipelineSpec) and spec.rerank:
        from embedlab.search.rerank import load_reranker

        for stage in spec.rerank:  # checks the folder's kind; weights load on first use
            load_reranker(stage.reranker)

"""``embedlab.load_model(name, **options)``: a registry encoder with a small, stable face.

The model is the one the CLI's ``--model NAME:key=value,...`` names (same registry, same options,
same fingerprint, so the same vectors and the same cache entries as ``embedlab eval``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from embedlab.api.specs import Cache, cache_option, model_spec
from embedlab.encoders.base import Encoder, Fingerprint, Role
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError, shorten

ROLES: tuple[Role, ...] = ("query", "document")


class Model:
    """A loaded embedding model: texts in, float32 vectors out.

    Build one with :func:`load_model`.  ``encoder`` is the registry's
    :class:`~embedlab.encoders.base.Encoder`, for what this class does not cover.
    """

    def __init__(self, encoder: Encoder, spec: ModelSpec) -> None:
        self.encoder = encoder
        self.spec = spec

    @property
    def name(self) -> str:
        """The model's short name with its changed options (as in result files), e.g. ``all-MiniLM-L6-v2``."""
        return self.spec.name

    @property
    def dim(self) -> int:
        """Vector length."""
        return self.encoder.dim

    @property
    def fingerprint(self) -> Fingerprint:
        """Everything that changes a vector (weights hash, pooling, normalisation, prompts...):
        the embedding cache and collections key on it."""
        return self.encoder.fingerprint

    def __repr__(self) -> str:
        return f"Model({self.name!r}, dim={self.dim})"

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        role: Literal["query", "document"] = "document",
        cache: Cache = False,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Vectors for ``texts``: shape ``(len(texts), dim)``, float32; one string gives shape ``(dim,)``.

        ``role`` picks the prompt (``query_prompt`` or ``document_prompt`` given at load time)
        and is part of the cache key.  Vectors are L2-normalised when the model's
        ``normalize`` option says so (the model's own default otherwise).  ``cache``: False
        (default) encodes everything; True reads and writes the embedding cache in
        ``$EMBEDLAB_CACHE``; a folder, the cache there.

        >>> model = load_model("all-MiniLM-L6-v2")
        >>> model.encode(["How do I reset my password?", "Bake bread"]).shape
        (2, 384)
        >>> query = model.encode("reset password", role="query")
        >>> query.shape, query.dtype.name
        ((384,), 'float32')
        """
        if role not in ROLES:
            raise EmbedlabError(f"unknown role {role!r}", expected="'query' or 'document'")
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else _text_list(texts)
        use_cache, folder = cache_option(cache)
        store = None
        if use_cache:
            from embedlab import settings
            from embedlab.cache.store import EmbeddingCache

            store = EmbeddingCache(folder or settings.cache_dir())
        try:
            vectors = self.encoder.encode(items, role=role, cache=store, show_progress=show_progress)
        finally:
            if store is not None:
                store.close()
        return vectors[0] if single else vectors


def _text_list(texts: object) -> list[str]:
    if not isinstance(texts, Sequence):
        raise EmbedlabError(f"cannot encode a {type(texts).__name__}", expected="a string or a list of strings")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbedlabError(
                f"text {i} is a {type(text).__name__}, not a string", found=shorten(repr(text)), expected="str"
            )
    return list(texts)


def load_model(name: str | ModelSpec, **options: Any) -> Model:
    """Load an embedding model by name, with the options ``--model NAME:key=value`` takes.

    ``name`` is a registry name (``all-MiniLM-L6-v2``, ``all-MiniLM-L6-v2-int8``,
    ``wordllama-l2-supercat``...), a local model folder, a hub id, or a spec string with options
    (``"all-MiniLM-L6-v2:pooling=cls"``).  Options: ``pooling``, ``max_length``, ``normalize``,
    ``query_prompt``, ``document_prompt``, ``batch_size``, ``backend``, ``device``, ``threads``
    and the model's own; a misspelt one is an :class:`~embedlab.errors.EmbedlabError` with
    "Did you mean".  Models load offline first (local folder, bundled package, then the hub).

    >>> model = load_model("all-MiniLM-L6-v2", max_length=128, query_prompt="query: ")
    >>> model.name, model.dim, model.fingerprint.max_length
    ('all-MiniLM-L6-v2:max_length=128,query_prompt=query: ', 384, 128)
    >>> load_model("all-MiniLM-L6-v2", poolng="cls")
    Traceback (most recent call last):
    embedlab.errors.EmbedlabError: unknown model option 'poolng' for 'all-MiniLM-L6-v2' in ...
    """
    from embedlab.encoders.registry import load_encoder

    spec = model_spec(name, options)
    return Model(load_encoder(spec), spec)

"""Searching a collection with an image: the query image's vector against the collection's vectors.

The query image is decoded with the collection's limits (an image collection's, else the
defaults: :mod:`embedlab.data.images`) and encoded by the collection's own model's image tower
(never cached), then searched exactly like a dense text query: the same plan, path filter,
fetch and response (:mod:`embedlab.collection.search`), so an image query's hits, timings and
JSON are those of any search.  Only the dense stage applies: BM25 has no words to match, and
a text re-ranker no query text to read.  Any collection whose model has an image tower
answers: images for an image collection, texts (image -> text) for a collection of documents
built with a two-tower model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab.collection.images import image_limits
from embedlab.collection.search import Query, SearchResponse, _execute, _ms, _plan
from embedlab.data.images import DEFAULT_LIMITS
from embedlab.encoders.images import encode_image_query

if TYPE_CHECKING:
    from embedlab.collection.collection import Collection


def search_image(
    collection: Collection,
    image: bytes,
    *,
    name: str,
    k: int = 10,
    path_filter: str | None = None,
) -> SearchResponse:
    """The ``k`` rows nearest to ``image`` (the file's or the upload's bytes; ``name`` names it in
    errors and in the response's ``query``, as ``[image] NAME``)."""
    started = time.perf_counter()
    plan = _plan(collection, Query(query=f"[image] {name}", k=k, mode="dense", path_filter=path_filter, snippets=False))
    timings = dict.fromkeys(("encode", "search", "fuse", "rerank", "fetch", "total"), 0.0)
    limits = image_limits(collection.manifest) or DEFAULT_LIMITS
    encoder = collection.encoder  # loaded here on first use (a CLI search): not part of the encode time
    t = time.perf_counter()
    vector = encode_image_query(encoder, image, where=Path(name), limits=limits)
    timings["encode"] = _ms(t)
    dense = None
    if plan.dense:
        t = time.perf_counter()
        dense = collection.dense.search_one(vector, plan.first_depth, rows=plan.rows)
        timings["search"] = _ms(t)
    return _execute(collection, plan, dense, timings, started)

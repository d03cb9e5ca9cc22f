"""Persistent collections: a library folder indexed for dense, BM25 and hybrid search.

    build(folder, name, model_spec=...)  ->  <root>/<name>/  (manifest, chunks.sqlite, vectors, BM25, [HNSW])
    update(name)                         re-reads the folder; only new or changed files are encoded
    open_collection(name).search(query)  ->  SearchResponse (hits with file, page, snippet; latency)

Every build and update is atomic (see :mod:`embedlab.collection.layout`).
"""

from embedlab.collection.builder import BuildReport, build, update
from embedlab.collection.collection import Collection, info, open_collection
from embedlab.collection.layout import collections_root, list_collections
from embedlab.collection.search import Hit, SearchResponse, search

__all__ = [
    "BuildReport",
    "Collection",
    "Hit",
    "SearchResponse",
    "build",
    "collections_root",
    "info",
    "list_collections",
    "open_collection",
    "search",
    "update",
]

"""Collections from Python: ``build_collection``, ``update_collection``, ``open_collection``.

The same functions ``embedlab index build|update`` and ``embedlab search`` call
(:mod:`embedlab.collection`); an open :class:`~embedlab.collection.collection.Collection`
answers ``search(query, k=..., mode="dense"|"bm25"|"hybrid")``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab.api import specs
from embedlab.collection.collection import Collection
from embedlab.data.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageLimits
from embedlab.data.library import DEFAULT_MAX_CHUNKS, DEFAULT_MAX_PAGES, DEFAULT_MAX_TEXT_BYTES, LibraryRules
from embedlab.distributed.ray_engine import Engine, RayEngine
from embedlab.encoders.spec import ModelSpec

if TYPE_CHECKING:
    from embedlab.api.model import Model
    from embedlab.collection.builder import BuildReport  # imported when building: search does not need it


def build_collection(
    folder: str | Path,
    name: str,
    *,
    model: str | ModelSpec | Model,
    chunk_tokens: int = 256,
    overlap: int = 32,
    root: str | Path | None = None,
    replace: bool = False,
    cache: specs.Cache = True,
    ann_threshold: int | None = None,
    follow_links: bool = False,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES,
    max_chunks: int = DEFAULT_MAX_CHUNKS,
    exclude: Sequence[str] = (),
    images: bool = False,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
    show_progress: bool = False,
    index: str | None = None,
    engine: Engine = "local",
    ray_address: str | None = None,
    actors: int = 1,
    num_gpus_per_actor: float = 0.0,
) -> BuildReport:
    """Index every readable file of ``folder`` (PDF, text, Markdown, HTML) into collection ``name``,
    as ``embedlab index build FOLDER --collection NAME --model MODEL`` does.

    ``root``: the collections folder (default ``$EMBEDLAB_COLLECTIONS`` or ``./collections``).
    Chunks hold up to ``chunk_tokens`` of the model's tokens, ``overlap`` shared.  Files over the
    caps (``max_pages`` per PDF, ``max_text_bytes``, ``max_chunks`` per file) and links out of the
    folder (unless ``follow_links``) are skipped and listed in the report's ``skipped``, and so are
    files matching an ``exclude`` glob or a line of the folder's ``.embedlabignore`` (gitignore-like;
    see :mod:`embedlab.data.ignore`).  The rules are kept for :func:`update_collection`.
    ``images=True``: a collection of images (PNG, JPEG, WebP; one per document) for an image model
    or a CLIP/SigLIP folder; files over ``max_image_bytes`` or ``max_image_pixels``, corrupt ones and
    other files are skipped (:mod:`embedlab.collection.images`).
    ``index``: the vector index kind built at or above ``ann_threshold`` chunks, ``KIND[:key=value,...]``
    (``milvus``, ``chroma:host=127.0.0.1,port=8000``; default an HNSW graph from 50,000 chunks; given
    without ``ann_threshold``: from the first chunk); kept for :func:`update_collection`.
    ``engine="ray"``: the new chunks are encoded on Ray Data actors (``actors`` of them, one model
    each, ``num_gpus_per_actor``), on the cluster at ``ray_address`` or a Ray started in this
    process; the cache, vectors and manifest are the same as with the default ``"local"``.

    >>> report = build_collection("papers", "papers", model="all-MiniLM-L6-v2", chunk_tokens=128)
    >>> report.generation, report.files, report.chunks > 0, report.skipped
    (1, 4, True, ())
    """
    from embedlab.collection.builder import build
    from embedlab.collection.vectors import ANN_THRESHOLD

    use_cache, cache_dir = specs.cache_option(cache)
    rules = LibraryRules(
        follow_links=follow_links,
        max_pages=max_pages,
        max_text_bytes=max_text_bytes,
        max_chunks=max_chunks,
        exclude=tuple(exclude),
    )
    limits = ImageLimits(max_bytes=max_image_bytes, max_pixels=max_image_pixels) if images else None
    return build(
        folder,
        name,
        model_spec=specs.dense_model(model),
        rules=rules,
        images=limits,
        max_tokens=chunk_tokens,
        overlap=overlap,
        root=root,
        replace=replace,
        cache_dir=cache_dir,
        use_cache=use_cache,
        ann_threshold=(1 if index else ANN_THRESHOLD) if ann_threshold is None else ann_threshold,
        show_progress=show_progress,
        ann_index=index,
        engine=RayEngine.of(engine, ray_address, actors, num_gpus_per_actor),
    )


def update_collection(
    name: str,
    *,
    root: str | Path | None = None,
    folder: str | Path | None = None,
    cache: specs.Cache = True,
    show_progress: bool = False,
    engine: Engine = "local",
    ray_address: str | None = None,
    actors: int = 1,
    num_gpus_per_actor: float = 0.0,
) -> BuildReport:
    """Re-read collection ``name``'s folder (or ``folder``, when it moved), as ``embedlab index
    update``: new and changed files are indexed, deleted ones dropped, the rest carried over;
    ``engine`` and the Ray options as for :func:`build_collection`."""
    from embedlab.collection.builder import update

    use_cache, cache_dir = specs.cache_option(cache)
    return update(
        name,
        root=root,
        folder=folder,
        cache_dir=cache_dir,
        use_cache=use_cache,
        show_progress=show_progress,
        engine=RayEngine.of(engine, ray_address, actors, num_gpus_per_actor),
    )


def open_collection(
    name: str,
    *,
    root: str | Path | None = None,
    model: str | ModelSpec | Model | None = None,
    load_model: bool = True,
) -> Collection:
    """Open collection ``name`` for search (also ``embedlab.Collection.open``).

    ``model`` (default: the collection's own) must have the fingerprint the collection was built
    with.  ``load_model=False`` loads the model only at the first dense search (BM25 alone needs
    none).  Close it with ``close()`` or use it in a ``with`` block.

    >>> with open_collection("lib") as lib:
    ...     response = lib.search("reset my password", k=3, mode="bm25")
    >>> [hit.path for hit in response.hits][:1]
    ['guide/passwords.md']
    """
    from embedlab.collection.collection import open_collection as open_live

    return open_live(
        name, model_spec=None if model is None else specs.dense_model(model), root=root, load_model=load_model
    )

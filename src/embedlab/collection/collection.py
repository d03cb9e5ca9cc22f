"""Opening a collection for search, and describing one (``info``).

``open_collection`` loads the live generation: manifest, chunk database, vectors (checked
against the manifest's SHA-256), the BM25 index, and the encoder.  A query encoder must
be the one the collection was built with: any difference in the fingerprint (model,
weights, pooling, normalisation, max length, precision, prompts) is an error naming the
differing fields, because vectors from two encoders are not comparable.

An open collection keeps its generation's files open: a later update does not disturb
it (a finished generation is never modified; a removed one stays readable while open).
Call :meth:`Collection.reload_if_changed` to follow updates.
"""

from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedlab.checksum import file_sha256
from embedlab.collection.chunkstore import DB, ChunkStore
from embedlab.collection.layout import CollectionDir, folder_size
from embedlab.collection.lexical import open_lexical
from embedlab.collection.manifest import Manifest, read_manifest
from embedlab.collection.vectors import load_vectors, open_dense_index
from embedlab.encoders.base import Encoder
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.payloads import CollectionInfo

if TYPE_CHECKING:
    from embedlab.collection.search import SearchResponse
    from embedlab.search.rerank import Reranker

_SHOWN = (
    "model",
    "kind",
    "weights",
    "backend",
    "pooling",
    "normalize",
    "max_length",
    "precision",
    "query_prompt",
    "document_prompt",
)


def _plain(values: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(values, sort_keys=True))


def check_encoder(manifest: Manifest, encoder: Encoder, name: str) -> None:
    """The query encoder must have the collection's fingerprint; else one line naming both."""
    built, given = _plain(manifest.encoder), _plain(encoder.fingerprint.as_dict())
    if built == given:
        return
    differ = [key for key in _SHOWN if built.get(key) != given.get(key)]
    differ += sorted(k for k in set(built) | set(given) if k not in _SHOWN and built.get(k) != given.get(k))

    def show(values: dict[str, object]) -> str:
        return ", ".join(f"{key}={values.get(key)!r}" for key in ["model", *[k for k in differ if k != "model"]])

    raise EmbedlabError(
        f"collection {name!r} was built with a different encoder (differs in {', '.join(differ)})",
        found=f"query encoder {show(given)}",
        expected=f"the collection's encoder {show(built)}",
        hint=f"search with the collection's model ({manifest.model}), or rebuild the collection with the new "
        "model (`embedlab index build --replace`)",
    )


class Collection:
    """One loaded generation of a collection; :meth:`search` answers queries."""

    def __init__(
        self,
        cdir: CollectionDir,
        folder: Path,
        manifest: Manifest,
        encoder: Encoder | None,
        *,
        verify: bool = True,
        model_spec: ModelSpec | None = None,
    ) -> None:
        self.cdir = cdir
        self.name = cdir.name
        self.folder = folder
        self.manifest = manifest
        self._encoder = encoder
        self._model_spec = model_spec  # loaded on first use when ``encoder`` is None
        vector_path = folder / manifest.vectors.file
        if not vector_path.is_file():
            raise EmbedlabError("collection generation has no vector file", path=vector_path)
        if verify and file_sha256(vector_path) != manifest.vectors.sha256:
            raise EmbedlabError(
                "the collection's vectors do not match the checksum in its manifest",
                path=vector_path,
                hint=f"the file is damaged; `embedlab index build --collection {self.name} --replace` rebuilds it",
            )
        vectors = load_vectors(vector_path)
        if vectors.ndim != 2 or vectors.shape != (manifest.counts.chunks, manifest.dim):
            raise EmbedlabError(
                "the collection's vectors do not match its manifest",
                path=vector_path,
                found=f"shape {vectors.shape}",
                expected=f"({manifest.counts.chunks}, {manifest.dim})",
            )
        self.store = ChunkStore(folder / DB)
        self.ids = self.store.ids()
        if len(self.ids) != manifest.counts.chunks:
            raise EmbedlabError(
                "the chunk database does not match the manifest",
                path=folder / DB,
                found=f"{len(self.ids)} chunks",
                expected=f"{manifest.counts.chunks}",
            )
        self.paths, self.row_path = self.store.row_paths()
        self.dense = open_dense_index(vectors, manifest.index, folder)
        self.lexical = open_lexical(manifest.lexical, folder, len(self.ids))
        self._filters: dict[str, np.ndarray | None] = {}

    @classmethod
    def open(
        cls, name: str, *, root: str | Path | None = None, model: ModelSpec | str | None = None, verify: bool = True
    ) -> Collection:
        """Open collection ``name``'s live generation (:func:`open_collection`); ``model`` (default:
        the collection's own) must give the encoder fingerprint it was built with."""
        return open_collection(name, model_spec=model, root=root, verify=verify)

    @property
    def encoder(self) -> Encoder:
        """The query encoder, loaded (and its fingerprint checked) on first use: a BM25-only
        search never pays for loading a model (``open_collection(..., load_model=False)``)."""
        if self._encoder is None:
            from embedlab.encoders.registry import load_encoder

            encoder = load_encoder(self._model_spec or ModelSpec.model_validate(self.manifest.model_spec))
            check_encoder(self.manifest, encoder, self.name)
            self._encoder = encoder
        return self._encoder

    @property
    def dense_model(self) -> str:
        """The name of the model whose vectors the collection holds (as given to ``index build``)."""
        return str(self.manifest.model_spec.get("model", self.manifest.model))

    @property
    def generation(self) -> int:
        return self.manifest.generation

    def __len__(self) -> int:
        return len(self.ids)

    def rows_matching(self, pattern: str | None) -> np.ndarray | None:
        """Rows whose file path matches the glob (fnmatch: ``*`` also crosses ``/``); None = all rows."""
        if pattern is None:
            return None
        if pattern not in self._filters:
            wanted = [i for i, path in enumerate(self.paths) if fnmatch.fnmatchcase(path, pattern)]
            self._filters[pattern] = np.flatnonzero(np.isin(self.row_path, wanted)).astype(np.int64)
            if len(self._filters) > 256:
                self._filters.pop(next(iter(self._filters)))
        return self._filters[pattern]

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: str = "hybrid",
        rrf_k: float = 60.0,
        weights: tuple[float, float] = (1.0, 1.0),
        path_filter: str | None = None,
        reranker: Reranker | str | None = None,
        rerank_depth: int = 20,
        candidates: int = 100,
        snippets: bool = True,
        fusion: str = "rrf",
        rerank_fuse: float = 0.0,
    ) -> SearchResponse:
        """The best ``k`` chunks for ``query``: ``mode`` dense, bm25 or hybrid (RRF of both, ``weights``
        dense, bm25); ``reranker``: a loaded re-ranker or its name (``"word-overlap"``, a cross-encoder
        folder).  See :func:`embedlab.collection.search.search`.

        >>> with Collection.open("lib") as lib:
        ...     hits = lib.search("how do I reset my password", k=2, mode="hybrid").hits
        >>> len(hits), hits[0].path, hits[0].snippet != ""
        (2, 'guide/passwords.md', True)
        """
        from embedlab.collection.search import search

        if isinstance(reranker, str):
            from embedlab.search.rerank import load_reranker

            reranker = load_reranker(reranker)

        return search(
            self,
            query,
            k=k,
            mode=mode,
            rrf_k=rrf_k,
            weights=weights,
            path_filter=path_filter,
            reranker=reranker,
            rerank_depth=rerank_depth,
            candidates=candidates,
            snippets=snippets,
            fusion=fusion,
            rerank_fuse=rerank_fuse,
        )

    def search_image(self, image: bytes | str | Path, *, k: int = 10, path_filter: str | None = None) -> SearchResponse:
        """The best ``k`` rows for a query image (a file, or its bytes): dense search through the
        model's image tower (:func:`embedlab.collection.image_search.search_image`)."""
        from embedlab.collection.image_search import search_image
        from embedlab.collection.images import image_limits
        from embedlab.data.images import DEFAULT_LIMITS, read_image_bytes

        if isinstance(image, bytes):
            return search_image(self, image, name="upload", k=k, path_filter=path_filter)
        path = Path(image).expanduser()
        data = read_image_bytes(path, limits=image_limits(self.manifest) or DEFAULT_LIMITS)
        return search_image(self, data, name=str(path), k=k, path_filter=path_filter)

    def is_stale(self) -> bool:
        """True when another generation has become live since this one was opened."""
        try:
            return self.cdir.live() != self.folder
        except EmbedlabError:
            return False

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_collection(
    name: str,
    *,
    model_spec: ModelSpec | str | None = None,
    root: str | Path | None = None,
    verify: bool = True,
    load_model: bool = True,
) -> Collection:
    """Load collection ``name``'s live generation; ``model_spec`` (default: the collection's own) must
    give the same encoder fingerprint.  ``load_model=False`` defers loading the encoder to the first
    dense search (a BM25-only caller such as ``embedlab search --mode bm25`` never loads it)."""
    from embedlab.encoders.registry import check_model_exists, load_encoder

    cdir = CollectionDir(name, root=root)
    spec = None
    if model_spec is not None:
        spec = parse_model_spec(model_spec) if isinstance(model_spec, str) else model_spec
    encoder: Encoder | None = None
    for attempt in range(3):
        folder = cdir.live()
        try:
            manifest = read_manifest(folder)
            if not load_model:
                if spec is not None:
                    check_model_exists(spec)  # a typo is reported now, not at the first dense query
                return Collection(cdir, folder, manifest, None, verify=verify, model_spec=spec)
            if encoder is None:
                encoder = load_encoder(spec or ModelSpec.model_validate(manifest.model_spec))
            check_encoder(manifest, encoder, name)
            return Collection(cdir, folder, manifest, encoder, verify=verify)
        except EmbedlabError:
            # an update may have replaced this generation while we were loading it: try the new one
            if attempt == 2 or folder.is_dir() or not cdir.exists():
                raise
            time.sleep(0.05)
    raise RuntimeError("unreachable")  # pragma: no cover


def info(name: str, *, root: str | Path | None = None) -> CollectionInfo:
    """What a collection holds, with what it was made, and its size on disk (no model is loaded)."""
    cdir = CollectionDir(name, root=root)
    folder = cdir.live()
    manifest = read_manifest(folder)
    store = ChunkStore(folder / DB)
    try:
        files = store.files()
        skipped = [{"path": path, "reason": reason} for path, reason in store.skipped()]
    finally:
        store.close()
    kinds: dict[str, int] = {}
    for row in files:
        kinds[str(row["kind"])] = kinds.get(str(row["kind"]), 0) + 1
    return {
        "name": name,
        "path": str(cdir.path),
        "generation": manifest.generation,
        "source_folder": manifest.source_folder,
        "model": manifest.model,
        "model_spec": manifest.model_spec,
        "encoder": manifest.encoder,
        "dim": manifest.dim,
        "metric": manifest.metric,
        "chunking": manifest.chunking.model_dump(),
        "library": manifest.library.model_dump(),
        "counts": manifest.counts.model_dump(),
        "files_by_kind": dict(sorted(kinds.items())),
        "index": manifest.index.model_dump(),
        "lexical": manifest.lexical.model_dump(),
        "vectors": manifest.vectors.model_dump(),
        "size_bytes": folder_size(folder),
        "folder_bytes": folder_size(cdir.path),
        "created": manifest.created,
        "updated": manifest.updated,
        "versions": manifest.versions,
        "skipped": skipped,
        "corpus_drift": None if manifest.corpus_drift is None else manifest.corpus_drift.model_dump(),
        "images": None if manifest.images is None else manifest.images.model_dump(),
    }

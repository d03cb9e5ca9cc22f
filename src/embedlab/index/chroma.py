"""``chroma``: a Chroma collection behind the common vector-index interface (extra ``scale``).

Chroma is the vector store many retrieval-augmented-generation projects start with; this kind
lets the same evaluation, search and serving run over it and compare it with the others:

- **embedded** (``host`` unset): a ``chromadb.PersistentClient`` store built in a private
  temporary folder, saved into the index folder as ``chroma.tar`` with its SHA-256 and re-opened
  from a private copy (:mod:`embedlab.index.external` says why);
- **client/server** (``host=127.0.0.1,port=8000``: a ``chroma run`` server, through
  ``chromadb.HttpClient``): each build writes its own collection (``embedlab-<random>`` unless
  ``collection`` names it), saved as the pointer ``chroma.json``.

Chroma searches an HNSW graph (``m`` = its ``max_neighbors``, ``ef_construction``; ``ef_search``
doubled from 64 until recall@10 against exact search reaches ``recall_target``, as for
``faiss-hnsw``).  The search width is applied by asking Chroma for ``max(k, ef_search)`` results and
keeping the first ``k``: its HNSW searches with ``max(ef, n_results)``, while a changed
``ef_search`` (``collection.modify``) is recorded but not applied to the graph a process has loaded
(chromadb 1.5.9, embedded: recall@10 on SciFact's test queries stayed 0.933 from ef 16 to 1024;
asking for 64/128/256 results gave 0.994/0.999/1.000).  Space ``ip`` returns the distance 1 - q.d,
so the score is 1 - distance, the inner product; space ``cosine`` returns 1 - cos and the score is
the cosine (equal to the inner product for the normalised vectors of most models).  Each row is
stored under the id ``str(pos)`` with the metadata ``{"pos": pos}``; a path filter (``rows``) is the
filter ``where={"pos": {"$in": rows}}`` (``$nin`` of the complement when shorter).  The collection's
metadata records the dimension, the row count and the encoder ``fingerprint``, compared on load.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.errors import EmbedlabError
from embedlab.index.base import IndexInfo, register_index, tune_width
from embedlab.index.external import ExternalIndex, check_reachable, check_stored, shorter_side

STORE_FILE = "chroma.tar"
POINTER_FILE = "chroma.json"
EMBEDDED_COLLECTION = "embedlab"
QUERY_BATCH = 256
DEFAULT_WIDTH = 64  # the first search width tried, and the width before tuning


def chromadb_module() -> Any:
    """``import chromadb``, or one line naming the extra."""
    try:
        import chromadb
    except ImportError:
        raise EmbedlabError("the chroma index needs chromadb", hint='pip install "embedlab[scale]"') from None
    return chromadb


class ChromaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None  # None: an embedded store saved in the index folder
    port: int = Field(default=8000, ge=1, le=65_535)
    collection: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
    space: Literal["ip", "cosine"] = "ip"
    m: int = Field(default=16, ge=2, le=2048)  # Chroma's max_neighbors
    ef_construction: int = Field(default=100, ge=8, le=65_536)
    ef_search: int | None = Field(default=None, ge=1, le=65_536)  # None: tuned to recall_target
    recall_target: float = Field(default=0.95, gt=0, le=1)
    timeout: float = Field(default=10.0, gt=0, le=600)  # seconds to connect to a server
    fingerprint: str | None = None  # the encoder's, stored with the collection and checked on load


@register_index
class ChromaIndex(ExternalIndex):
    kind = "chroma"
    Options = ChromaOptions
    requires = ("chromadb",)
    engine, store_name, store_file, pointer_file = "Chroma", "chroma", STORE_FILE, POINTER_FILE
    _width = DEFAULT_WIDTH  # the search width: results asked of Chroma per query (see the module doc)

    @property
    def _opts(self) -> ChromaOptions:
        assert isinstance(self.options, ChromaOptions)  # Options narrows the base type (not an input check)
        return self.options

    def _build(self) -> None:
        opts, n, dim = self._opts, len(self.vectors), self.vectors.shape[1]
        if opts.host is not None and opts.collection is None:
            self.options = opts = opts.model_copy(update={"collection": f"embedlab-{uuid.uuid4().hex[:16]}"})
        self._open_new()
        hnsw = {"space": opts.space, "ef_construction": opts.ef_construction, "max_neighbors": opts.m}
        metadata = {"embedlab_dimension": dim, "embedlab_rows": n, "embedlab_fingerprint": opts.fingerprint or ""}
        with chroma_errors(f"create collection {self._name!r}"):
            self.collection = self.client.create_collection(
                self._name,
                configuration={"hnsw": {**hnsw, "ef_search": opts.ef_search or DEFAULT_WIDTH}},
                metadata=metadata,
                embedding_function=None,
            )
            batch = self.client.get_max_batch_size()
            for start in range(0, n, batch):
                block = np.asarray(self.vectors[start : start + batch], dtype=np.float32)
                positions = range(start, start + len(block))
                self.collection.add(
                    ids=[str(p) for p in positions], embeddings=block, metadatas=[{"pos": p} for p in positions]
                )
        if n:
            fixed, target = opts.ef_search, opts.recall_target
            width = tune_width(self, self._set_ef, fixed=fixed, start=DEFAULT_WIDTH, target=target)
            self.options = opts.model_copy(update={"ef_search": width})

    def info(self) -> IndexInfo:
        """As the base, less the server port of an embedded store."""
        info = super().info()
        return (
            info
            if self.remote
            else info.model_copy(update={"params": {k: v for k, v in info.params.items() if k != "port"}})
        )

    def _set_ef(self, width: int) -> None:
        self._width = width

    @property
    def _name(self) -> str:
        return self._opts.collection or EMBEDDED_COLLECTION

    @property
    def remote(self) -> bool:
        return self._opts.host is not None

    def _connect(self, store: Path | None) -> None:
        opts, chromadb = self._opts, chromadb_module()
        settings = chromadb.Settings(anonymized_telemetry=False)
        if store is not None:
            self.client = chromadb.PersistentClient(path=str(store), settings=settings)
            return
        check_reachable(f"{opts.host}:{opts.port}", default_port=opts.port, timeout=opts.timeout, engine="Chroma")
        with chroma_errors(f"connect to {opts.host}:{opts.port}"):
            self.client = chromadb.HttpClient(host=opts.host or "", port=opts.port, settings=settings)

    def _where(self, rows: np.ndarray | None) -> dict[str, Any] | None:
        side = shorter_side(rows, len(self.vectors))
        return None if side is None else {"pos": {"$nin" if side[1] else "$in": side[0]}}

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        where = self._where(rows)
        for start in range(0, len(queries), QUERY_BATCH):
            with chroma_errors(f"search {self._name!r}"):
                found = self.collection.query(
                    query_embeddings=queries[start : start + QUERY_BATCH],
                    n_results=min(max(k, self._width), len(self.vectors)),
                    where=where,
                    include=["distances"],
                )
            for i, (ids, distances) in enumerate(zip(found["ids"], found["distances"] or [], strict=True)):
                m = min(k, len(ids))
                positions[start + i, :m] = [int(x) for x in ids[:m]]
                scores[start + i, :m] = 1.0 - np.asarray(distances[:m], dtype=np.float32)
        return scores, positions

    def _pointer(self) -> dict[str, Any]:
        return {"host": self._opts.host, "port": self._opts.port, "collection": self._name}

    def _drop(self) -> None:
        with chroma_errors(f"delete collection {self._name!r}"):
            self.client.delete_collection(self._name)

    def _opened(self, rows: int, dim: int) -> None:
        with chroma_errors(f"open collection {self._name!r}"):
            try:
                self.collection = self.client.get_collection(self._name, embedding_function=None)
            except chromadb_module().errors.NotFoundError:
                raise EmbedlabError(
                    f"the Chroma collection {self._name!r} does not exist",
                    hint="it was deleted or the server was reset; rebuild the index",
                ) from None
            count = self.collection.count()
        meta = self.collection.metadata or {}
        stored = {
            "dimension": meta.get("embedlab_dimension"),
            "rows": count,
            "fingerprint": meta.get("embedlab_fingerprint"),
        }
        expected = {"dimension": dim, "rows": rows, "fingerprint": self._opts.fingerprint}
        check_stored("Chroma", repr(self._name), stored=stored, expected=expected)
        self._width = self._opts.ef_search or DEFAULT_WIDTH


@contextlib.contextmanager
def chroma_errors(action: str) -> Iterator[None]:
    """A Chroma server's refusal (a bad parameter, a lost connection) is one line."""
    try:
        yield
    except (chromadb_module().errors.ChromaError, ConnectionError) as err:
        raise EmbedlabError(f"Chroma could not {action}: {str(err).splitlines()[0][:300]}") from None

"""``milvus``: a Milvus collection behind the common vector-index interface (extra ``scale``).

One code path for both deployments, through ``pymilvus.MilvusClient``:

- **Milvus Lite** (``uri`` unset; the ``milvus-lite`` package, the Milvus project's embedded
  engine): the collection lives in a store built in a private temporary folder, saved into the
  index folder as ``milvus-lite.tar`` with its SHA-256 and re-opened from a private copy
  (:mod:`embedlab.index.external` says why);
- **a Milvus server or cluster** (``uri=http://host:19530``; a token, if the server needs one,
  from ``$MILVUS_TOKEN``, never stored): each build writes its own collection
  (``embedlab_<random>`` unless ``collection`` names it), saved as the pointer ``milvus.json``.

Rows are stored with their position in the caller's matrix as the primary key ``pos``; a path
filter (``rows``) is the Milvus filter expression ``pos in [...]`` (``pos not in [...]`` when the
complement is shorter).  The metric is inner product (``IP``).  Index types: ``HNSW`` (``m``,
``ef_construction``; ``ef_search`` tuned), ``IVF_FLAT``/``IVF_SQ8``/``IVF_PQ`` (``nlist``,
``pq_m``, ``nbits``; ``nprobe`` tuned), ``DISKANN`` (servers with local SSD; its search list
tuned) and ``FLAT`` (exhaustive).  As for ``faiss-hnsw``, the search width is doubled until
recall@10 against exact search, measured at build time on a seeded sample of the indexed
vectors, reaches ``recall_target``; width and recall are kept in :meth:`info`.  Milvus Lite
3.2 builds HNSW, IVF_FLAT, IVF_SQ8 and FLAT; IVF_PQ and DISKANN are refused there by name.
Milvus Lite 3.2 is a Python engine: every search call also walks all stored rows in Python (a
primary-key dedup map and a validity mask), ~0.38 us per row per call whatever the index (379 ms
per call at 1M rows, README "Scaling out"), so queries go to it in batches of ``QUERY_BATCH``.

The collection records the vector dimension, the row count and the encoder ``fingerprint``
(set by the caller) as collection properties; loading compares them with the vectors and the
manifest and refuses a mismatch naming the fields.  An update builds a new collection for the
new generation (the collection machinery's atomic switch); nothing is modified in place.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from embedlab.errors import EmbedlabError
from embedlab.index.base import IndexInfo, register_index, tune_width
from embedlab.index.external import ExternalIndex, check_reachable, check_stored, shorter_side

LITE_FILE = "milvus-lite.tar"
POINTER_FILE = "milvus.json"
LITE_COLLECTION = "embedlab"
LITE_TYPES = ("HNSW", "IVF_FLAT", "IVF_SQ8", "FLAT")  # what Milvus Lite 3.2 builds
MAX_LIMIT = 16_384  # Milvus's largest top-k
INSERT_BATCH = 10_000
INDEX_WAIT_S = 600  # the longest wait for Milvus to finish indexing a new collection's sealed rows
QUERY_BATCH = 256
PK, VEC = "pos", "vec"
IVF = ("nlist", "nprobe")
TYPE_OPTIONS = {  # the options each index type reads
    "HNSW": ("m", "ef_construction", "ef_search"),
    "DISKANN": ("ef_search",),
    "IVF_FLAT": IVF,
    "IVF_SQ8": IVF,
    "IVF_PQ": (*IVF, "pq_m", "nbits"),
    "FLAT": (),
    "ALL": ("m", "ef_construction", "ef_search", *IVF, "pq_m", "nbits"),
}


def milvus_client() -> Any:
    """``pymilvus.MilvusClient``, or one line naming the extra."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise EmbedlabError("the milvus index needs pymilvus", hint='pip install "embedlab[scale]"') from None
    return MilvusClient


@contextlib.contextmanager
def milvus_errors(action: str) -> Iterator[None]:
    """A Milvus server's refusal (missing collection, bad parameter, lost connection) is one line."""
    from grpc import RpcError
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as err:
        raise EmbedlabError(f"Milvus could not {action}: {getattr(err, 'message', err)}") from None
    except RpcError as err:  # a transport limit or a dropped connection, below pymilvus's own errors
        details = err.details() if hasattr(err, "details") else str(err)
        raise EmbedlabError(f"Milvus could not {action}: {str(details).splitlines()[0][:300]}") from None


class MilvusOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str | None = None  # None: Milvus Lite, saved in the index folder; http://HOST:19530: a server
    collection: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
    index: Literal["HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "DISKANN", "FLAT"] = "HNSW"
    m: int = Field(default=16, ge=2, le=2048)  # HNSW graph degree
    ef_construction: int = Field(default=200, ge=8, le=65_536)
    ef_search: int | None = Field(default=None, ge=1, le=65_536)  # None: tuned to recall_target (HNSW, DISKANN)
    nlist: int = Field(default=128, ge=1, le=65_536)  # IVF cells (fewer when the rows are few)
    nprobe: int | None = Field(default=None, ge=1, le=65_536)  # None: tuned to recall_target (IVF)
    pq_m: int = Field(default=8, ge=1, le=4096)  # IVF_PQ sub-quantizers (must divide the dimension)
    nbits: int = Field(default=8, ge=1, le=16)
    recall_target: float = Field(default=0.95, gt=0, le=1)
    timeout: float = Field(default=10.0, gt=0, le=600)  # seconds to connect and per call
    fingerprint: str | None = None  # the encoder's, stored with the collection and checked on load

    @field_validator("index", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


@register_index
class MilvusIndex(ExternalIndex):
    kind = "milvus"
    Options = MilvusOptions
    requires = ("pymilvus", "milvus_lite")
    engine, store_name, store_file, pointer_file = "Milvus", "milvus.db", LITE_FILE, POINTER_FILE

    @property
    def _opts(self) -> MilvusOptions:
        assert isinstance(self.options, MilvusOptions)  # Options narrows the base type (not an input check)
        return self.options

    def _build(self) -> None:
        opts, n, dim = self._opts, len(self.vectors), self.vectors.shape[1]
        if opts.uri is None and opts.index not in LITE_TYPES:
            raise EmbedlabError(
                f"Milvus Lite cannot build {opts.index}",
                expected=", ".join(LITE_TYPES),
                hint=f"{opts.index} needs a Milvus server: add uri=http://HOST:19530",
            )
        if opts.uri is not None and opts.collection is None:
            opts = opts.model_copy(update={"collection": f"embedlab_{uuid.uuid4().hex[:16]}"})
        if opts.index.startswith("IVF"):  # k-means needs ~39 points per cell (FAISS's rule)
            opts = opts.model_copy(update={"nlist": max(1, min(opts.nlist, n // 39))})
        self.options = opts
        self._open_new()
        from pymilvus import DataType

        with milvus_errors(f"create collection {self._name!r}"):
            if self.client.has_collection(self._name):
                raise EmbedlabError(
                    f"the Milvus collection {self._name!r} already exists", hint="name another collection= or drop it"
                )
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(PK, DataType.INT64, is_primary=True)
            schema.add_field(VEC, DataType.FLOAT_VECTOR, dim=dim)
            index_params = self.client.prepare_index_params()
            # nested "params": the form both Milvus servers and Milvus Lite 3.2 read (Lite drops flattened keys)
            index_params.add_index(
                field_name=VEC, index_type=opts.index, metric_type="IP", params={"params": self._build_params()}
            )
            properties = {
                "embedlab.dimension": str(dim),
                "embedlab.rows": str(n),
                "embedlab.fingerprint": opts.fingerprint or "",
            }
            self.client.create_collection(self._name, schema=schema, index_params=index_params, properties=properties)
            for start in range(0, n, INSERT_BATCH):
                block = np.asarray(self.vectors[start : start + INSERT_BATCH], dtype=np.float32)
                self.client.insert(self._name, [{PK: start + i, VEC: row} for i, row in enumerate(block)])
            self.client.flush(self._name)  # sealed segments get their index; unsealed rows are scanned
            self._wait_for_index()
            self.client.load_collection(self._name)
        self._width = 0
        if n:
            self._tune(opts)

    def _wait_for_index(self) -> None:
        """Until Milvus has indexed every row: it builds the index of sealed segments in the
        background, and rows not yet indexed are searched another way (scanned, or through a growing
        segment's interim index), so the recall tuned and measured at build would not be the
        index's own -- under load the search width was tuned on rows the graph did not hold yet."""
        deadline = time.monotonic() + INDEX_WAIT_S
        while True:
            state = self.client.describe_index(self._name, VEC)
            if int(state.get("pending_index_rows") or 0) == 0 and state.get("state", "Finished") == "Finished":
                return
            if state.get("state") == "Failed" or time.monotonic() > deadline:
                raise EmbedlabError(
                    f"Milvus did not finish indexing {self._name!r}",
                    found=f"state {state.get('state')}, {state.get('indexed_rows')} of {state.get('total_rows')} rows",
                    expected=f"every row indexed within {INDEX_WAIT_S} s",
                    hint=str(state.get("fail_reason") or "check the Milvus server's logs"),
                )
            time.sleep(0.2)

    def info(self) -> IndexInfo:
        """As the base, less the options of the other index types (HNSW has no nlist)."""
        unused = set(TYPE_OPTIONS["ALL"]) - set(TYPE_OPTIONS[self._opts.index])
        info = super().info()
        return info.model_copy(update={"params": {k: v for k, v in info.params.items() if k not in unused}})

    def _build_params(self) -> dict[str, int]:
        opts = self._opts
        if opts.index == "HNSW":
            return {"M": opts.m, "efConstruction": opts.ef_construction}
        if opts.index == "IVF_PQ":
            return {"nlist": opts.nlist, "m": opts.pq_m, "nbits": opts.nbits}
        if opts.index.startswith("IVF"):
            return {"nlist": opts.nlist}
        return {}

    def _tune(self, opts: MilvusOptions) -> None:
        def use(width: int) -> None:
            self._width = width

        if opts.index.startswith("IVF"):
            width = tune_width(self, use, fixed=opts.nprobe, start=8, target=opts.recall_target)
            self.options = opts.model_copy(update={"nprobe": width})
        elif opts.index in ("HNSW", "DISKANN"):
            width = tune_width(self, use, fixed=opts.ef_search, start=64, target=opts.recall_target)
            self.options = opts.model_copy(update={"ef_search": width})
        else:
            self._record_recall(self.measure_recall(), opts.recall_target)

    @property
    def _name(self) -> str:
        return self._opts.collection or LITE_COLLECTION

    @property
    def remote(self) -> bool:
        return self._opts.uri is not None

    def _connect(self, store: Path | None) -> None:
        opts, client = self._opts, milvus_client()
        if store is not None:  # Milvus Lite: pymilvus starts its in-process server for a path ending in .db
            self.client = client(str(store))
            return
        uri = opts.uri or ""
        check_reachable(uri, default_port=19530, timeout=opts.timeout, engine="Milvus")
        with milvus_errors(f"connect to {uri}"):
            self.client = client(uri=uri, token=os.environ.get("MILVUS_TOKEN", ""), timeout=opts.timeout)

    def _search_params(self, k: int) -> dict[str, int]:
        index = self._opts.index
        if index == "HNSW":
            return {"ef": max(self._width or 64, k)}
        if index == "DISKANN":
            return {"search_list": max(self._width or 64, k)}
        if index.startswith("IVF"):
            return {"nprobe": self._width or 8}
        return {}

    def _filter(self, rows: np.ndarray | None) -> str:
        side = shorter_side(rows, len(self.vectors))
        if side is None:
            return ""
        return f"{PK} {'not in' if side[1] else 'in'} [{','.join(map(str, side[0]))}]"

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if k > MAX_LIMIT:
            raise EmbedlabError(f"Milvus returns at most {MAX_LIMIT} results per query", found=f"k={k}")
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        params = {"metric_type": "IP", "params": self._search_params(k)}
        expr = self._filter(rows)
        for start in range(0, len(queries), QUERY_BATCH):
            with milvus_errors(f"search {self._name!r}"):
                found = self.client.search(
                    self._name,
                    data=queries[start : start + QUERY_BATCH],
                    limit=k,
                    filter=expr,
                    search_params=params,
                    output_fields=[PK],  # not the vectors: Milvus Lite returns every field unless told
                )
            for i, hits in enumerate(found):
                for j, hit in enumerate(hits[:k]):
                    positions[start + i, j] = int(hit[PK])
                    scores[start + i, j] = float(hit["distance"])
        return scores, positions

    def _pointer(self) -> dict[str, Any]:
        return {"uri": self._opts.uri, "collection": self._name, "dimension": self.vectors.shape[1]}

    def _drop(self) -> None:
        with milvus_errors(f"drop collection {self._name!r}"):
            self.client.drop_collection(self._name)

    def _close_store(self) -> None:
        with milvus_errors("flush the Lite store"):
            self.client.flush(self._name)
        self.client.close()
        if self._store is not None:
            self._release(self._store.parent)  # a closed store is a consistent one

    def _reopen_store(self) -> None:
        self._connect(self._store)
        with milvus_errors("reload the Lite store"):
            self.client.load_collection(self._name)

    @staticmethod
    def _release(folder: Path) -> None:
        """Stop Milvus Lite's in-process server for the store under ``folder`` (it holds the files open)."""
        from milvus_lite.server_manager import server_manager_instance

        for store in (folder / "milvus.db", folder):
            server_manager_instance.release_server(str(store))

    def _opened(self, rows: int, dim: int) -> None:
        self._check_collection(rows, dim)
        opts = self._opts
        self._width = int(opts.ef_search or opts.nprobe or 0)

    def _check_collection(self, n: int, dim: int) -> None:
        with milvus_errors(f"open collection {self._name!r}"):
            if not self.client.has_collection(self._name):
                raise EmbedlabError(
                    f"the Milvus collection {self._name!r} does not exist",
                    found=self._opts.uri or "the Lite store",
                    hint="it was dropped or the server was reset; rebuild the index",
                )
            described = self.client.describe_collection(self._name)
            self.client.load_collection(self._name)
            rows = self.client.get_collection_stats(self._name).get("row_count")
        vec = next(f for f in described["fields"] if f["name"] == VEC)
        props = described.get("properties") or {}
        stored = {"dimension": vec["params"].get("dim"), "rows": rows, "fingerprint": props.get("embedlab.fingerprint")}
        expected = {"dimension": dim, "rows": n, "fingerprint": self._opts.fingerprint}
        check_stored("Milvus", repr(self._name), stored=stored, expected=expected)

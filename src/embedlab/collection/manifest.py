"""A generation's ``manifest.json``: what was indexed, with what, and the checksums to trust it.

Read at the boundary with pydantic (``extra="forbid"``): a manifest from another format
version, or one that does not validate, is a clear error naming the file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.atomic import atomic_write_text
from embedlab.errors import EmbedlabError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Chunking(_Frozen):
    max_tokens: int = Field(gt=0)
    overlap: int = Field(ge=0)
    counter: Literal["words", "model tokenizer"]


class Counts(_Frozen):
    files: int = Field(ge=0)
    pages: int = Field(ge=0)
    chunks: int = Field(ge=0)
    skipped: int = Field(ge=0)


class VectorFile(_Frozen):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)
    rows: int = Field(ge=0)
    dim: int = Field(gt=0)
    dtype: Literal["float32"] = "float32"


class DenseIndexInfo(_Frozen):
    """How dense search runs: exact below ``threshold`` chunks, HNSW at or above it.

    For HNSW, ``recall_at_10`` is measured at build time against exact search, with
    ``recall_queries`` chunk vectors of the collection as queries (see ``vectors.py``)."""

    kind: Literal["exact", "faiss-hnsw"]
    threshold: int = Field(gt=0)
    file: str | None = None
    params: dict[str, int] = Field(default_factory=dict)
    recall_at_10: float | None = None
    recall_queries: int | None = None
    recall_target: float | None = None
    build_seconds: float | None = None


class LexicalInfo(_Frozen):
    kind: Literal["bm25"] = "bm25"
    folder: str | None  # None when the collection has no chunks
    k1: float
    b: float
    method: str
    stemmer: str
    stopwords: str


class Manifest(_Frozen):
    format_version: int
    name: str
    generation: int = Field(gt=0)
    source_folder: str
    model: str  # the model spec's short name, for people
    model_spec: dict[str, Any]  # enough to build the encoder again
    encoder: dict[str, Any]  # the encoder fingerprint (Fingerprint.as_dict())
    dim: int = Field(gt=0)
    metric: Literal["cosine", "inner_product"]
    chunking: Chunking
    counts: Counts
    next_chunk_id: int = Field(gt=0)  # ids are never reused, so a stored id names one chunk forever
    vectors: VectorFile
    index: DenseIndexInfo
    lexical: LexicalInfo
    created: str
    updated: str
    versions: dict[str, str]


def write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest.model_dump(), indent=2, sort_keys=True) + "\n")


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbedlabError("collection generation has no manifest", path=path,
                            hint="rebuild with `embedlab index build --replace`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EmbedlabError(f"cannot read the collection manifest ({err})", path=path) from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise EmbedlabError("unsupported collection format", path=path, found=f"format_version {version!r}",
                            expected=f"format_version {FORMAT_VERSION}",
                            hint="rebuild it with this embedlab: `embedlab index build --replace`")
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EmbedlabError(f"invalid collection manifest: {where}: {first['msg']}", path=path) from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

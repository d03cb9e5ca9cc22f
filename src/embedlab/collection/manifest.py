"""A generation's ``manifest.json``: what was indexed, with what, and the checksums to trust it.

Read at the boundary with pydantic (``extra="forbid"``): a manifest from another format
version, or one that does not validate, is a clear error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.atomic import atomic_write_text
from embedlab.data.library import DEFAULT_MAX_CHUNKS, DEFAULT_MAX_PAGES, DEFAULT_MAX_TEXT_BYTES, LibraryRules
from embedlab.errors import EmbedlabError
from embedlab.index.base import IndexInfo

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Chunking(_Frozen):
    """How chunks were cut; ``cleaning`` names the text clean-up (:data:`embedlab.data.clean.CLEANING`):
    manifests written before it existed chunked the page text as extracted ("none"), and an update
    of such a collection reads every file again."""

    max_tokens: int = Field(gt=0)
    overlap: int = Field(ge=0)
    counter: Literal["words", "model tokenizer"]
    cleaning: Literal["none", "clean-1"] = "none"


class LibraryReading(_Frozen):
    """How the library folder is read (:class:`~embedlab.data.library.LibraryRules`), kept so that every
    update reads it as the build did; manifests written before these rules existed get the defaults."""

    follow_links: bool = False
    max_pages: int = Field(default=DEFAULT_MAX_PAGES, gt=0)
    max_text_bytes: int = Field(default=DEFAULT_MAX_TEXT_BYTES, gt=0)
    max_chunks: int = Field(default=DEFAULT_MAX_CHUNKS, gt=0)
    exclude: tuple[str, ...] = ()  # --exclude globs (.embedlabignore is read again on every update)

    @classmethod
    def of(cls, rules: LibraryRules) -> LibraryReading:
        return cls(
            follow_links=rules.follow_links,
            max_pages=rules.max_pages,
            max_text_bytes=rules.max_text_bytes,
            max_chunks=rules.max_chunks,
            exclude=rules.exclude,
        )

    def rules(self) -> LibraryRules:
        return LibraryRules(
            follow_links=self.follow_links,
            max_pages=self.max_pages,
            max_text_bytes=self.max_text_bytes,
            max_chunks=self.max_chunks,
            exclude=self.exclude,
        )


class ImageReading(_Frozen):
    """An image collection (``index build --images``): each image file is one document, decoded and
    limited as :mod:`embedlab.data.images` says; the limits are kept so that updates read alike."""

    max_bytes: int = Field(gt=0)  # per file, checked before it is read
    max_pixels: int = Field(gt=0)  # per image, from the header before decoding (decompression bombs)
    decoding: str  # embedlab.data.images.DECODING when it was built


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


class DenseIndexInfo(IndexInfo):
    """The collection's vector index (:class:`~embedlab.index.base.IndexInfo`: kind, file and its
    SHA-256, parameters, recall@10 measured at build time for approximate kinds), and the
    ``threshold``: below that many chunks a collection is searched exactly (see ``vectors.py``),
    at or above it with the ``ann`` kind and its options."""

    threshold: int = Field(gt=0)
    ann: str = "faiss-hnsw"  # the kind built at or above the threshold (`index build --index KIND`)
    ann_options: dict[str, bool | int | float | str] = Field(default_factory=dict)  # its options, kept for updates


class LexicalInfo(_Frozen):
    kind: Literal["bm25"] = "bm25"
    folder: str | None  # None when the collection has no chunks
    k1: float
    b: float
    method: str
    stemmer: str
    stopwords: str


class CorpusDrift(_Frozen):
    """The chunks an update added against the previous generation's: an MMD two-sample test on
    their embeddings (:func:`embedlab.monitor.drift.mmd_test`), so ``monitor check`` can alert when
    the library moves away from what the model was chosen on."""

    statistic: float
    p_value: float = Field(gt=0, le=1)
    n_reference: int  # previous generation's vectors in the test (subsampled)
    n_live: int  # added chunks in the test (subsampled)
    chunks_added: int
    previous_generation: int
    method: str


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
    library: LibraryReading = Field(default_factory=LibraryReading)
    counts: Counts
    next_chunk_id: int = Field(gt=0)  # ids are never reused, so a stored id names one chunk forever
    vectors: VectorFile
    index: DenseIndexInfo
    lexical: LexicalInfo
    created: str
    updated: str
    versions: dict[str, str]
    corpus_drift: CorpusDrift | None = None  # an update that added >= MIN_DRIFT_CHUNKS chunks
    images: ImageReading | None = None  # set: an image collection (one image per document, no chunking)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    atomic_write_text(folder / MANIFEST, json.dumps(manifest.model_dump(), indent=2, sort_keys=True) + "\n")


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbedlabError(
            "collection generation has no manifest", path=path, hint="rebuild with `embedlab index build --replace`"
        ) from None
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad UTF-8, bad JSON, a 5000-digit int
        raise EmbedlabError(
            f"cannot read the collection manifest ({type(err).__name__}: {err})",
            path=path,
            expected="the JSON manifest written by `embedlab index build`",
            hint="the file is damaged; `embedlab index build --replace` rebuilds the collection",
        ) from None
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise EmbedlabError(
            "unsupported collection format",
            path=path,
            found=f"format_version {version!r}",
            expected=f"format_version {FORMAT_VERSION}",
            hint="rebuild it with this embedlab: `embedlab index build --replace`",
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EmbedlabError(
            f"invalid collection manifest: {where}: {first['msg']}",
            path=path,
            hint="the file is damaged; `embedlab index build --replace` rebuilds the collection",
        ) from None

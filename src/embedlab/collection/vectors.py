"""Chunk vectors on disk (``vectors.npy``, float32, row i = i-th smallest chunk id) and the
collection's choice of vector index.

Persistence is this module's; search is the common index layer's (:mod:`embedlab.index`).
Below ``threshold`` chunks a collection is searched exactly (``exact``); at or above it an
HNSW graph (``faiss-hnsw``) is built, its efSearch tuned until recall@10 against exact search
reaches 0.95 (measured at build time on a seeded sample of the chunk vectors, stored in the
manifest), and saved as ``hnsw.faiss`` with its SHA-256; ``index build --index KIND[:options]``
builds another registered kind instead (``milvus``, ``chroma``: their own store per generation).
A path filter is passed to the index as rows (exact over those rows when they are few).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from embedlab.collection.manifest import DenseIndexInfo
from embedlab.errors import EmbedlabError
from embedlab.index import INDEXES, VectorIndex, build_index, load_index

VECTORS = "vectors.npy"
ANN_THRESHOLD = 50_000
_COPY_BLOCK = 65_536


def write_vectors(
    path: Path, *, dim: int, kept_from: np.ndarray | None, kept_rows: np.ndarray, new_part: Path | None, new_count: int
) -> None:
    """``vectors.npy`` = the kept rows of the previous matrix, then the new rows (raw float32 in ``new_part``)."""
    total = len(kept_rows) + new_count
    if total == 0:  # a zero-length file cannot be memory-mapped
        np.save(path, np.zeros((0, dim), dtype=np.float32))
        return
    if (len(kept_rows) and kept_from is None) or (new_count and new_part is None):
        raise ValueError("rows to write without the matrix or file that holds them")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, dim))
    if kept_from is not None:
        for start in range(0, len(kept_rows), _COPY_BLOCK):
            rows = kept_rows[start : start + _COPY_BLOCK]
            out[start : start + len(rows)] = kept_from[rows]
    if new_count and new_part is not None:
        new = np.memmap(new_part, dtype=np.float32, mode="r", shape=(new_count, dim))
        for start in range(0, new_count, _COPY_BLOCK):
            block = new[start : start + _COPY_BLOCK]
            out[len(kept_rows) + start : len(kept_rows) + start + len(block)] = block
        del new
    out.flush()
    del out


def load_vectors(path: Path) -> np.ndarray:
    """Memory-mapped, read-only (the OS pages it in; a 1M x 384 matrix does not need 1.5 GB up front)."""
    try:
        try:
            return np.load(path, mmap_mode="r")
        except ValueError:  # an empty matrix cannot be mapped
            return np.load(path)
    except (ValueError, OSError, EOFError) as err:  # a damaged header, a pickle, a truncated file
        raise EmbedlabError(
            f"cannot read the vector file ({type(err).__name__}: {err})",
            path=path,
            expected="a float32 .npy matrix written by `embedlab index build`",
            hint="the file is damaged; `embedlab index build --replace` rebuilds the collection",
        ) from None


AnnChoice = tuple[str, dict[str, bool | int | float | str]]


def ann_choice(text: str | None, *, fingerprint: str) -> AnnChoice:
    """``KIND[:key=value,...]`` (``index build --index``; None: ``faiss-hnsw``) -> the kind and its
    options as given, validated (one line, "Did you mean", on a mistake).  A kind that stores the
    vectors elsewhere (``milvus``, ``chroma``) also gets the encoder ``fingerprint`` (the
    embedding cache's space id of the documents), which it keeps with its store and checks on load."""
    if text is None:
        return "faiss-hnsw", {}
    name, _, rest = text.partition(":")
    kind = INDEXES.get(name.strip())
    values: dict[str, object] = {}
    for item in filter(str.strip, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise EmbedlabError(f"cannot read index option {item!r} in {text!r}", expected="KIND:key=value,...")
        values[key.strip()] = value.strip()
    options = kind.validate_options(values).model_dump(include=set(values))
    if "fingerprint" in kind.Options.model_fields:
        options["fingerprint"] = fingerprint
    return kind.kind, options


def build_dense_index(
    vectors: np.ndarray,
    folder: Path,
    *,
    threshold: int,
    ann: str = "faiss-hnsw",
    ann_options: Mapping[str, bool | int | float | str] | None = None,
) -> DenseIndexInfo:
    """Exact below ``threshold`` rows; else build, measure and save (in ``folder``) an ``ann``
    index (default an HNSW graph searched exactly for small path filters)."""
    chosen = dict(ann_options or {})
    if len(vectors) < threshold:
        return DenseIndexInfo(kind="exact", threshold=threshold, ann=ann, ann_options=chosen)
    options = {"exact_below": threshold, **chosen} if ann == "faiss-hnsw" else chosen
    info = build_index(ann, vectors, options=options).save(folder)
    return DenseIndexInfo(threshold=threshold, ann=ann, ann_options=chosen, **info.model_dump())


def open_dense_index(vectors: np.ndarray, info: DenseIndexInfo, folder: Path) -> VectorIndex:
    """The generation's index over its (memory-mapped) vectors; rows are ordered by chunk id."""
    if not len(vectors):
        return build_index("exact", vectors)
    return load_index(folder, info, vectors)

"""The output of ``embedlab encode``: Parquet shards of (id, vector) and a manifest.

Layout of ``OUT/``::

    manifest.json            what made the vectors and which shards are finished
    shard-00000.parquet      rows [0, shard_rows) of the corpus: id (string), vector (float32[dim])
    shard-00001.parquet      ...

Shard ``i`` always holds corpus rows ``[i * shard_rows, (i + 1) * shard_rows)`` whichever engine
wrote it, so a run started with ``--engine ray`` can be resumed with ``--engine local`` and the
reverse.  Each shard is written atomically (temporary file, fsync, rename) and then recorded in
the manifest with its row count and SHA-256 (also written atomically), so an interrupted run
leaves only complete shards, and a re-run re-encodes exactly the shards that are not both listed
and intact on disk.  A manifest made by another encoder (fingerprint), another corpus (SHA-256) or
another shard size is never resumed into: the run stops with one line naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from embedlab.atomic import atomic_write_bytes, atomic_write_text
from embedlab.checksum import file_sha256
from embedlab.errors import EmbedlabError

FORMAT = 1
MANIFEST = "manifest.json"


class ShardEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    file: str
    start: int
    rows: int
    sha256: str


class ShardManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    model: str
    encoder: dict[str, Any]  # the document-role fingerprint (the cache space's description)
    dim: int
    corpus: dict[str, Any]  # path, sha256, documents
    shard_rows: int
    shards: list[ShardEntry]
    complete: bool = False
    totals: dict[str, int]  # documents and shards written so far


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def shard_ranges(documents: int, shard_rows: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` covering ``range(documents)`` in slices of ``shard_rows``."""
    return [(s, min(s + shard_rows, documents)) for s in range(0, documents, shard_rows)]


def write_shard(folder: Path, index: int, start: int, ids: list[str], vectors: np.ndarray) -> ShardEntry:
    """One shard, atomically; returns its manifest entry (SHA-256 of the bytes written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({"id": pa.array(ids, type=pa.string()), "vector": column})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    name = shard_name(index)
    atomic_write_bytes(folder / name, sink.getvalue().to_pybytes())
    return ShardEntry(index=index, file=name, start=start, rows=len(ids), sha256=file_sha256(folder / name))


def load_manifest(folder: Path) -> ShardManifest | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return ShardManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValidationError, ValueError) as err:
        raise EmbedlabError(
            f"unreadable encode manifest ({str(err).splitlines()[0]})",
            path=path,
            hint="remove the folder (or choose another --out) to encode from scratch",
        ) from None


def save_manifest(folder: Path, manifest: ShardManifest) -> None:
    manifest.shards.sort(key=lambda e: e.index)
    manifest.totals = {"documents": sum(e.rows for e in manifest.shards), "shards": len(manifest.shards)}
    atomic_write_text(folder / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def check_resumable(old: ShardManifest, new: ShardManifest, *, folder: Path) -> None:
    """An existing manifest must describe the same work; otherwise one line naming what differs."""
    for field in ("encoder", "dim", "shard_rows"):
        if getattr(old, field) != getattr(new, field):
            raise _mismatch(folder, field, getattr(old, field), getattr(new, field))
    for key in ("sha256", "documents"):
        if old.corpus.get(key) != new.corpus.get(key):
            raise _mismatch(folder, f"corpus.{key}", old.corpus.get(key), new.corpus.get(key))


def _mismatch(folder: Path, field: str, old: object, new: object) -> EmbedlabError:
    return EmbedlabError(
        f"the output folder holds vectors of another run ({field} differs)",
        path=folder / MANIFEST,
        found=str(old)[:120],
        expected=str(new)[:120],
        hint="choose another --out folder, or remove this one to encode from scratch",
    )


def intact_shards(folder: Path, manifest: ShardManifest) -> list[ShardEntry]:
    """The manifest's shards whose file is on disk with the recorded SHA-256 (others: re-encode)."""
    return [e for e in manifest.shards if (folder / e.file).is_file() and file_sha256(folder / e.file) == e.sha256]


def read_vectors(folder: Path) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a complete output folder, in corpus order, checksums verified."""
    import pyarrow.parquet as pq

    manifest = load_manifest(folder)
    if manifest is None or not manifest.complete:
        raise EmbedlabError(
            "no complete encode output here", path=folder, hint="run `embedlab encode` (again) to finish it"
        )
    good = {e.index for e in intact_shards(folder, manifest)}
    bad = [e.file for e in manifest.shards if e.index not in good]
    if bad:
        raise EmbedlabError(
            "shard missing or changed since it was written",
            path=folder / bad[0],
            hint="re-run `embedlab encode` with the same options: it re-encodes only that shard",
        )
    ids: list[str] = []
    parts: list[np.ndarray] = []
    for entry in manifest.shards:
        table = pq.read_table(folder / entry.file)
        ids.extend(table.column("id").to_pylist())
        flat = table.column("vector").combine_chunks().flatten().to_numpy()
        parts.append(np.asarray(flat, dtype=np.float32).reshape(-1, manifest.dim))
    return ids, np.concatenate(parts) if parts else np.zeros((0, manifest.dim), dtype=np.float32)

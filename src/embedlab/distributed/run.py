"""``embedlab encode``: a corpus -> Parquet vector shards + manifest, locally or on Ray.

Both engines write the same layout (:mod:`embedlab.distributed.shards`) from the same encoder
(the model registry) through the same embedding cache, so their vectors agree (to float32
rounding of differently composed batches) and either engine resumes the other's run.  The model
is loaded once on the driver as well: it checks the name before any cluster work and gives the
fingerprint and dimension the manifest records.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab import settings
from embedlab.cache.store import EmbeddingCache
from embedlab.distributed.corpus import read_corpus, resolve_corpus
from embedlab.distributed.ray_engine import Engine, RayEngine
from embedlab.distributed.shards import (
    ShardManifest,
    check_resumable,
    intact_shards,
    load_manifest,
    save_manifest,
    shard_ranges,
    write_shard,
)
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeSpec:
    model: ModelSpec
    corpus: str
    out: Path
    engine: Engine = "local"
    ray_address: str | None = None  # None: an in-process Ray
    actors: int = 1
    num_gpus_per_actor: float = 0.0
    shard_rows: int = 10_000
    use_cache: bool = True
    cache_dir: Path | None = None

    @property
    def ray(self) -> RayEngine:
        return RayEngine(self.ray_address, self.actors, self.num_gpus_per_actor)


@dataclass(frozen=True)
class EncodeResult:
    out: Path
    documents: int
    shards: int
    shards_encoded: int  # this run; the others were finished before and left alone
    documents_encoded: int  # rows of the shards this run wrote (cache hits included)
    seconds: float  # encoding and writing, after the corpus was read and the model loaded
    engine: Engine

    @property
    def docs_per_second(self) -> float | None:
        return self.documents_encoded / self.seconds if self.documents_encoded and self.seconds > 0 else None


def encode_corpus(spec: EncodeSpec) -> EncodeResult:
    ray_engine = spec.ray  # the Ray options are checked here, before any work
    if spec.shard_rows < 1:
        raise EmbedlabError("invalid encode option", found=f"shard_rows={spec.shard_rows}", expected="shard rows >= 1")
    corpus = read_corpus(resolve_corpus(spec.corpus))
    encoder = load_encoder(spec.model)
    fresh = ShardManifest(
        model=spec.model.name,
        encoder=encoder.fingerprint.for_role("document"),
        dim=encoder.dim,
        corpus={"path": str(corpus.path), "sha256": corpus.sha256, "documents": len(corpus)},
        shard_rows=spec.shard_rows,
        shards=[],
        totals={},
    )
    old = load_manifest(spec.out)
    if old is not None:
        check_resumable(old, fresh, folder=spec.out)
        fresh.shards = intact_shards(spec.out, old)
    manifest = fresh
    done = {e.index for e in manifest.shards}
    ranges = shard_ranges(len(corpus), spec.shard_rows)
    todo = [(i, start, end) for i, (start, end) in enumerate(ranges) if i not in done]
    log.info("encode: %d documents, %d shard(s), %d to encode", len(corpus), len(ranges), len(todo))
    spec.out.mkdir(parents=True, exist_ok=True)
    save_manifest(spec.out, manifest)

    def finished(index: int, ids: list[str], vectors: np.ndarray) -> None:
        entry = write_shard(spec.out, index, ranges[index][0], ids, vectors)
        manifest.shards = [e for e in manifest.shards if e.index != index] + [entry]
        save_manifest(spec.out, manifest)

    cache_folder = (spec.cache_dir or settings.cache_dir()) if spec.use_cache else None
    started = time.perf_counter()
    if spec.engine == "ray":
        from embedlab.distributed.ray_engine import encode_shards

        with ray_engine.session():
            encode_shards(
                [(i, corpus.ids[s:e], corpus.texts[s:e]) for i, s, e in todo],
                spec_json=spec.model.model_dump_json(),
                actors=spec.actors,
                batch_size=spec.model.batch_size,
                num_gpus_per_actor=spec.num_gpus_per_actor,
                cache_dir=str(cache_folder) if cache_folder else None,
                on_shard=finished,
            )
    else:
        cache = EmbeddingCache(cache_folder) if cache_folder else None
        try:
            for i, s, e in todo:
                finished(i, corpus.ids[s:e], encoder.encode(corpus.texts[s:e], role="document", cache=cache))
        finally:
            if cache is not None:
                cache.close()
    seconds = time.perf_counter() - started
    manifest.complete = len(manifest.shards) == len(ranges)
    save_manifest(spec.out, manifest)
    return EncodeResult(
        out=spec.out,
        documents=len(corpus),
        shards=len(ranges),
        shards_encoded=len(todo),
        documents_encoded=sum(e - s for _, s, e in todo),
        seconds=seconds,
        engine=spec.engine,
    )

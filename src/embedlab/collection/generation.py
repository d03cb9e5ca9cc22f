"""Writing one generation of a collection: plan, carry over, read and encode, write, switch.

Run by :func:`embedlab.collection.builder.build` and ``update`` under the collection lock.
Files are compared by SHA-256 with the live generation: unchanged files keep their chunks
(ids included) and vectors, new and changed files are read, chunked and encoded (through
the embedding cache, a group of chunks at a time, appended to a raw file so memory stays
bounded), deleted files are dropped.  An unchanged file that could not be read before is
not read again.  Which files are opened and the caps per file (pages, text, chunks) follow
the collection's :class:`~embedlab.data.library.LibraryRules`, the same for every update.
The finished folder is fsynced, renamed and made live by replacing the pointer (see
:mod:`embedlab.collection.layout`); ``crash_point`` marks the moments the crash tests kill
the process at.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from embedlab import __version__, settings
from embedlab.atomic import fsync_dir, fsync_tree, write_error
from embedlab.cache.store import EmbeddingCache
from embedlab.checksum import file_sha256
from embedlab.collection.chunkstore import DB, ChunkStore, ChunkWriter
from embedlab.collection.layout import CollectionDir, crash_point, folder_size, link_tree
from embedlab.collection.lexical import build_lexical
from embedlab.collection.manifest import (
    FORMAT_VERSION,
    Chunking,
    CorpusDrift,
    Counts,
    DenseIndexInfo,
    ImageReading,
    LexicalInfo,
    LibraryReading,
    Manifest,
    VectorFile,
    write_manifest,
)
from embedlab.collection.vectors import VECTORS, build_dense_index, load_vectors, write_vectors
from embedlab.data.chunking import Chunk, TokenCounter, iter_chunks
from embedlab.data.ingest import SUPPORTED_SUFFIXES, Skipped, SourceDocument, read_or_skip
from embedlab.data.library import DEFAULT_RULES, LibraryRules, display_path, file_digest, library_files, over_cap
from embedlab.distributed.ray_engine import RayEngine, RayTextEncoder
from embedlab.encoders.base import Encoder, EncodeStats
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.progress import progress_bar

log = logging.getLogger(__name__)
ENCODE_GROUP = 1024  # new chunks encoded (and appended to disk) at a time
# with --engine ray: chunks per Ray job; each job starts its actors (a model load each), so a group
# must be large enough to pay for that, and small enough that its texts and vectors fit the driver
RAY_GROUP = 50_000


@dataclass(frozen=True)
class BuildReport:
    """What one build or update did."""

    name: str
    generation: int
    path: str  # the live generation folder
    up_to_date: bool  # True: nothing changed, no new generation was written
    files: int
    files_new: int
    files_changed: int
    files_unchanged: int
    files_removed: int
    chunks: int
    chunks_added: int
    chunks_removed: int
    encoded: int  # chunks encoded by the model (not found in the cache)
    cache_hits: int
    skipped: tuple[tuple[str, str], ...]  # (path, reason)
    seconds: float
    index: dict[str, object]
    size_bytes: int
    corpus_drift: dict[str, object] | None = None  # an update's added chunks vs the previous generation


MIN_DRIFT_CHUNKS = 20  # fewer added chunks: no corpus-drift test (its p-value would say little)


def describe_drift(statistic: float, p_value: float, added: int) -> str:
    """``MMD^2 0.0123, p = 0.005 over 120 added chunks``: one phrase for logs and the CLI."""
    return f"MMD^2 {statistic:.4g}, p = {p_value:.3g} over {added} added chunks"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class GenerationJob:
    """One build or update, run under the collection lock."""

    def __init__(
        self,
        cdir: CollectionDir,
        library: Path,
        spec: ModelSpec,
        encoder: Encoder,
        chunking: Chunking,
        counter: TokenCounter,
        threshold: int,
        previous: Manifest | None,
        reuse: Path | None,
        cache_dir: str | Path | None,
        use_cache: bool,
        show_progress: bool,
        *,
        rules: LibraryRules = DEFAULT_RULES,
        ann: tuple[str, dict[str, bool | int | float | str]] | None = None,
        engine: RayEngine | None = None,
    ) -> None:
        self.cdir, self.library, self.spec, self.encoder = cdir, library, spec, encoder
        # None: encode in this process; else on Ray actors, the cache looked up and filled here
        self.bulk = RayTextEncoder(engine, spec.model_dump_json(), spec.batch_size) if engine is not None else None
        self.group = ENCODE_GROUP if engine is None else RAY_GROUP
        self.rules = rules
        self.ann = ann or ("faiss-hnsw", {})  # the approximate kind and its options (vectors.build_dense_index)
        self.chunking, self.counter, self.threshold = chunking, counter, threshold
        self.previous, self.reuse = previous, reuse
        self.cache_dir, self.use_cache, self.show_progress = cache_dir, use_cache, show_progress
        self.stats = EncodeStats()
        self.started = time.perf_counter()
        self.old_hashes: dict[str, str] = {}
        self.keep: list[str] = []
        self.indexed: list[str] = []  # files read and chunked in this run
        self.chunks_added = 0
        self.chunks_removed = 0
        self.corpus_drift: CorpusDrift | None = None

    def run(self) -> BuildReport:
        old = ChunkStore(self.reuse / DB) if self.reuse is not None else None
        try:
            self.old_hashes = old.file_hashes() if old is not None else {}
            read, skipped = self._plan(old)
            gone = set(self.old_hashes) - set(self.keep) - {rel for _, rel, _ in read}
            if (
                self.reuse is not None
                and old is not None
                and self.previous is not None
                and not read
                and not gone
                and sorted((p, r) for p, r, _ in skipped) == old.skipped()
            ):
                log.info("collection %s is up to date (generation %d)", self.cdir.name, self.previous.generation)
                return self._report(
                    self.reuse,
                    self.previous.generation,
                    True,
                    self.previous.counts.files,
                    self.previous.counts.chunks,
                    skipped,
                    self.previous.index.model_dump(),
                )
            number = self.previous.generation + 1 if self.previous is not None else 1
            work = self.cdir.temporary(number)
            work.mkdir(parents=True)
            try:
                manifest = self._write(work, number, old, read, skipped)
            except BaseException as err:
                shutil.rmtree(work, ignore_errors=True)
                full = write_error(err, work.parent)  # a full disk: one line with the folder and the free space
                if full is not None and full.code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                    raise full from None
                raise
        finally:
            if old is not None:
                old.close()
            if self.bulk is not None:
                self.bulk.close()
        return self._publish(work, number, manifest, skipped)

    # ------------------------------------------------------------------ planning

    def _plan(self, old: ChunkStore | None) -> tuple[list[tuple[Path, str, str]], list[tuple[str, str, str]]]:
        """Fill ``self.keep`` (unchanged files); return the files to read and those left out, each with
        its hash.  An unchanged file that could not be read before is not read again."""
        old_skipped = old.skipped_hashes() if old is not None else {}
        read: list[tuple[Path, str, str]] = []
        skipped: list[tuple[str, str, str]] = []
        for entry in library_files(self.library, rules=self.rules):
            if isinstance(entry, Skipped):
                skipped.append((self._relative(entry.path), entry.reason, ""))
                continue
            rel = self._relative(entry)
            try:
                digest = file_digest(entry, root=self.library, rules=self.rules)
            except EmbedlabError as err:  # changed since it was listed (now a FIFO, gone, unreadable)
                skipped.append((rel, err.message, ""))
                continue
            if self.old_hashes.get(rel) == digest and not self._recleaned():
                self.keep.append(rel)
            elif rel in old_skipped and old_skipped[rel][0] == digest:
                skipped.append((rel, old_skipped[rel][1], digest))
            elif (reason := self._unsupported(entry)) is not None:
                skipped.append((rel, reason, digest))
            else:
                read.append((entry, rel, digest))
        return read, skipped

    def _recleaned(self) -> bool:
        """True when the live generation's chunks were cut from text cleaned otherwise: all files are read again."""
        return self.previous is not None and self.previous.chunking.cleaning != self.chunking.cleaning

    def _relative(self, path: Path) -> str:
        """The document id; printable even for a name that is not UTF-8 (those are only ever skipped)."""
        return display_path(path, self.library)

    # ------------------------------------------------------------------ writing a generation

    def _write(
        self,
        work: Path,
        number: int,
        old: ChunkStore | None,
        read: list[tuple[Path, str, str]],
        skipped: list[tuple[str, str, str]],
    ) -> Manifest:
        writer = ChunkWriter(work / DB)
        old_ids = old.ids() if old is not None else np.zeros(0, np.int64)
        if old is not None and self.keep:
            writer.carry_over(old.path, self.keep)
        kept_ids = writer.ids()
        kept_rows = np.flatnonzero(np.isin(old_ids, kept_ids))
        if len(kept_rows) != len(kept_ids):
            raise RuntimeError("carried-over chunks do not match the previous generation's rows")
        next_id = self.previous.next_chunk_id if self.previous is not None else 1
        cache = EmbeddingCache(self.cache_dir or settings.cache_dir()) if self.use_cache else None
        part = work / "new.f32"
        new_count = 0
        pending: list[str] = []
        try:
            with (
                part.open("wb") as sink,
                progress_bar(total=len(read), desc="index", unit="files", enabled=self.show_progress) as bar,
            ):
                for path, rel, digest in read:
                    got = self._read(path, rel, digest)
                    bar.update(1)
                    if isinstance(got, str):
                        skipped.append((rel, got, digest))
                        continue
                    item, chunks = got
                    ids = list(range(next_id, next_id + len(chunks)))
                    next_id += len(chunks)
                    writer.add_file(item, chunks, ids)
                    self.indexed.append(rel)
                    pending.extend(self._inputs(item, chunks))
                    if len(pending) >= self.group:
                        new_count += self._encode(pending, sink, cache)
                        pending = []
                new_count += self._encode(pending, sink, cache)
        finally:
            if cache is not None:
                cache.close()
        crash_point("encoded")
        self.chunks_added, self.chunks_removed = new_count, len(old_ids) - len(kept_rows)
        writer.add_skipped(skipped)
        files, pages, chunk_count, skipped_count = writer.counts()
        if self.previous is None and chunk_count == 0:
            writer.close()
            raise EmbedlabError(
                "nothing to index",
                path=self.library,
                found=f"{files} {self.counted}, {skipped_count} skipped",
                expected=self.wanted,
            )
        if self.reuse is not None and self.previous is not None and new_count == 0 and len(kept_rows) == len(old_ids):
            writer.close()
            link_tree(self.reuse, work, skip={DB, "manifest.json"})  # same chunks: share the files
            index_info, lexical_info = self.previous.index, self.previous.lexical
        else:
            kept_from = load_vectors(self.reuse / VECTORS) if self.reuse is not None else None
            write_vectors(
                work / VECTORS,
                dim=self.encoder.dim,
                kept_from=kept_from,
                kept_rows=kept_rows,
                new_part=part,
                new_count=new_count,
            )
            self.corpus_drift = self._corpus_drift(kept_from, work / VECTORS, new_count)
            del kept_from
            lexical_info = build_lexical(writer.texts(), work)
            writer.close()
            index_info = build_dense_index(
                load_vectors(work / VECTORS), work, threshold=self.threshold, ann=self.ann[0], ann_options=self.ann[1]
            )
        part.unlink(missing_ok=True)
        counts = Counts(files=files, pages=pages, chunks=chunk_count, skipped=skipped_count)
        manifest = self._manifest(work, number, counts, next_id, index_info, lexical_info)
        write_manifest(work, manifest)
        fsync_tree(work)
        crash_point("written")
        return manifest

    def _corpus_drift(self, old: np.ndarray | None, written: Path, new_count: int) -> CorpusDrift | None:
        """The added chunks' embeddings against the previous generation's (all its rows, the ones
        this update removed included: "what the collection was"); None for a first build or an
        update that added fewer than ``MIN_DRIFT_CHUNKS`` chunks (too few for a test worth reading)."""
        if self.previous is None or old is None or len(old) < MIN_DRIFT_CHUNKS or new_count < MIN_DRIFT_CHUNKS:
            return None
        from embedlab.monitor.drift import mmd_test

        new = load_vectors(written)[-new_count:]
        test = mmd_test(old, new, seed=self.previous.generation)  # seeded: the same update, the same p-value
        log.info("corpus drift of the added chunks: %s", describe_drift(test.statistic, test.p_value, new_count))
        return CorpusDrift(
            statistic=test.statistic,
            p_value=test.p_value,
            n_reference=test.n_reference,
            n_live=test.n_live,
            chunks_added=new_count,
            previous_generation=self.previous.generation,
            method=test.method,
        )

    def _encode(self, inputs: list, sink, cache: EmbeddingCache | None) -> int:
        if not inputs:
            return 0
        vectors = self._embed(inputs, cache)
        sink.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
        crash_point("group")
        return len(inputs)

    # ------------------------------------------------------------------ what a file becomes (images: images.py)

    wanted = "PDF, text, Markdown or HTML files with text (" + ", ".join(SUPPORTED_SUFFIXES) + ")"
    counted = "readable files with text"  # what "nothing to index" counts

    def _unsupported(self, entry: Path) -> str | None:
        """Why a listed file is not read at all (its type), or None."""
        if entry.suffix.lower() in SUPPORTED_SUFFIXES:
            return None
        return _reason(read_or_skip(entry, root=self.library, rules=self.rules))

    def _read(self, path: Path, rel: str, digest: str) -> tuple[SourceDocument, list[Chunk]] | str:
        """A new or changed file's document and chunks (``digest``: its SHA-256 when listed), or the
        one-line reason it is skipped."""
        item = read_or_skip(path, root=self.library, rules=self.rules)
        if isinstance(item, Skipped):
            return item.reason
        cap = self.rules.max_chunks
        chunks = list(
            itertools.islice(
                iter_chunks(
                    item,
                    max_tokens=self.chunking.max_tokens,
                    overlap=self.chunking.overlap,
                    count_tokens=self.counter,
                ),
                cap + 1,
            )
        )
        if len(chunks) > cap:
            reason = over_cap(f"more than {cap} chunks", "max_chunks", f"{cap} chunks").one_line()
            log.info("skipped %s: %s", rel, reason)
            return reason
        if not chunks:
            return "no text to index"
        return item, chunks

    def _inputs(self, item: SourceDocument, chunks: list[Chunk]) -> list:
        """What the encoder gets for the file's chunks (their texts)."""
        return [c.text for c in chunks]

    def _embed(self, inputs: list, cache: EmbeddingCache | None) -> np.ndarray:
        return self.encoder.encode(inputs, role="document", cache=cache, stats=self.stats, bulk=self.bulk)

    def _images(self) -> ImageReading | None:
        """An image collection's decoding limits, for its manifest (None: documents)."""
        return None

    def _manifest(
        self,
        work: Path,
        number: int,
        counts: Counts,
        next_id: int,
        index_info: DenseIndexInfo,
        lexical_info: LexicalInfo,
    ) -> Manifest:
        now = _now()
        fingerprint = self.encoder.fingerprint
        versions = {"embedlab": __version__, "numpy": np.__version__, "bm25s": version("bm25s")}
        if index_info.kind != "exact":
            versions["faiss"] = version("faiss-cpu")
        return Manifest(
            format_version=FORMAT_VERSION,
            name=self.cdir.name,
            generation=number,
            source_folder=str(self.library.resolve()),
            model=self.spec.name,
            model_spec=self.spec.model_dump(exclude_defaults=True),
            encoder=fingerprint.as_dict(),
            dim=self.encoder.dim,
            metric="cosine" if fingerprint.normalize else "inner_product",
            chunking=self.chunking,
            library=LibraryReading.of(self.rules),
            counts=counts,
            next_chunk_id=next_id,
            vectors=VectorFile(
                file=VECTORS,
                sha256=file_sha256(work / VECTORS),
                bytes=(work / VECTORS).stat().st_size,
                rows=counts.chunks,
                dim=self.encoder.dim,
            ),
            index=index_info,
            lexical=lexical_info,
            created=self.previous.created if self.previous is not None and self.reuse is not None else now,
            updated=now,
            versions=versions,
            corpus_drift=self.corpus_drift,
            images=self._images(),
        )

    # ------------------------------------------------------------------ switching

    def _publish(self, work: Path, number: int, manifest: Manifest, skipped: list[tuple[str, str, str]]) -> BuildReport:
        target = self.cdir.generation(number)
        os.rename(work, target)
        fsync_dir(self.cdir.path)
        crash_point("renamed")
        self.cdir.switch(target)
        crash_point("switched")
        self.cdir.remove_stale()  # the previous generation
        log.info("collection %s: generation %d is live (%d chunks)", self.cdir.name, number, manifest.counts.chunks)
        return self._report(
            target,
            manifest.generation,
            False,
            manifest.counts.files,
            manifest.counts.chunks,
            skipped,
            manifest.index.model_dump(),
        )

    def _report(
        self,
        target: Path,
        number: int,
        up_to_date: bool,
        files: int,
        chunks: int,
        skipped: list[tuple[str, str, str]],
        index: dict[str, object],
    ) -> BuildReport:
        changed = len([rel for rel in self.indexed if rel in self.old_hashes])
        return BuildReport(
            name=self.cdir.name,
            generation=number,
            path=str(target),
            up_to_date=up_to_date,
            files=files,
            files_new=len(self.indexed) - changed,
            files_changed=changed,
            files_unchanged=len(self.keep),
            files_removed=len(self.old_hashes) - len(self.keep) - changed,
            chunks=chunks,
            chunks_added=self.chunks_added,
            chunks_removed=self.chunks_removed,
            encoded=self.stats.encoded,
            cache_hits=self.stats.cache_hits,
            skipped=tuple(sorted((p, r) for p, r, _ in skipped)),
            seconds=round(time.perf_counter() - self.started, 3),
            index=index,
            size_bytes=folder_size(target),
            corpus_drift=None if self.corpus_drift is None else self.corpus_drift.model_dump(),
        )


def _reason(item: object) -> str:
    return item.reason if isinstance(item, Skipped) else "unsupported file"

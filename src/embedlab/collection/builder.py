"""``build`` and ``update``: read a library folder into a new generation of a collection.

Both write a complete generation (see :mod:`embedlab.collection.layout`): an update
hashes every file (SHA-256 of the bytes), carries unchanged files' chunks and vectors
over from the live generation, reads, chunks and encodes only new or changed files, and
drops the chunks of deleted ones.  Encoding goes through the embedding cache, so work
finished before a crash is not done again.  Chunk ids are never reused.  This module
checks the options and holds the lock; :mod:`embedlab.collection.generation` does the work.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Literal

from embedlab.cache.store import space_id
from embedlab.checksum import file_sha256
from embedlab.collection.generation import BuildReport, GenerationJob
from embedlab.collection.images import ImageGenerationJob, check_image_model, image_limits
from embedlab.collection.layout import CollectionDir
from embedlab.collection.manifest import Chunking, read_manifest
from embedlab.collection.vectors import ANN_THRESHOLD, VECTORS, ann_choice
from embedlab.data.chunking import TokenCounter, check_chunk_options, count_words, tokenizer_counter
from embedlab.data.clean import CLEANING
from embedlab.data.images import ImageLimits
from embedlab.data.library import DEFAULT_RULES, LibraryRules, library_files
from embedlab.distributed.ray_engine import RayEngine
from embedlab.encoders.base import Encoder
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError

log = logging.getLogger(__name__)
__all__ = ["BuildReport", "build", "update"]


def _token_counter(
    encoder: Encoder, wanted: str | None = None
) -> tuple[TokenCounter, Literal["words", "model tokenizer"]]:
    """Chunks are budgeted in the model's own tokens when the encoder exposes a ``tokenizers`` tokenizer."""
    tokenizer = getattr(encoder, "tokenizer", None)
    if wanted != "words" and tokenizer is not None and hasattr(tokenizer, "to_str"):
        return tokenizer_counter(tokenizer), "model tokenizer"
    if wanted == "model tokenizer":
        raise EmbedlabError("the collection was chunked with the model's tokenizer, which this encoder does not expose")
    return count_words, "words"


def _job(images: ImageLimits | None, *args: Any, **kwargs: Any) -> GenerationJob:
    """The job for a collection of documents, or of images (``images``: its decoding limits)."""
    if images is None:
        return GenerationJob(*args, **kwargs)
    return ImageGenerationJob(*args, limits=images, **kwargs)


def check_engine(engine: RayEngine | None, images: bool) -> None:
    """Ray encodes document collections (an image collection's files are decoded and encoded here)."""
    if engine is not None and images:
        raise EmbedlabError(
            "--engine ray encodes the chunks of document collections; an image collection is encoded in this process",
            hint="leave out --engine ray for an image collection",
        )


def _spec(model_spec: ModelSpec | str) -> ModelSpec:
    return parse_model_spec(model_spec) if isinstance(model_spec, str) else model_spec


def build(
    folder: str | Path,
    name: str,
    *,
    model_spec: ModelSpec | str,
    max_tokens: int = 256,
    overlap: int = 32,
    root: str | Path | None = None,
    replace: bool = False,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    ann_threshold: int = ANN_THRESHOLD,
    rules: LibraryRules = DEFAULT_RULES,
    images: ImageLimits | None = None,
    show_progress: bool = False,
    ann_index: str | None = None,
    engine: RayEngine | None = None,
) -> BuildReport:
    """Index every readable file of ``folder`` into collection ``name`` (a new one, or ``replace=True``).

    ``rules`` say which files are read (links out of the folder only with ``follow_links``)
    and cap pages, text and chunks per file; they are kept in the manifest for updates.
    ``images`` (the decoding limits): an image collection, one image file per document
    (:mod:`embedlab.collection.images`); chunking options do not apply to it.
    ``engine``: encode the new chunks on Ray actors (:mod:`embedlab.distributed.ray_engine`)
    instead of in this process; the same cache, vectors and manifest.
    """
    from embedlab.encoders.registry import load_encoder

    cdir = CollectionDir(name, root=root)
    check_chunk_options(max_tokens, overlap)
    if isinstance(ann_threshold, bool) or not isinstance(ann_threshold, int) or ann_threshold <= 0:
        raise EmbedlabError("invalid approximate-index threshold", found=repr(ann_threshold), expected="a count > 0")
    library = Path(folder).expanduser()
    library_files(library, rules=rules)  # the folder must exist: fail before loading a model
    if cdir.exists() and not replace:
        raise EmbedlabError(
            f"collection {name!r} already exists",
            path=cdir.path,
            hint=f"`embedlab index update {name}` re-reads its folder; "
            "`index build --replace` rebuilds it from scratch",
        )
    spec = _spec(model_spec)
    if spec.index != "exact" or spec.index_options:
        written = f"index={spec.index}" if spec.index != "exact" else f"index_{min(spec.index_options)}"
        raise EmbedlabError(
            f"model option {written} does not apply to collections",
            hint="a collection searches exactly below --ann-threshold chunks and builds HNSW "
            "(or --index KIND) above it",
        )
    ann_choice(ann_index, fingerprint="")  # a mistake in --index fails before the model loads
    check_engine(engine, images is not None)
    encoder = load_encoder(spec)
    ann = ann_choice(ann_index, fingerprint=space_id(encoder.fingerprint.for_role("document")))
    if images is not None:
        check_image_model(encoder, spec.name)
    counter, counter_name = _token_counter(encoder)
    if images is None and max_tokens > encoder.fingerprint.max_length:
        log.warning(
            "chunks of up to %d tokens, but %s reads only %d: the rest of a long chunk is not embedded "
            "(BM25 still sees it); consider --chunk-tokens %d",
            max_tokens,
            spec.name,
            encoder.fingerprint.max_length,
            encoder.fingerprint.max_length,
        )
    chunking = Chunking(max_tokens=max_tokens, overlap=overlap, counter=counter_name, cleaning=CLEANING)
    fresh = not cdir.path.exists()
    try:
        with cdir.locked():
            cdir.remove_stale()
            if cdir.exists() and not replace:  # built by another process meanwhile
                raise EmbedlabError(f"collection {name!r} already exists", path=cdir.path)
            previous = read_manifest(cdir.live()) if cdir.exists() else None
            job = _job(
                images,
                cdir,
                library,
                spec,
                encoder,
                chunking,
                counter,
                ann_threshold,
                previous,
                None,
                cache_dir,
                use_cache,
                show_progress,
                rules=rules,
                ann=ann,
                engine=engine,
            )
            return job.run()
    except EmbedlabError:
        if fresh and [p.name for p in cdir.path.iterdir()] == [".lock"]:
            shutil.rmtree(cdir.path, ignore_errors=True)  # a first build that failed leaves nothing behind
        raise


def update(
    name: str,
    *,
    root: str | Path | None = None,
    folder: str | Path | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    show_progress: bool = False,
    engine: RayEngine | None = None,
) -> BuildReport:
    """Re-read the collection's folder (or ``folder``, when it moved): new and changed files are
    indexed, deleted ones removed, unchanged ones carried over without encoding.  The folder is
    read with the rules the collection was built with (links, caps); ``engine`` as for :func:`build`."""
    from embedlab.collection.collection import check_encoder
    from embedlab.encoders.registry import load_encoder

    cdir = CollectionDir(name, root=root)
    if not cdir.exists():
        raise cdir.unknown()
    with cdir.locked():
        cdir.remove_stale()
        live = cdir.live()
        previous = read_manifest(live)
        check_engine(engine, previous.images is not None)
        library = Path(folder).expanduser() if folder is not None else Path(previous.source_folder)
        library_files(library, rules=previous.library.rules())  # a missing folder is an error, not "all deleted"
        spec = ModelSpec.model_validate(previous.model_spec)
        encoder = load_encoder(spec)
        check_encoder(previous, encoder, name)
        counter, _ = _token_counter(encoder, previous.chunking.counter)
        if file_sha256(live / previous.vectors.file) != previous.vectors.sha256:
            raise EmbedlabError(
                "the live generation's vectors do not match their checksum",
                path=live / VECTORS,
                hint=f"rebuild: `embedlab index build {previous.source_folder} --collection {name} "
                f"--model {previous.model} --replace`",
            )
        job = _job(
            image_limits(previous),
            cdir,
            library,
            spec,
            encoder,
            previous.chunking.model_copy(update={"cleaning": CLEANING}),  # older cleaning: every file re-read
            counter,
            previous.index.threshold,
            previous,
            live,
            cache_dir,
            use_cache,
            show_progress,
            rules=previous.library.rules(),
            ann=(previous.index.ann, previous.index.ann_options),
            engine=engine,
        )
        return job.run()

"""Image collections (``index build --images``): a folder of images indexed through the same generations.

An image collection is a collection like any other (generations, manifest, chunk store,
vectors, atomic switch, ``index update``): what differs is what a file becomes.  Each image
file is one document with one row, whose text is the file's path (so BM25 finds file names
and every hit names its file) and whose vector is the image tower's embedding of the pixels.
The row's file hash is the one the chunk store keeps for every file, and the embedding
cache keys the vector by the sha256 of the image bytes (:mod:`embedlab.encoders.images`),
so a renamed image is not encoded again.

Which files: PNG, JPEG and WebP by suffix; anything else is skipped with one line ("not an
image file").  Each candidate is decoded once with the collection's limits before it is
encoded (:func:`embedlab.data.images.read_image`: byte size before reading, pixel count from
the header before decoding, so a decompression bomb costs nothing; EXIF rotation applied),
and a corrupt, truncated, over-size or bomb file is skipped with the decoder's one line; the
build goes on.  The limits are kept in the manifest (``images``) so an update reads alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from embedlab.cache.store import EmbeddingCache
from embedlab.collection.generation import GenerationJob
from embedlab.collection.manifest import ImageReading, Manifest
from embedlab.data.chunking import Chunk
from embedlab.data.images import DECODING, ImageLimits, read_image
from embedlab.data.ingest import Page, SourceDocument
from embedlab.encoders.base import Encoder
from embedlab.encoders.images import encode_images
from embedlab.errors import EmbedlabError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def image_limits(manifest: Manifest) -> ImageLimits | None:
    """The limits an image collection was built with; None for a collection of documents."""
    if manifest.images is None:
        return None
    return ImageLimits(max_bytes=manifest.images.max_bytes, max_pixels=manifest.images.max_pixels)


def check_image_model(encoder: Encoder, model: str) -> None:
    """An image collection needs a model with an image tower: say so before any file is read."""
    if "image" not in encoder.modalities:
        raise EmbedlabError(
            f"model {model!r} cannot encode images",
            expected="an image model for --images",
            hint="use efficientnet-lite0 or vit-s14-focus (image -> image), or a CLIP/SigLIP model folder "
            "(text and image queries)",
        )


def skip_reason(err: EmbedlabError) -> str:
    """A decoding error as a skip line: the file is already named by the line, so not again."""
    return "; ".join(
        part
        for part in (err.message, err.found and f"found {err.found}", err.expected and f"expected {err.expected}")
        if part
    )


class ImageGenerationJob(GenerationJob):
    """A :class:`GenerationJob` whose files are images: one row per image, encoded by the image tower."""

    wanted = "image files (" + ", ".join(IMAGE_SUFFIXES) + ") that decode"
    counted = "images that decode"

    def __init__(self, *args: Any, limits: ImageLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the base's arguments, unchanged
        self.limits = limits

    def _unsupported(self, entry: Path) -> str | None:
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            return None
        return f"not an image file ({entry.suffix or 'no suffix'}); images are " + ", ".join(IMAGE_SUFFIXES)

    def _read(self, path: Path, rel: str, digest: str) -> tuple[SourceDocument, list[Chunk]] | str:
        try:
            image = read_image(path, limits=self.limits)  # decoded now: a bad file is skipped, not a failed batch
        except EmbedlabError as err:
            return skip_reason(err)
        image.close()
        document = SourceDocument(path=path, relative=rel, sha256=digest, kind="image", pages=(Page(1, rel),))
        row = Chunk(doc=rel, index=0, page=1, char_start=0, char_end=len(rel), text=rel, tokens=1)
        return document, [row]

    def _inputs(self, item: SourceDocument, chunks: list[Chunk]) -> list:
        return [item.path]

    def _embed(self, inputs: list, cache: EmbeddingCache | None) -> np.ndarray:
        return encode_images(
            self.encoder,
            inputs,
            role="document",
            cache=cache,
            stats=self.stats,
            show_progress=False,
            limits=self.limits,
        )

    def _images(self) -> ImageReading | None:
        return ImageReading(max_bytes=self.limits.max_bytes, max_pixels=self.limits.max_pixels, decoding=DECODING)

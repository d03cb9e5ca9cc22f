"""The image options of ``embedlab index build --images`` and ``embedlab search --image`` (kept apart
from ``index_cmd.py``, which renders: these parse and call the library)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from embedlab.data.images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageLimits
from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from embedlab.collection.search import SearchResponse


def image_options(p: argparse.ArgumentParser) -> None:
    """``--max-image-mb`` and ``--max-image-pixels`` (their defaults: :mod:`embedlab.data.images`)."""
    g = p.add_argument_group("reading images (with --images; kept for `index update`)")
    g.add_argument(
        "--max-image-mb",
        type=float,
        default=MAX_IMAGE_BYTES / 1024 / 1024,
        help=f"skip an image file larger than this, in MiB (default {MAX_IMAGE_BYTES // 1024 // 1024})",
    )
    g.add_argument(
        "--max-image-pixels",
        type=int,
        default=MAX_IMAGE_PIXELS,
        help=f"skip an image declaring more pixels, read from its header before decoding, so a "
        f"decompression bomb costs nothing (default {MAX_IMAGE_PIXELS:,})",
    )


def image_limits(args: argparse.Namespace) -> ImageLimits:
    """The options as limits; a bad value is one line before anything is read."""
    size_mb = args.max_image_mb
    if not size_mb > 0 or size_mb == float("inf"):  # also NaN
        raise EmbedlabError("invalid --max-image-mb", found=repr(size_mb), expected="a number of MiB > 0")
    if args.max_image_pixels <= 0:
        raise EmbedlabError("invalid --max-image-pixels", found=repr(args.max_image_pixels), expected="a count > 0")
    return ImageLimits(max_bytes=max(1, round(size_mb * 1024 * 1024)), max_pixels=args.max_image_pixels)


def search_by_image(args: argparse.Namespace) -> tuple[SearchResponse, bool]:
    """``embedlab search NAME --image FILE``: the response, and whether the collection holds images."""
    from embedlab.api.collections import open_collection

    for flag, value in (("--pipeline", args.pipeline), ("--rerank", args.rerank), ("--mode", args.mode)):
        if value and value != "dense":
            raise EmbedlabError(
                f"{flag} does not apply to an image query", expected="dense search only (no BM25, no text re-ranker)"
            )
    pattern = args.path_filter[5:] if args.path_filter and args.path_filter.startswith("path=") else args.path_filter
    collection = open_collection(args.collection, model=args.model, root=args.root, load_model=False)
    try:
        response = collection.search_image(args.image, k=args.k, path_filter=pattern)
        images = collection.manifest.images is not None
    finally:
        collection.close()
    return response, images

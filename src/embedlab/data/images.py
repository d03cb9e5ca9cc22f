"""Image files as model input: read with limits, hashed, decoded to RGB the one way every image
model here sees them.

Why the limits come first: an image file is untrusted input.  A few kilobytes of PNG can
declare 50,000 x 50,000 pixels (a *decompression bomb*: 7.5 GB once decoded), and a "photo"
can be a 2 GB file.  So the byte size is checked before reading, the pixel count from the
header before decoding (Pillow reads the header lazily), and every failure is one
:class:`EmbedlabError` naming the file, never a traceback.

Decoding rules (the same for every backbone, and part of its fingerprint through
:class:`embedlab.encoders.images.ImagePreprocess`): the EXIF orientation is applied (a phone
photo stored sideways is seen upright), and transparency is composited onto white before
the alpha channel is dropped (emoji and product cut-outs store transparent pixels as black;
a plain ``convert("RGB")`` would turn black line art into a black square).

Pillow is imported lazily: it is the ``images`` extra (``pip install "embedlab[images]"``).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_IMAGE_BYTES = 32 * 1024 * 1024  # a large camera JPEG is 5-15 MB
MAX_IMAGE_PIXELS = 64_000_000  # 8000 x 8000; decoded RGB 192 MB
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
DECODING = "exif-transpose, alpha over white, RGB"  # what read_image does, for fingerprints


@dataclass(frozen=True)
class ImageLimits:
    """What an image file may cost before it is refused (bytes on disk, decoded pixels)."""

    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS


DEFAULT_LIMITS = ImageLimits()


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise EmbedlabError("reading images needs Pillow", hint='pip install "embedlab[images]"') from None
    return Image


def _checked_size(path: Path, limits: ImageLimits) -> int:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise EmbedlabError(f"cannot read image ({err.strerror})", path=path) from None
    if not path.is_file():
        raise EmbedlabError("not a file", path=path, expected="an image file")
    if size > limits.max_bytes:
        raise EmbedlabError(
            f"image file too large ({size:,} bytes)",
            path=path,
            expected=f"at most {limits.max_bytes:,} bytes",
            hint="shrink the image, or raise the limit",
        )
    return size


def image_sha256(path: Path, *, limits: ImageLimits = DEFAULT_LIMITS) -> bytes:
    """sha256 of the file's bytes (32 bytes): the image's cache key, whatever its name."""
    _checked_size(path, limits)
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise EmbedlabError(f"cannot read image ({err.strerror})", path=path) from None
    return digest.digest()


def read_image_bytes(path: Path, *, limits: ImageLimits = DEFAULT_LIMITS) -> bytes:
    """The file's bytes, its size checked before it is read."""
    _checked_size(path, limits)
    try:
        return path.read_bytes()
    except OSError as err:
        raise EmbedlabError(f"cannot read image ({err.strerror})", path=path) from None


def read_image(path: Path, *, limits: ImageLimits = DEFAULT_LIMITS) -> Image:
    """The file decoded to an upright RGB image (rules in the module docstring)."""
    return decode_image(read_image_bytes(path, limits=limits), where=path, limits=limits)


def decode_image(data: bytes, *, where: Path, limits: ImageLimits = DEFAULT_LIMITS) -> Image:
    """Decode image bytes (an upload or a file's content); ``where`` names it in errors."""
    if len(data) > limits.max_bytes:
        raise EmbedlabError(
            f"image too large ({len(data):,} bytes)", path=where, expected=f"at most {limits.max_bytes:,} bytes"
        )
    pil = _pil()
    from PIL import ImageOps, UnidentifiedImageError

    expected = f"an image ({', '.join(FORMATS)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pil.DecompressionBombWarning)
            image = pil.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > limits.max_pixels:
                raise EmbedlabError(
                    f"image has too many pixels ({width}x{height}), refused as a possible decompression bomb",
                    path=where,
                    expected=f"at most {limits.max_pixels:,} pixels",
                )
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image)
    except UnidentifiedImageError:
        raise EmbedlabError("not an image, or an unsupported format", path=where, expected=expected) from None
    except (pil.DecompressionBombError, pil.DecompressionBombWarning):
        raise EmbedlabError(
            "image refused as a possible decompression bomb",
            path=where,
            expected=f"at most {limits.max_pixels:,} pixels",
        ) from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated data, bad chunks (PNG raises SyntaxError)
        raise EmbedlabError(f"corrupt or truncated image ({err})", path=where, expected=expected) from None


def _to_rgb(image: Image) -> Image:
    pil = _pil()
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = pil.new("RGBA", rgba.size, "white")
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")

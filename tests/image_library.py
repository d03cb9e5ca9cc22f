"""An image library for the image-collection tests: the shapes of :mod:`tests.image_fixtures` plus
the files an ingester must skip (corrupt, not an image, a decompression bomb) and an EXIF-rotated copy.

``sideways.png`` holds ``upright.png``'s pixels stored turned 90 degrees counter-clockwise, with
the EXIF orientation 6 ("rotate 90 clockwise to display"): honoured, it is the same picture, pixel
for pixel (PNG is lossless), so both get the same vector; ``sideways-no-exif.png`` is the same
stored pixels without the tag (a different picture to the model).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from tests.image_fixtures import ITEMS, draw_item

SKIPPED = {  # file -> words its skip line must hold
    "broken.png": "corrupt or truncated image",
    "notes.png": "not an image",
    "readme.txt": "not an image file",
    "bomb.png": "decompression bomb",
}


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height pixels and holds none: the shape of a decompression bomb
    (a real one compresses gigabytes of zeros into kilobytes); only its header may ever be read."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


def upright(size: tuple[int, int] = (40, 20)):
    """An asymmetric picture (red left half, blue right half, a black dot top-left): any rotation shows."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (220, 30, 30))
    draw = ImageDraw.Draw(image)
    draw.rectangle((size[0] // 2, 0, size[0], size[1]), fill=(30, 60, 220))
    draw.rectangle((1, 1, 5, 5), fill=(0, 0, 0))
    return image


def write_image_library(folder: Path, *, bad: bool = True) -> Path:
    """``shapes/<id>.png`` for every item, ``upright.png``, ``sideways.png`` (EXIF 6),
    ``sideways-no-exif.png`` and, with ``bad``, the files of :data:`SKIPPED`."""
    from PIL import Image

    for item, (_, colour, shape) in ITEMS.items():
        draw_item(folder / "shapes" / f"{item}.png", colour, shape)
    picture = upright()
    picture.save(folder / "upright.png")
    stored = picture.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise; orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(folder / "sideways.png", exif=exif)
    stored.save(folder / "sideways-no-exif.png")
    if bad:
        good = (folder / "shapes" / "i1.png").read_bytes()
        (folder / "broken.png").write_bytes(good[: len(good) // 2])
        (folder / "notes.png").write_text("this is not an image\n")
        (folder / "readme.txt").write_text("catalogue notes\n")
        png_header_only(folder / "bomb.png", 100_000, 100_000)
    return folder

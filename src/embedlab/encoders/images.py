"""Images through an encoder: preprocessing, the image fingerprint and the cached encode loop.

A vector depends on the pixels the network sees, so everything between the file and the
network is part of the model's identity: the decoding rules (:mod:`embedlab.data.images`:
EXIF rotation, alpha over white), the resize and crop, the resampling filter and the
per-channel normalisation.  :class:`ImagePreprocess` describes them in one string, which
:class:`ImageFingerprint` carries, so the cache space changes with any of them; the cache key
of one image is the sha256 of the file's bytes (renaming a file keeps its vector, changing one
pixel does not).

Encoding reads each file twice on purpose: first only its hash (cache lookup and
de-duplication, nothing decoded), then the files still missing are decoded batch by batch, so
memory holds one batch of pixels, never a whole corpus of decoded images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedlab.data.images import DECODING, DEFAULT_LIMITS, ImageLimits, decode_image, image_sha256, read_image
from embedlab.encoders.base import Fingerprint, Role

if TYPE_CHECKING:
    from PIL.Image import Image

    from embedlab.cache.store import EmbeddingCache
    from embedlab.encoders.base import Encoder, EncodeStats

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)  # (x/255 - 0.5) / 0.5: EfficientNet-Lite's TF-style input, SigLIP's
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize the shorter side to ``resize`` (``resample``), centre-crop ``size`` x ``size``,
    scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel; output (3, size, size).

    ``resize == size`` keeps a square image whole (catalogue images and emoji are centred
    objects: the ImageNet habit of resize 256 / crop 224 would cut their borders)."""

    size: int = 224
    resize: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resample: str = "bicubic"

    def describe(self) -> str:
        """Everything that changes the pixels, as one string (part of the fingerprint)."""
        mean = ",".join(f"{v:.6g}" for v in self.mean)
        std = ",".join(f"{v:.6g}" for v in self.std)
        return (
            f"decode: {DECODING}; resize short side {self.resize} {self.resample}; "
            f"centre crop {self.size}; mean {mean}; std {std}"
        )

    def pixels(self, images: Sequence[Image]) -> np.ndarray:
        """Decoded RGB images -> float32 array (n, 3, size, size)."""
        from PIL import Image as pil

        resample = {"bicubic": pil.Resampling.BICUBIC, "bilinear": pil.Resampling.BILINEAR}[self.resample]
        mean = np.asarray(self.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(3, 1, 1)
        out = np.empty((len(images), 3, self.size, self.size), np.float32)
        for row, image in enumerate(images):
            width, height = image.size
            scale = self.resize / min(width, height)
            new_w, new_h = max(self.size, round(width * scale)), max(self.size, round(height * scale))
            resized = image.resize((new_w, new_h), resample)
            left, top = (new_w - self.size) // 2, (new_h - self.size) // 2
            cropped = resized.crop((left, top, left + self.size, top + self.size))
            array = np.asarray(cropped, np.float32).transpose(2, 0, 1) / 255.0
            out[row] = (array - mean) / std
        return out


@dataclass(frozen=True)
class ImageFingerprint(Fingerprint):
    """A fingerprint plus the image preprocessing (``preprocess``: :meth:`ImagePreprocess.describe`)."""

    preprocess: str = ""


def image_space(fingerprint: Fingerprint, role: Role) -> dict[str, object]:
    """The cache space of images: the role's fingerprint (preprocessing included) marked as image
    input, so an image never shares a space with a text of the same model."""
    return {**fingerprint.for_role(role), "input": "image"}


def image_preprocess(encoder: Encoder) -> ImagePreprocess:
    """The encoder's image preprocessing; one line when it has no image tower."""
    from embedlab.errors import EmbedlabError

    preprocess = getattr(encoder, "preprocess", None)
    if "image" not in encoder.modalities or not isinstance(preprocess, ImagePreprocess):
        raise EmbedlabError(
            f"model {encoder.fingerprint.model!r} cannot encode images (it encodes text only)",
            hint="use an image model (efficientnet-lite0, vit-s14-focus) or a CLIP/SigLIP model folder",
        )
    return preprocess


def encode_image_query(
    encoder: Encoder, data: bytes, *, where: Path, limits: ImageLimits = DEFAULT_LIMITS
) -> np.ndarray:
    """One query image (a file's or an upload's bytes; ``where`` names it in errors) -> its vector.

    Never cached, like text queries (what a user waits for is the encode, and a query image is
    rarely seen twice); decoded with the same rules and limits as collection images."""
    preprocess = image_preprocess(encoder)
    image = decode_image(data, where=where, limits=limits)
    return encoder._finish(encoder.encode_image_batch(preprocess.pixels([image])))[0]


def encode_images(
    encoder: Encoder,
    paths: Sequence[Path],
    *,
    role: Role,
    cache: EmbeddingCache | None,
    stats: EncodeStats | None,
    show_progress: bool,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Image files -> vectors (one row each), through the encoder's cache loop."""
    preprocess = image_preprocess(encoder)
    files = [Path(p) for p in paths]
    keys = [image_sha256(p, limits=limits) for p in files]
    sizes = [p.stat().st_size for p in files]

    def run_batch(rows: list[int]) -> np.ndarray:
        return encoder.encode_image_batch(preprocess.pixels([read_image(files[i], limits=limits) for i in rows]))

    return encoder._encode_keyed(
        files,
        keys,
        run_batch,
        description=image_space(encoder.fingerprint, role),
        unit="images",
        longest_first=sizes,
        cache=cache,
        stats=stats,
        show_progress=show_progress,
    )

"""Image towers as embedlab model folders: an ONNX graph from pixels to one vector per image.

``embedlab shrink`` writes them (:mod:`embedlab.optimize.image_quantize`: the int8 variants of
the packaged backbones, or of an aligned two-tower folder's image side).  The folder holds
``model.onnx`` (input: the (n, 3, size, size) pixels; output ``features``: (n, dim), the pooling
inside the graph) and ``embedlab_model.json`` (:class:`embedlab.encoders.onnx_folder.FolderManifest`,
kind ``image-onnx``), which carries the preprocessing the backbone was trained with, so the
pixels are those of the fp32 backbone and its cache space differs only by the graph and the
precision.  The graph's sha256 is verified on load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedlab import settings
from embedlab.encoders.base import Encoder
from embedlab.encoders.images import ImageFingerprint, ImagePreprocess
from embedlab.encoders.onnx_file import onnx_conditions, onnx_parameters
from embedlab.encoders.onnx_folder import FolderManifest
from embedlab.encoders.resolve import verify_sha256
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo

FEATURES = "features"  # the graph output: one pooled vector per image


def preprocess_fields(preprocess: ImagePreprocess) -> dict[str, object]:
    """What the manifest stores: every field of the preprocessing, JSON-ready."""
    return {
        "size": preprocess.size,
        "resize": preprocess.resize,
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "resample": preprocess.resample,
    }


def preprocess_from(fields: dict[str, object], *, path: Path) -> ImagePreprocess:
    try:
        mean = tuple(float(v) for v in fields["mean"])  # type: ignore[attr-defined]
        std = tuple(float(v) for v in fields["std"])  # type: ignore[attr-defined]
        if len(mean) != 3 or len(std) != 3 or fields["resample"] not in ("bicubic", "bilinear"):
            raise ValueError
        return ImagePreprocess(
            size=int(str(fields["size"])),
            resize=int(str(fields["resize"])),
            mean=mean,  # three floats, checked above
            std=std,
            resample=str(fields["resample"]),
        )
    except (KeyError, TypeError, ValueError):
        raise EmbedlabError(
            "the image folder's preprocess is invalid",
            path=path,
            found=str(fields)[:200],
            expected="size, resize, mean (3), std (3), resample (bicubic|bilinear)",
            hint="rebuild the folder with embedlab shrink",
        ) from None


class ImageOnnxFolderEncoder(Encoder):
    modalities = frozenset({"image"})

    def __init__(self, folder: Path, manifest: FolderManifest, spec: ModelSpec) -> None:
        from embedlab.encoders.onnx_folder import MANIFEST
        from embedlab.encoders.transformer import onnx_session

        check_options(spec, accepted={"normalize", "threads"}, what="an ONNX image model folder")
        self.path = folder / manifest.file
        if not self.path.is_file():
            raise EmbedlabError("the model folder's ONNX file is missing", path=self.path, hint="rebuild the folder")
        sha = verify_sha256(manifest.name, self.path, "the model folder", manifest.sha256)
        self.preprocess = preprocess_from(manifest.preprocess or {}, path=folder / MANIFEST)
        self.manifest = manifest
        self.dim = manifest.dim
        self.batch_size = spec.batch_size
        self.threads = spec.threads or settings.default_threads()
        self.session = onnx_session(self.path, self.threads)
        self.input = self.session.get_inputs()[0].name
        self.fingerprint = ImageFingerprint(
            kind="image-onnx-folder",
            model=manifest.name,
            weights=sha,
            backend="onnx",
            pooling=manifest.pooling,
            normalize=spec.normalize if spec.normalize is not None else manifest.normalize,
            max_length=0,
            precision=manifest.precision,
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
            preprocess=self.preprocess.describe(),
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:  # never reached: the base refuses text first
        raise EmbedlabError(f"model {self.manifest.name!r} cannot encode text")

    def encode_image_batch(self, pixels: np.ndarray) -> np.ndarray:
        (features,) = self.session.run([FEATURES], {self.input: pixels})
        return np.asarray(features, np.float32)

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "weights_bytes": self.path.stat().st_size,
            "parameters": onnx_parameters(self.path),
            "source": f"local folder ({self.manifest.precision} ONNX made from {self.manifest.base_model})",
        }

    def conditions(self) -> Conditions:
        return onnx_conditions(
            self.threads, self.batch_size, image_size=self.preprocess.size, precision=self.manifest.precision
        )

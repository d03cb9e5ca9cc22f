"""int8 ONNX image towers (``embedlab shrink`` on an image model), each a loadable model folder.

What can be shrunk: the packaged backbones (``efficientnet-lite0``, ``vit-s14-focus``) and an
aligned two-tower folder (``finetune --kind image-text``), whose image side is quantized while
its heads and text tower stay as they are.  The start is the backbone's own fp32 graph with the
pooling inside (``export_graph``: EfficientNet-Lite0 exported from torch, ViT-S/14's backbone
extracted from its ONNX file with token 0 gathered), output ``features``.

- ``int8-dynamic``: ``quantize_dynamic``, int8 per-channel weights of the MatMul nodes,
  activations quantized per batch at run time.  Convolutions are left float: onnxruntime runs
  a dynamically quantized Conv as ConvInteger, which has no fast CPU kernel; so this variant is
  for ViT towers (all MatMuls) and ``shrink`` does not offer it for EfficientNet-Lite0.
- ``int8-static``: QDQ int8 weights (per channel) and activations, activation ranges calibrated
  (min/max) on a seeded sample of the corpus images; Conv and MatMul nodes, except (as for text
  transformers, :mod:`embedlab.optimize.quantize`) the MLP down-projections, whose post-GELU
  inputs have outliers that a min/max range cannot hold.

Measured here (64 emoji images, 2-core AVX-512 VNNI CPU, onnxruntime): ViT-S/14 int8-dynamic
keeps cosine 0.999 to fp32 (min 0.998) at 38.0 vs 63.8 ms per image (1.68x); int8-static 0.988
(min 0.969) at 45.5 ms.  EfficientNet-Lite0 int8-static loses much more (cosine 0.85, min 0.68;
per-tensor, percentile calibration or leaving the depthwise convolutions float gave 0.85-0.88)
and is *slower* than its fp32 graph (4.4-6.7 vs 3.6 ms per image): onnxruntime's QDQ kernels
for its small depthwise and 1x1 convolutions do not beat the fp32 ones on this CPU.  The shrink
report shows both; the figures of record are benchmarks/results/shrink_images_*.json.

Each folder is validated when written: the cosine of its features to the fp32 backbone's on the
calibration images, recorded in its manifest.  For an aligned folder the quantized tower is
written inside the new folder (``image-tower/``) and the new aligned manifest names it; the
heads were trained on fp32 features, so the retained quality is what the shrink report
measures, not an assumption.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from embedlab.atomic import atomic_dir
from embedlab.checksum import file_sha256
from embedlab.encoders.aligned import HEADS, AlignedEncoder
from embedlab.encoders.aligned import MANIFEST as ALIGNED_MANIFEST
from embedlab.encoders.image_folder import FEATURES, ImageOnnxFolderEncoder, preprocess_fields
from embedlab.encoders.onnx_folder import FolderManifest, write_manifest
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.encoders.static import _root_logging_kept
from embedlab.errors import EmbedlabError
from embedlab.optimize.quantize import dynamic_int8, static_int8, weight_matmuls

log = logging.getLogger(__name__)
IMAGE_VARIANTS = ("int8-dynamic", "int8-static")
MIN_CALIBRATION_IMAGES = 8
CALIBRATION_BATCH = 8
VALIDATION_IMAGES = 50
TOWER = "image-tower"  # inside a shrunk aligned folder


def image_tower_of(model: str):
    """The encoder whose image tower is quantized, and that tower (an aligned folder's image side,
    or the backbone itself); one line when it cannot be exported."""
    encoder = load_encoder(ModelSpec(model=model))
    tower = encoder.image_tower if isinstance(encoder, AlignedEncoder) else encoder
    if "image" not in encoder.modalities or not hasattr(tower, "export_graph"):
        raise EmbedlabError(
            f"{model!r} has no image tower embedlab can export to ONNX",
            expected="efficientnet-lite0, vit-s14-focus, or an aligned folder built on one of them",
        )
    return encoder, tower


def build_image_variant(variant: str, model: str, target: Path, *, images: list[Path], label: str) -> None:
    """Write ``variant`` of the image model ``model`` (a backbone or an aligned folder) at ``target``."""
    encoder, tower = image_tower_of(model)
    if isinstance(encoder, AlignedEncoder):
        with atomic_dir(target) as work:
            quantized = _tower_folder(variant, tower, work / TOWER, images=images, label=f"{label}:{TOWER}")
            _aligned_folder(encoder, work, quantized, variant=variant, label=label)
    else:
        with atomic_dir(target) as work:
            _tower_folder(variant, tower, work, images=images, label=label)


def _tower_folder(variant: str, tower, work: Path, *, images: list[Path], label: str) -> FolderManifest:
    """Write the quantized tower folder at ``work``; its manifest as written."""
    import onnx

    from embedlab.data.images import read_image

    if len(images) < MIN_CALIBRATION_IMAGES:
        raise EmbedlabError(
            f"too few images to calibrate and check {variant}: {len(images)}",
            expected=f"at least {MIN_CALIBRATION_IMAGES} images in the corpus",
        )
    work.mkdir(parents=True, exist_ok=True)
    pixels = [
        tower.preprocess.pixels([read_image(p) for p in images[start : start + CALIBRATION_BATCH]])
        for start in range(0, len(images), CALIBRATION_BATCH)
    ]
    graph = work / "model.onnx"
    with tempfile.TemporaryDirectory(prefix="embedlab-image-onnx-") as tmp:
        plain = Path(tmp) / "fp32.onnx"
        exported = tower.export_graph()
        input_name = exported.graph.input[0].name
        onnx.save(exported, str(plain))
        with warnings.catch_warnings(), _root_logging_kept():
            warnings.simplefilter("ignore")
            settings = (
                dynamic_int8(plain, graph, op_types=["MatMul"])
                if variant == "int8-dynamic"
                else _static(plain, graph, pixels, input_name)
            )
    manifest = FolderManifest(
        kind="image-onnx",
        name=f"{label}:{variant}",
        base_model=tower.fingerprint.model,
        base_weights_sha256=tower.fingerprint.weights,
        file=graph.name,
        sha256=file_sha256(graph),
        pooling="cls" if "cls" in tower.fingerprint.pooling else "mean",
        normalize=True,
        max_length=0,
        dim=tower.dim,
        precision=variant,  # type: ignore[arg-type]  # IMAGE_VARIANTS are precisions
        output=FEATURES,
        preprocess=preprocess_fields(tower.preprocess),
        made_with={**settings, "source_graph": "fp32 export with the pooling in the graph, opset 17"},
    )
    write_manifest(work, manifest)
    check = ImageOnnxFolderEncoder(work, manifest, ModelSpec(model=str(work)))
    sample = np.concatenate(pixels)[:VALIDATION_IMAGES]
    a, b = (_unit(e.encode_image_batch(sample)) for e in (tower, check))
    cosine = np.sum(a * b, axis=1)
    validation = {
        "images": len(sample),
        "cosine_to_fp32_mean": round(float(cosine.mean()), 6),
        "cosine_to_fp32_min": round(float(cosine.min()), 6),
    }
    manifest = manifest.model_copy(update={"made_with": {**manifest.made_with, "validation": validation}})
    write_manifest(work, manifest)
    log.info("%s: mean cosine to fp32 %.4f", manifest.name, validation["cosine_to_fp32_mean"])
    return manifest


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _static(plain: Path, graph: Path, batches: list[np.ndarray], input_name: str) -> dict[str, object]:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    matmuls, kept = weight_matmuls(plain)
    convs = [n.name for n in onnx.load(str(plain)).graph.node if n.op_type == "Conv"]
    return {
        **static_int8(plain, graph, Images(), nodes=[*convs, *matmuls]),
        "calibration_images": int(sum(len(b) for b in batches)),
        "convs_quantized": len(convs),
        "matmuls_quantized": len(matmuls),
        "matmuls_kept_float": len(kept),
    }


def _aligned_folder(encoder: AlignedEncoder, work: Path, tower: FolderManifest, *, variant: str, label: str) -> None:
    """The aligned folder again, its image side the quantized ``tower`` in ``work/image-tower``."""
    from embedlab.atomic import atomic_write_text

    shutil.copyfile(encoder.path, work / HEADS)
    original = encoder.manifest
    manifest = original.model_copy(
        update={
            "name": f"{label}:{variant}",
            "image_model": TOWER,  # read relative to the folder (AlignedEncoder)
            "image_weights_sha256": tower.sha256,  # the tower folder's fingerprint weights: its graph's sha256
            "made_with": {
                **original.made_with,
                "shrunk": {
                    "variant": variant,
                    "from": original.name,
                    "heads_trained_on": f"{original.image_model} (fp32 features)",
                },
            },
        }
    )
    atomic_write_text(work / ALIGNED_MANIFEST, manifest.model_dump_json(indent=2) + "\n")

"""Two-tower image-text models (CLIP, SigLIP) from a model folder: texts and images into one space.

A folder whose ``config.json`` says ``model_type`` ``clip`` or ``siglip`` (a local folder, or a
hub id when online: the same offline-first resolution as text models, weights sha256 in the
fingerprint) loads with transformers' ``CLIPModel`` / ``SiglipModel``.  Texts go through the
text tower (``get_text_features``: the projected pooled text state), images through the vision
tower (``get_image_features``); both land in the shared projection space, so a text query
finds images and an image query finds texts.

Preprocessing is embedlab's own :class:`ImagePreprocess` (one implementation, described in the
fingerprint), with the folder's ``preprocessor_config.json`` values (mean, std, shortest edge,
resampling) where it has them, else the model family's published defaults; the crop size is
always the vision tower's ``image_size``.  Difference from transformers' SigLIP processor: that
one squashes a non-square image to a square, this one resizes the short side and centre-crops
(identical for square images).  SigLIP texts are padded to ``max_length``, as it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from embedlab import settings
from embedlab.encoders.base import Encoder
from embedlab.encoders.images import CLIP_MEAN, CLIP_STD, HALF, ImageFingerprint, ImagePreprocess
from embedlab.encoders.resolve import resolve_model
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo

_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's integer codes, as preprocessor_config.json stores them


class TwoTowerEncoder(Encoder):
    modalities = frozenset({"text", "image"})

    def __init__(self, spec: ModelSpec) -> None:
        check_options(spec, accepted={"max_length", "normalize", "threads"}, what="a CLIP/SigLIP model")
        self.resolved = resolve_model(spec.model)
        folder = self.resolved.path
        config = _read_json(folder / "config.json")
        self.family = str(config.get("model_type"))
        try:
            import torch
            from transformers import AutoTokenizer, CLIPModel, SiglipModel
        except ImportError:
            raise EmbedlabError(
                "CLIP/SigLIP models need torch and transformers", hint='pip install "embedlab[images]"'
            ) from None
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.torch = torch
        self.threads = spec.threads or settings.default_threads()
        torch.set_num_threads(self.threads)
        model_class = CLIPModel if self.family == "clip" else SiglipModel
        self.model = model_class.from_pretrained(str(folder)).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        text_config, vision_config = self.model.config.text_config, self.model.config.vision_config
        self.max_length = spec.max_length or int(text_config.max_position_embeddings)
        self.dim = int(self.model.config.projection_dim if self.family == "clip" else text_config.hidden_size)
        self.preprocess = _preprocess(folder, self.family, int(vision_config.image_size))
        self.batch_size = spec.batch_size
        self.fingerprint = ImageFingerprint(
            kind=f"two-tower ({self.family})",
            model=self.resolved.name,
            weights=self.resolved.weights_sha256,
            backend="torch",
            pooling="the model's own (projected pooled states)",
            normalize=spec.normalize if spec.normalize is not None else True,
            max_length=self.max_length,
            precision="fp32",
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
            preprocess=self.preprocess.describe(),
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        padding: Any = "max_length" if self.family == "siglip" else True
        batch = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        feed = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with self.torch.inference_mode():
            return _features(self.model.get_text_features(**feed))

    def encode_image_batch(self, pixels: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return _features(self.model.get_image_features(pixel_values=self.torch.from_numpy(pixels)))

    def size_info(self) -> SizeInfo:
        return {
            "dim": self.dim,
            "parameters": self.resolved.parameters(),
            "weights_bytes": self.resolved.weights_file.stat().st_size,
            "source": self.resolved.source,
        }

    def conditions(self) -> Conditions:
        return {
            "backend": "torch",
            "device": "cpu",
            "threads": self.threads,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "image_size": self.preprocess.size,
            "precision": "fp32",
        }


def _features(out: Any) -> np.ndarray:
    """transformers 5 returns an output object (``pooler_output`` = the projection), 4.x a tensor."""
    tensor = out if hasattr(out, "numpy") else out.pooler_output
    return np.asarray(tensor.float().cpu().numpy(), np.float32)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EmbedlabError(f"cannot read the model configuration ({err})", path=path) from None
    if not isinstance(value, dict):
        raise EmbedlabError("the model configuration is not a JSON object", path=path)
    return value


def _preprocess(folder: Path, family: str, image_size: int) -> ImagePreprocess:
    mean, std = (CLIP_MEAN, CLIP_STD) if family == "clip" else (HALF, HALF)
    path = folder / "preprocessor_config.json"
    config = _read_json(path) if path.is_file() else {}
    size = config.get("size")
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size if isinstance(size, int) else None
    return ImagePreprocess(
        size=image_size,
        resize=int(shortest) if isinstance(shortest, int) and shortest >= image_size else image_size,
        mean=_triple(config.get("image_mean"), mean),
        std=_triple(config.get("image_std"), std),
        resample=_RESAMPLE.get(config.get("resample", 3), "bicubic"),
    )


def _triple(value: object, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value):
        return (float(value[0]), float(value[1]), float(value[2]))
    return default

"""Aligned two-tower folders written by ``embedlab finetune --kind image-text``.

The folder holds no copy of either tower, only what training made and which towers it sits on:

- ``embedlab_aligned.json`` (:class:`AlignedManifest`): the image backbone and the text model
  (registry names or folders, with the weights sha256 each had when trained: a different
  backbone under the same name is refused, since the heads were fitted to its features; a
  tower folder inside this folder, as ``embedlab shrink`` writes a quantized image side, is
  named relative to it), the head shapes, the output dimension and the sha256 of ``heads.npz``;
- ``heads.npz``: the image projection head (and the optional text projection), as float32
  arrays, applied here in numpy.

Encoding (the same functions training used, :func:`project`): an image goes through the
backbone (its own preprocessing and its own cache space, so a new head never re-runs the
backbone on a cached image), the backbone feature is L2-normalised and projected; a text
goes through the text tower, is L2-normalised and, when a text projection was trained, projected
(LiT's locked text tower otherwise: the image head maps into the text space).  The base class
L2-normalises the result, so cosine = dot product in the shared space, as in CLIP.

The fingerprint's ``weights`` is the sha256 of ``heads.npz`` together with both towers' weights,
so the cache never mixes vectors of two trainings or of two backbones.

**A distilled query tower** (``documents``, written by ``embedlab shrink --variants student``):
the folder's image tower is a cheaper one (the same backbone at a lower ``image_options``
resolution) whose head was trained to land where the teacher's image embeddings are, and
``documents`` names the teacher folder inside this one.  Query images go through the cheap
tower; document images (a catalogue, encoded once at index time) through the teacher's, from
the teacher's own cache space: asymmetric retrieval (Budnik & Avrithis 2021, "Asymmetric metric
learning for knowledge transfer"), where only the per-query cost falls.  Texts are the teacher's
(the same text tower and head).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.encoders.base import Encoder
from embedlab.encoders.images import ImageFingerprint
from embedlab.encoders.resolve import verify_sha256
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo

if TYPE_CHECKING:
    from embedlab.cache.store import EmbeddingCache
    from embedlab.encoders.base import EncodeStats, Role

MANIFEST = "embedlab_aligned.json"
HEADS = "heads.npz"


class AlignedManifest(BaseModel):
    """``embedlab_aligned.json``: validated on load, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    kind: Literal["image-text"] = "image-text"
    name: str = Field(min_length=1)
    image_model: str = Field(min_length=1)
    image_weights_sha256: str
    text_model: str = Field(min_length=1)
    text_weights_sha256: str
    dim: int = Field(gt=0)
    image_options: dict[str, int] = Field(default_factory=dict)  # the image tower's model options (image_size)
    # a distilled query tower's teacher: the folder inside this one that encodes document images
    documents: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    image_hidden: int = Field(0, ge=0)  # 0: a linear head; else Linear -> GELU (tanh) -> Linear
    text_projection: bool = False
    heads_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    made_with: dict[str, object] = Field(default_factory=dict)


def read_aligned_manifest(folder: Path) -> AlignedManifest | None:
    """The folder's manifest, or None when ``folder`` is not an aligned two-tower folder."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return AlignedManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        where = ".".join(str(p) for p in first["loc"]) if first else "the file"
        raise EmbedlabError(
            f"{MANIFEST} is not a valid aligned-model manifest ({where}: {first['msg'] if first else err})",
            path=path,
            hint="retrain the folder with embedlab finetune --kind image-text",
        ) from None


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), the same as torch's approximate='tanh'."""
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def project(features: np.ndarray, heads: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    """L2-normalised tower features through the ``prefix`` head (``image`` or ``text``); an
    absent head is the identity (a locked tower)."""
    x = l2(np.asarray(features, np.float32))
    if f"{prefix}.w1" in heads:
        x = _gelu(x @ heads[f"{prefix}.w1"].T + heads[f"{prefix}.b1"])
    if f"{prefix}.w" in heads:
        x = x @ heads[f"{prefix}.w"].T + heads[f"{prefix}.b"]
    return np.asarray(x, np.float32)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def aligned_encoder(spec: ModelSpec) -> Encoder | None:
    """The encoder of an aligned folder named by ``spec.model``; None for any other name."""
    folder = Path(spec.model).expanduser()
    manifest = read_aligned_manifest(folder) if folder.is_dir() else None
    return None if manifest is None else AlignedEncoder(folder.resolve(), manifest, spec)


class AlignedEncoder(Encoder):
    modalities = frozenset({"text", "image"})
    image_tower: Encoder
    text_tower: Encoder

    def __init__(self, folder: Path, manifest: AlignedManifest, spec: ModelSpec) -> None:
        from embedlab.encoders.registry import load_encoder

        check_options(spec, accepted={"normalize", "threads"}, what="an aligned image-text folder")
        path = folder / HEADS
        if not path.is_file():
            raise EmbedlabError("the aligned folder's heads file is missing", path=path, hint="retrain the folder")
        verify_sha256(manifest.name, path, f"local folder {folder}", manifest.heads_sha256)
        with np.load(path) as data:
            self.heads = {k: np.asarray(data[k], np.float32) for k in data.files}
        self.manifest, self.path = manifest, path
        # a tower folder inside this folder (``embedlab shrink``'s quantized image side) is read from here
        inside = folder / manifest.image_model
        image_model = str(inside) if inside.is_dir() else manifest.image_model
        self.image_tower = load_encoder(
            ModelSpec(model=image_model, threads=spec.threads, options=dict(manifest.image_options))
        )
        self.documents = self._documents(folder, manifest, spec)
        # a distilled query tower shares its teacher's text tower (the same model, checked): loaded once
        self.text_tower = (
            self.documents.text_tower
            if self.documents is not None
            else load_encoder(ModelSpec(model=manifest.text_model, threads=spec.threads))
        )
        for tower, expected, role in (
            (self.image_tower, manifest.image_weights_sha256, "image"),
            (self.text_tower, manifest.text_weights_sha256, "text"),
        ):
            if role not in tower.modalities:
                raise EmbedlabError(f"{tower.fingerprint.model!r} cannot encode {role}s", path=folder / MANIFEST)
            if tower.fingerprint.weights != expected:
                raise EmbedlabError(
                    f"the {role} tower {tower.fingerprint.model!r} is not the one the heads were trained on",
                    path=folder / MANIFEST,
                    found=tower.fingerprint.weights[:16],
                    expected=expected[:16],
                    hint="install the same model version, or retrain",
                )
        self.preprocess = getattr(self.image_tower, "preprocess")  # noqa: B009  (checked by encode_images)
        self.dim = manifest.dim
        self.batch_size = spec.batch_size
        teacher = f":{self.documents.fingerprint.weights}" if self.documents is not None else ""
        weights = hashlib.sha256(
            f"{manifest.heads_sha256}:{manifest.image_weights_sha256}:{manifest.text_weights_sha256}{teacher}".encode()
        ).hexdigest()
        self.fingerprint = ImageFingerprint(
            kind="two-tower (aligned heads)" + (", distilled query tower" if self.documents is not None else ""),
            model=manifest.name,
            weights=weights,
            backend=f"{self.image_tower.fingerprint.backend} + {self.text_tower.fingerprint.backend} + numpy heads",
            pooling=f"image: {self.image_tower.fingerprint.pooling}; text: {self.text_tower.fingerprint.pooling}",
            normalize=spec.normalize if spec.normalize is not None else True,
            max_length=self.text_tower.fingerprint.max_length,
            precision="fp32",
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
            preprocess=self.image_tower.fingerprint.preprocess
            if isinstance(self.image_tower.fingerprint, ImageFingerprint)
            else "",
        )

    def _documents(self, folder: Path, manifest: AlignedManifest, spec: ModelSpec) -> AlignedEncoder | None:
        """The teacher folder that encodes document images (``documents``), checked to share this
        folder's space: the same output size, text tower and text head."""
        if manifest.documents is None:
            return None
        inside = folder / manifest.documents
        teacher = read_aligned_manifest(inside) if inside.is_dir() else None
        if teacher is None or teacher.documents is not None:
            raise EmbedlabError(
                "the folder's document tower is missing or is itself a distilled query tower",
                path=inside,
                expected="the teacher's aligned folder, as embedlab shrink --variants student writes it",
            )
        documents = AlignedEncoder(inside.resolve(), teacher, ModelSpec(model=str(inside), threads=spec.threads))
        text = [k for k in documents.heads if k.startswith("text.")]
        if (teacher.dim, teacher.text_model, teacher.text_weights_sha256) != (
            manifest.dim,
            manifest.text_model,
            manifest.text_weights_sha256,
        ) or any(k not in self.heads or not np.array_equal(self.heads[k], documents.heads[k]) for k in text):
            raise EmbedlabError("the document tower is not in this folder's space", path=inside / MANIFEST)
        return documents

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return project(self.text_tower.encode_batch(texts), self.heads, "text")

    def encode_image_batch(self, pixels: np.ndarray) -> np.ndarray:
        return project(self.image_tower.encode_image_batch(pixels), self.heads, "image")

    def encode_images(
        self,
        paths: Sequence[Path],
        *,
        role: Role,
        cache: EmbeddingCache | None = None,
        stats: EncodeStats | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Through the backbone's own cached encode (its cache space: the frozen backbone's vectors,
        shared with training and with the raw backbone's evaluation), then the head: the expensive
        part is never recomputed for new heads, and the result equals :meth:`encode_image_batch`'s
        (the head L2-normalises its input, so the backbone's normalised vectors give the same)."""
        if role == "document" and self.documents is not None:  # the teacher's tower and space
            return self.documents.encode_images(paths, role=role, cache=cache, stats=stats, show_progress=show_progress)
        features = self.image_tower.encode_images(
            paths, role=role, cache=cache, stats=stats, show_progress=show_progress
        )
        return self._finish(project(features, self.heads, "image"))

    def size_info(self) -> SizeInfo:
        image, text = self.image_tower.size_info(), self.text_tower.size_info()
        heads = sum(int(v.size) for v in self.heads.values())
        parameters = [s.get("parameters") for s in (image, text)]
        towers = [s.get("weights_bytes") for s in (image, text)]
        # what serving it needs on disk: the heads and both towers' weights
        total = self.path.stat().st_size + sum(int(b) for b in towers if isinstance(b, int))
        out: SizeInfo = {"dim": self.dim, "weights_bytes": total, "source": "local folder (heads) + both towers"}
        if all(isinstance(p, int) for p in parameters):
            out["parameters"] = heads + sum(int(p) for p in parameters if isinstance(p, int))
        return out

    def conditions(self) -> Conditions:
        return {**self.image_tower.conditions(), "max_length": self.text_tower.fingerprint.max_length}

"""embedlab's own model folders: a model that ``embedlab shrink`` made, loadable by path.

A folder holds the artefact (an ONNX graph, or static token vectors), the tokenizer files of
the model it was made from and ``embedlab_model.json``, which says what the folder is: its
kind, the base model (name and weights sha256), pooling, normalisation, maximum length,
precision and how it was made (quantization settings, calibration sample, the cosine to the
base model measured when it was written).  The artefact's sha256 is in the manifest and is
verified on load, so a damaged or swapped file never produces vectors; the fingerprint names
the artefact and the precision, so the cache never mixes its vectors with the base model's.

Any command that takes a model (``eval``, ``select``, ``index build``, ``serve``) loads such a
folder by its path, through :func:`embedlab.encoders.registry.load_encoder`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from embedlab.encoders.base import Encoder, Fingerprint
from embedlab.encoders.onnx_file import OnnxGraphEncoder
from embedlab.encoders.resolve import verify_sha256
from embedlab.encoders.spec import ModelSpec, check_options
from embedlab.errors import EmbedlabError

MANIFEST = "embedlab_model.json"
Precision = Literal["fp32", "fp16", "int8-dynamic", "int8-static"]


class FolderManifest(BaseModel):
    """``embedlab_model.json``: validated on load, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal[1] = 1
    # static: model2vec token vectors (``embedlab shrink``'s static variant); image-onnx: an image
    # tower, pixels -> one vector per image (:mod:`embedlab.encoders.image_folder`)
    kind: Literal["onnx", "static", "image-onnx"]
    name: str = Field(min_length=1)  # as reports show it, e.g. "scifact-ft:int8-dynamic"
    base_model: str  # what it was made from, as the user named it
    base_weights_sha256: str
    file: str  # the artefact inside the folder: model.onnx, model.safetensors
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    pooling: Literal["mean", "cls", "max"] = "mean"
    normalize: bool = True
    max_length: int = Field(ge=0)  # tokens; 0 for an image tower (checked by _kind_fits)
    dim: int = Field(gt=0)
    precision: Precision = "fp32"
    output: str = "last_hidden_state"  # onnx: the graph output holding the token states (image-onnx: features)
    preprocess: dict[str, Any] | None = None  # image-onnx: the ImagePreprocess fields (size, resize, mean, ...)
    made_with: dict[str, Any] = Field(default_factory=dict)  # settings and validation, for the record

    @model_validator(mode="after")
    def _kind_fits(self) -> FolderManifest:
        if (self.kind == "image-onnx") != (self.preprocess is not None) or (
            self.kind != "image-onnx" and self.max_length < 1
        ):
            raise ValueError("an image-onnx folder has preprocess and no max_length; a text folder the reverse")
        return self


def read_manifest(folder: Path) -> FolderManifest | None:
    """The folder's manifest, or None when ``folder`` is not one of embedlab's model folders."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return FolderManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, ValidationError) as err:
        first = err.errors()[0] if isinstance(err, ValidationError) else None
        where = ".".join(str(p) for p in first["loc"]) if first and first["loc"] else "the file"
        raise EmbedlabError(
            f"{MANIFEST} is not a valid embedlab model manifest ({where}: {first['msg'] if first else err})",
            path=path,
            hint="rebuild the folder with embedlab shrink",
        ) from None


def write_manifest(folder: Path, manifest: FolderManifest) -> None:
    from embedlab.atomic import atomic_write_text

    atomic_write_text(folder / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def folder_encoder(spec: ModelSpec) -> Encoder | None:
    """The encoder of an embedlab model folder named by ``spec.model``; None for any other name."""
    folder = Path(spec.model).expanduser()
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        return None
    if manifest.kind == "static":  # the packaged model2vec model's loader, pointed at this folder
        from embedlab.encoders.static import Model2VecEncoder

        return Model2VecEncoder(spec, folder.resolve(), manifest)
    if manifest.kind == "image-onnx":
        from embedlab.encoders.image_folder import ImageOnnxFolderEncoder

        return ImageOnnxFolderEncoder(folder.resolve(), manifest, spec)
    return OnnxFolderEncoder(folder.resolve(), manifest, spec)


class OnnxFolderEncoder(OnnxGraphEncoder):
    """An ONNX graph (fp32, fp16 or int8) returning token states, pooled as the manifest says."""

    def __init__(self, folder: Path, manifest: FolderManifest, spec: ModelSpec) -> None:
        check_options(spec, accepted={"max_length", "normalize", "threads", "pooling"}, what="an ONNX model folder")
        if spec.backend not in ("auto", "onnx"):
            raise EmbedlabError(
                f"{manifest.name} is an ONNX model folder: backend={spec.backend} is not available",
                hint="leave backend out (or backend=onnx)",
            )
        self.path = folder / manifest.file
        if not self.path.is_file():
            raise EmbedlabError("the model folder's ONNX file is missing", path=self.path, hint="rebuild the folder")
        self.source = f"local folder ({manifest.precision} ONNX made from {manifest.base_model})"
        self.precision = manifest.precision
        self.output = manifest.output
        self.pooled = False
        self.pooling = spec.pooling or manifest.pooling
        sha = verify_sha256(manifest.name, self.path, "the model folder", manifest.sha256)
        self._open(tokenizer_folder=folder, max_length=manifest.max_length, spec=spec, what=manifest.name, hint="")
        normalize = spec.normalize if spec.normalize is not None else manifest.normalize
        self.fingerprint = Fingerprint(
            kind="onnx-folder",
            model=manifest.name,
            weights=f"{sha}+tokenizer:{self.tokenizer_sha256[:16]}",
            backend="onnx",
            pooling=self.pooling,
            normalize=normalize,
            max_length=self.max_length,
            precision=manifest.precision,
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )

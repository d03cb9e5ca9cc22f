"""The variants ``embedlab shrink`` can build, by name, and which of them apply to a model.

Two families:

- *model* variants change the encoder and are written as a model folder under ``--out``
  (``int8-dynamic``, ``int8-static``, ``fp16``: :mod:`embedlab.optimize.quantize`; ``static``,
  ``student``: :mod:`embedlab.optimize.distill`); they need a transformer folder.
- *index* variants keep the encoder and change how its vectors are stored and searched
  (``int8-index``, ``binary-index``, ``pca-N``, ``matryoshka-N``: the index kinds of
  :mod:`embedlab.index`); they apply to any dense model and are written as a model spec
  (``MODEL:index=int8``), since there is no new artefact beside the index itself.

``pca`` and ``matryoshka`` take the target dimension after a dash (``pca-192``); without it,
half the model's dimensions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from embedlab.errors import EmbedlabError
from embedlab.registry import Registry


@dataclass(frozen=True)
class Variant:
    name: str  # as written and as the report labels it: int8-dynamic, pca-192
    family: Literal["model", "index"]
    about: str
    index: str | None = None  # index variants: the index kind
    index_options: dict[str, Any] = field(default_factory=dict)
    takes_dim: bool = False


VARIANTS: Registry[Variant] = Registry("shrink variant")
for _variant in (
    Variant("int8-dynamic", "model", "ONNX, int8 weights, activations quantized per batch at run time"),
    Variant("int8-static", "model", "ONNX, int8 weights and activations calibrated on a corpus sample"),
    Variant("fp16", "model", "ONNX in float16 (for GPUs; on a CPU it runs, but no faster)"),
    Variant("static", "model", "model2vec static distillation: token vectors, no transformer at query time"),
    Variant(
        "student",
        "model",
        "a cheaper student trained to reproduce the model's embeddings (MSE): half a transformer's layers, "
        "or an aligned image folder's query tower at a lower resolution",
    ),
    Variant("int8-index", "index", "int8 scalar-quantized index (4x smaller)", "int8"),
    Variant(
        "binary-index", "index", "sign-bit index, Hamming search re-scored with int8 codes (32x smaller)", "binary"
    ),
    Variant("pca", "index", "PCA-projected index", "pca", takes_dim=True),
    Variant(
        "matryoshka", "index", "the first N dimensions (for Matryoshka-trained models)", "matryoshka", takes_dim=True
    ),
):
    VARIANTS.add(_variant.name, _variant)

DEFAULT_VARIANTS = (
    "int8-dynamic",
    "int8-static",
    "fp16",
    "static",
    "student",
    "int8-index",
    "binary-index",
    "pca",
    "matryoshka",
)
_WITH_DIM = re.compile(r"^([a-z0-9-]+?)-(\d+)$")


def parse_variant(text: str, *, model_dim: int) -> Variant:
    """``pca-192`` -> the pca variant with ``index_dim=192``; an unknown name is one line with
    "Did you mean"; a dimension above the model's is refused before any work."""
    name = text.strip().lower()
    dim: int | None = None
    match = _WITH_DIM.match(name)
    if match and match.group(1) in VARIANTS and VARIANTS.get(match.group(1)).takes_dim:
        name, dim = match.group(1), int(match.group(2))
    variant = VARIANTS.get(name)
    if dim is not None or variant.takes_dim:
        dim = dim if dim is not None else max(1, model_dim // 2)
        if not 1 <= dim <= model_dim:
            raise EmbedlabError(
                f"variant {text!r} asks for {dim} dimensions of a {model_dim}-dimensional model",
                expected=f"{variant.name}-N with 1 <= N <= {model_dim}",
            )
        return Variant(f"{variant.name}-{dim}", "index", variant.about, variant.index, {"dim": dim}, takes_dim=True)
    return variant


def parse_variants(texts: list[str] | None, *, model_dim: int) -> tuple[Variant, ...]:
    """The variants asked for (comma-separated, repeatable), in order, each once; None: the defaults."""
    names = [n for t in texts for n in t.split(",") if n.strip()] if texts else list(DEFAULT_VARIANTS)
    chosen: dict[str, Variant] = {}
    for name in names:
        variant = parse_variant(name, model_dim=model_dim)
        chosen.setdefault(variant.name, variant)
    if not chosen:
        raise EmbedlabError("no variants", expected=f"names from {', '.join(VARIANTS.names())}")
    return tuple(chosen.values())

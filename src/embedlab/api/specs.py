"""Python values -> the specs the library runs on, checked once at the API boundary.

A model is named as on the command line (``"all-MiniLM-L6-v2:pooling=cls"``, ``"bm25 +
all-MiniLM-L6-v2"``), as a :class:`~embedlab.encoders.spec.ModelSpec` or
:class:`~embedlab.search.pipeline.PipelineSpec`, or as a loaded :class:`~embedlab.api.model.Model`
(its spec).  Mistakes are one-line :class:`~embedlab.errors.EmbedlabError` s, as on the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embedlab.encoders.spec import ModelSpec, model_spec_from, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.eval.metrics import DEFAULT_METRICS, MetricSpec, parse_metrics
from embedlab.search.pipeline import PipelineSpec, parse_retrieval

Cache = bool | str | Path  # True: the default folder ($EMBEDLAB_CACHE), False: no cache, else that folder
Retrieval = ModelSpec | PipelineSpec


def model_spec(name: str | ModelSpec, options: dict[str, Any]) -> ModelSpec:
    """``NAME[:key=value,...]`` or a ModelSpec, with keyword options on top, validated as on the CLI."""
    if isinstance(name, ModelSpec):
        base = name
    elif isinstance(name, str):
        base = parse_model_spec(name)
    else:
        raise EmbedlabError(f"a model is named by a string, found {type(name).__name__}", expected="e.g. 'bm25'")
    if not options:
        return base
    return model_spec_from({**base.flat(), **options}, source=repr(base.model))


def dense_model(value: object) -> ModelSpec:
    """One model (not a pipeline): a name or spec string, a ModelSpec, or a loaded Model."""
    from embedlab.api.model import Model

    if isinstance(value, Model):
        return value.spec
    if isinstance(value, str | ModelSpec):
        return model_spec(value, {})
    raise EmbedlabError(
        f"cannot use a {type(value).__name__} as a model", expected="a model name, a ModelSpec or an embedlab.Model"
    )


def retrieval(value: object) -> Retrieval:
    """A model or pipeline, as :func:`evaluate` and :func:`select_model` take them."""
    from embedlab.api.model import Model

    if isinstance(value, ModelSpec | PipelineSpec):
        return value
    if isinstance(value, Model):
        return value.spec
    if isinstance(value, str):
        return parse_retrieval(value)
    raise EmbedlabError(
        f"cannot use a {type(value).__name__} as a model",
        expected="a model name or pipeline string, a ModelSpec, a PipelineSpec or an embedlab.Model",
    )


def retrievals(values: object, *, what: str = "model") -> tuple[Retrieval, ...]:
    return tuple(retrieval(v) for v in as_list(values, what=what))


def metrics(values: Sequence[str | MetricSpec] | str | None) -> tuple[MetricSpec, ...]:
    """``["ndcg@10", "recall@100"]`` (or one string; None: the CLI's defaults) -> MetricSpecs."""
    items = as_list(DEFAULT_METRICS if values is None else values, what="metric")
    out: list[MetricSpec] = []
    for item in items:
        if isinstance(item, MetricSpec):
            spec = item
        elif isinstance(item, str):
            (spec,) = parse_metrics([item])
        else:
            raise EmbedlabError(f"a metric is a string such as 'ndcg@10', found {type(item).__name__}")
        if spec not in out:
            out.append(spec)
    return tuple(out)


def datasets(values: object) -> tuple[str, ...]:
    """Dataset folders or names in ``$EMBEDLAB_DATA`` (one, or a list)."""
    out = []
    for value in as_list(values, what="dataset"):
        if not isinstance(value, str | Path):
            raise EmbedlabError(f"a dataset is a folder or a name, found {type(value).__name__}")
        out.append(str(value))
    return tuple(out)


def as_list(values: object, *, what: str) -> list[Any]:
    """One value or a list/tuple of them; a string is one value (not its characters)."""
    if isinstance(values, str | Path) or not isinstance(values, Sequence):
        values = [values]
    items = list(values)
    if not items:
        raise EmbedlabError(f"no {what} given", expected=f"at least one {what}")
    return items


def cache_option(cache: Cache) -> tuple[bool, Path | None]:
    """``cache=`` of the API -> (use the cache, its folder; None: the default)."""
    if isinstance(cache, bool):
        return cache, None
    if isinstance(cache, str | Path) and str(cache).strip():
        return True, Path(cache).expanduser()
    raise EmbedlabError(f"invalid cache option {cache!r}", expected="True, False or a folder")


def seconds(value: object, *, name: str) -> float:
    """A finite number of seconds >= 0 (``0``: do not wait), or one clear error naming ``name``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    raise EmbedlabError(f"invalid {name}", found=repr(value), expected="a number of seconds >= 0")


def positive_int(value: object, *, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise EmbedlabError(f"invalid {name}", found=repr(value), expected=f"a whole number >= {minimum}")
    return value

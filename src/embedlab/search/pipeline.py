"""Retrieval pipelines as data: a first stage (one retriever, or several fused) and re-rank stages.

One value (:class:`PipelineSpec`) describes a pipeline for ``eval``, ``select`` candidates,
``search`` and ``serve`` alike, written as one string or as a TOML table.

String grammar (spaces around the separators are optional)::

    PIPELINE := FIRST { ">>" RERANK }
    FIRST    := MODEL { "+" MODEL } [ "|" FUSION ]
    MODEL    := NAME[:key=value,...]          a model spec: "bm25", "all-MiniLM-L6-v2:pooling=cls", a folder
    FUSION   := METHOD [ ":" key=value,... ]  METHOD: rrf (default), minmax or zscore;
                                              keys: k (60, rrf only), weights (w1/w2/..., default all 1),
                                              candidates (100)
    RERANK   := RERANKER [ "@" DEPTH ] [ " fuse=" ( "last" | "weighted:" W ) ]
    RERANKER := "word-overlap" | a cross-encoder folder | "bi:" MODEL (a bi-encoder re-scoring)

Examples: ``bm25 + all-MiniLM-L6-v2`` (hybrid, RRF k=60 over each one's top 100),
``bm25+all-MiniLM-L6-v2 | rrf:k=20,weights=1/2``, ``bm25 + all-MiniLM-L6-v2 | minmax:weights=0.3/0.7``,
``all-MiniLM-L6-v2 >> models/ce@50``, ``all-MiniLM-L6-v2 >> bi:all-mpnet-base-v2@100 fuse=weighted:0.3``.
A plain model spec is a one-stage pipeline, so every ``-m MODEL`` is a pipeline too.
In a string, option values cannot contain ``+``, ``|`` or ``>>``; a TOML table takes any value::

    [pipeline]
    first = ["bm25", "all-MiniLM-L6-v2"]          # or one string
    fusion = { k = 60, weights = [1, 2], candidates = 100 }   # method = "minmax" / "zscore" also
    rerank = [{ reranker = "models/ce", depth = 50, fuse = "weighted:0.3" }]

Fusion (:mod:`embedlab.search.fusion`) combines each first-stage retriever's top ``candidates``:
reciprocal rank fusion, or a weighted sum of min-max / z-score normalised scores.  A re-ranker
re-scores the top ``depth`` and orders them by its score (ties: the previous order); below
``depth`` the previous order is kept.  Stage-score fusion: ``fuse=last`` (default) keeps only the
re-ranker's score; ``fuse=weighted:W`` orders the re-scored candidates by
``W * minmax(previous score) + (1 - W) * minmax(re-ranker score)`` (both min-max normalised over
the re-scored candidates, :func:`embedlab.search.rerank.stage_scores`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedlab.encoders.spec import ModelSpec, model_spec_from, option_text, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.search.fusion import METHODS, RRF_K, check_fusion

RERANK_DEPTH = 20
CANDIDATES = 100
_STAGES = re.compile(r"\s*>>\s*")
_MODELS = re.compile(r"\s*\+\s*")
_FUSE = re.compile(r"^(?P<stage>.*?)\s+fuse=(?P<fuse>\S*)\s*$")


@dataclass(frozen=True)
class Fusion:
    """Fusion of the first-stage rankings, each cut at ``candidates``: ``rrf`` (reciprocal rank
    fusion with constant ``rrf_k``) or ``minmax`` / ``zscore`` (weighted sum of normalised scores)."""

    rrf_k: float = RRF_K
    weights: tuple[float, ...] | None = None  # None: all 1
    candidates: int = CANDIDATES
    method: str = "rrf"

    def __str__(self) -> str:
        parts = []
        if self.method == "rrf" and self.rrf_k != RRF_K:
            parts.append(f"k={self.rrf_k:g}")
        if self.weights is not None:
            parts.append("weights=" + "/".join(f"{w:g}" for w in self.weights))
        if self.candidates != CANDIDATES:
            parts.append(f"candidates={self.candidates}")
        return self.method + (":" + ",".join(parts) if parts else "")


@dataclass(frozen=True)
class Rerank:
    reranker: str  # "word-overlap", a cross-encoder folder or "bi:MODEL"
    depth: int = RERANK_DEPTH
    fuse: float = 0.0  # W in fuse=weighted:W (the previous stage's share); 0: fuse=last

    def __str__(self) -> str:
        return f"{self.reranker}@{self.depth}" + (f" fuse=weighted:{self.fuse:g}" if self.fuse else "")


@dataclass(frozen=True)
class PipelineSpec:
    first: tuple[ModelSpec, ...]
    fusion: Fusion = field(default_factory=Fusion)
    rerank: tuple[Rerank, ...] = ()
    label: str | None = None

    @property
    def single(self) -> ModelSpec | None:
        """The model, when the pipeline is just one model (no fusion, no re-ranking)."""
        return self.first[0] if len(self.first) == 1 and not self.rerank else None

    @property
    def name(self) -> str:
        """A short label: the given one, the single model's name, else the pipeline string."""
        if self.label:
            return self.label
        return self.single.name if self.single is not None else str(self)

    def __str__(self) -> str:
        text = " + ".join(_model_text(m) for m in self.first)
        if len(self.first) > 1 and self.fusion != Fusion():
            text += f" | {self.fusion}"
        return text + "".join(f" >> {stage}" for stage in self.rerank)


def _model_text(spec: ModelSpec) -> str:
    options = {k: v for k, v in spec.flat().items() if k != "model"}
    return spec.model + (":" + ",".join(f"{k}={option_text(v)}" for k, v in options.items()) if options else "")


def parse_retrieval(text: str) -> ModelSpec | PipelineSpec:
    """What ``-m`` takes: a plain model stays a :class:`ModelSpec` (so its results, names and
    cache entries are those of the model), anything with ``+``, ``|`` or ``>>`` is a pipeline."""
    pipeline = parse_pipeline(text)
    return pipeline.single if pipeline.single is not None else pipeline


def spec_record(spec: ModelSpec | PipelineSpec) -> dict[str, Any]:
    """A model's changed options, or a pipeline's string (and label), for result files."""
    if isinstance(spec, ModelSpec):
        return spec.flat()
    return {"pipeline": str(spec), **({"label": spec.label} if spec.label else {})}


def parse_pipeline(text: str) -> PipelineSpec:
    """The string grammar above -> PipelineSpec, one clear line for any mistake."""
    if not isinstance(text, str) or not text.strip():
        raise EmbedlabError(
            "empty pipeline", expected="a model spec, e.g. 'bm25 + all-MiniLM-L6-v2 >> word-overlap@50'"
        )
    stages = _STAGES.split(text.strip())
    first_text, fusion = stages[0], Fusion()
    if "|" in first_text:
        first_text, _, fusion_text = first_text.partition("|")
        fusion = _parse_fusion(fusion_text.strip(), source=text)
    parts = _MODELS.split(first_text.strip())
    if not all(part.strip() for part in parts):
        raise EmbedlabError(f"empty model in pipeline {text!r}", expected="MODEL + MODEL")
    models = tuple(parse_model_spec(part) for part in parts)
    rerank = tuple(_parse_rerank(stage, source=text) for stage in stages[1:])
    return _checked(PipelineSpec(first=models, fusion=fusion, rerank=rerank), source=repr(text))


def _parse_fusion(text: str, *, source: str) -> Fusion:
    method, _, options = text.partition(":")
    method = method.strip()
    if method not in METHODS:
        raise EmbedlabError(
            f"unknown fusion {method!r} in pipeline {source!r}",
            expected="rrf[:k=60,weights=1/1], minmax[:weights=0.3/0.7] or zscore[:weights=...]",
        )
    values: dict[str, Any] = {}
    for item in filter(str.strip, options.split(",")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in ("k", "weights", "candidates"):
            raise EmbedlabError(
                f"cannot read fusion option {item.strip()!r} in pipeline {source!r}",
                expected="k=NUMBER, weights=W1/W2/..., candidates=N",
            )
        values[key] = value.strip()
    try:
        return Fusion(
            rrf_k=float(values.get("k", RRF_K)),
            weights=tuple(float(w) for w in values["weights"].split("/")) if "weights" in values else None,
            candidates=int(values.get("candidates", CANDIDATES)),
            method=method,
        )
    except ValueError:
        raise EmbedlabError(
            f"invalid fusion options in pipeline {source!r}",
            found=repr(options),
            expected="k=NUMBER, weights=W1/W2/..., candidates=WHOLE NUMBER",
        ) from None


def _parse_rerank(text: str, *, source: str) -> Rerank:
    fuse = 0.0
    if match := _FUSE.match(text.strip()):
        text, fuse = match["stage"], parse_stage_fuse(match["fuse"], source=source)
    name, at, depth = text.strip().rpartition("@")
    if not at or not depth.strip().isdigit():
        name, depth = text.strip(), str(RERANK_DEPTH)
    if not name.strip():
        raise EmbedlabError(f"empty re-rank stage in pipeline {source!r}", expected="RERANKER[@DEPTH]")
    return Rerank(reranker=name.strip(), depth=int(depth), fuse=fuse)


def parse_stage_fuse(text: str, *, source: str) -> float:
    """``last`` -> 0; ``weighted:W`` -> W (the previous stage's share, 0 <= W <= 1)."""
    method, _, weight = text.strip().partition(":")
    if method == "last" and not weight:
        return 0.0
    try:
        value = float(weight) if method == "weighted" else None
    except ValueError:
        value = None
    if value is None or not 0.0 <= value <= 1.0:
        raise EmbedlabError(
            f"cannot read stage fusion {text!r} in pipeline {source!r}",
            expected="fuse=last or fuse=weighted:W with 0 <= W <= 1 (W: the previous stage's share)",
        )
    return value


def _checked(spec: PipelineSpec, *, source: str) -> PipelineSpec:
    if len(spec.first) > 1:
        if len(spec.first) > 8:
            raise EmbedlabError(
                f"too many first-stage models in {source}", found=str(len(spec.first)), expected="at most 8"
            )
        check_fusion(spec.fusion.rrf_k, spec.fusion.weights, len(spec.first))
    if spec.fusion.method != "rrf" and spec.fusion.rrf_k != RRF_K:
        raise EmbedlabError(
            f"fusion option k is for rrf, not {spec.fusion.method} in {source}",
            expected=f"{spec.fusion.method}:weights=W1/W2 (normalised scores have no rank constant)",
        )
    if spec.fusion.method not in METHODS:
        raise EmbedlabError(f"unknown fusion method {spec.fusion.method!r} in {source}", expected=", ".join(METHODS))
    if not 1 <= spec.fusion.candidates <= 10_000:
        raise EmbedlabError(
            f"invalid fusion candidates in {source}",
            found=str(spec.fusion.candidates),
            expected="a whole number from 1 to 10000",
        )
    for stage in spec.rerank:
        if not 1 <= stage.depth <= 1000:
            raise EmbedlabError(
                f"invalid re-rank depth in {source}", found=str(stage.depth), expected="a whole number from 1 to 1000"
            )
    return spec


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    class _Fusion(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        method: str = "rrf"
        k: float = RRF_K
        weights: list[float] | None = None
        candidates: int = CANDIDATES

    class _Rerank(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        reranker: str = Field(min_length=1)
        depth: int = RERANK_DEPTH
        fuse: str = "last"

    first: str | list[str | dict[str, Any]] = Field(min_length=1)
    fusion: _Fusion = Field(default_factory=_Fusion)
    rerank: list[_Rerank] = Field(default_factory=list)
    label: str | None = None


def pipeline_from_table(table: Mapping[str, Any], *, source: str) -> PipelineSpec:
    """A TOML/YAML table (see the module docstring) -> PipelineSpec; ``source`` names it in errors."""
    try:
        parsed = _Table.model_validate(dict(table))
    except ValidationError as err:
        error = err.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "pipeline"
        raise EmbedlabError(
            f"invalid pipeline {where!r} in {source}: {error['msg']}",
            expected="first = [MODEL, ...], fusion = {method, k, weights, candidates}, "
            "rerank = [{reranker, depth, fuse}]",
        ) from None
    items = [parsed.first] if isinstance(parsed.first, str) else parsed.first
    first = tuple(
        parse_model_spec(item) if isinstance(item, str) else model_spec_from(item, source=source) for item in items
    )
    fusion = Fusion(
        rrf_k=parsed.fusion.k,
        weights=tuple(parsed.fusion.weights) if parsed.fusion.weights is not None else None,
        candidates=parsed.fusion.candidates,
        method=parsed.fusion.method,
    )
    rerank = tuple(
        Rerank(reranker=r.reranker, depth=r.depth, fuse=parse_stage_fuse(r.fuse, source=source)) for r in parsed.rerank
    )
    return _checked(PipelineSpec(first=first, fusion=fusion, rerank=rerank, label=parsed.label), source=source)

"""``embedlab tune depth``: the re-rank depth that earns its latency.

For a pipeline whose last stage re-ranks (a cross-encoder, ``bi:MODEL``, ...), the last stage's
depth d takes each value of ``depths``; for each d the pipeline answers every query (quality)
and single queries are timed one at a time (p50/p95 latency, :func:`embedlab.eval.measure.latency_probe`,
uncached, what a user waits for).  The choice is made on the dev queries
(:mod:`embedlab.tune.splits`) and the curve reported on the others:

1. best = the depth with the highest dev mean of ``metric`` (ties: the smaller depth);
2. every other depth is compared with it on the same dev queries by
   :func:`embedlab.eval.compare.compare_to_reference` (paired randomization test, Holm over the
   k - 1 comparisons); a depth is "not significantly below the best" when its Holm-adjusted p is
   >= ``alpha`` or its mean is not lower;
3. chosen = the smallest such depth whose p95 <= ``max_p95_ms``.  When every depth within the
   budget is significantly below the best, the best of them is chosen and the result says so;
   when no depth is within the budget, nothing is chosen (the CLI says so in one line, exit 2).

With ``fuse_weights`` the last stage's score fusion is tuned too (``fuse=last`` for 0, else
``fuse=weighted:W``, :func:`embedlab.search.rerank.stage_scores`): at each depth the weight
with the best dev mean is kept (ties: the smaller weight), and the depths are then compared with
their own best weights.  A weak re-ranker that only helps beside the first stage's score is
used that way instead of being judged on its own ordering.

A re-ranker's score of a (query, passage) pair depends on neither the depth nor the fusion
weight, so the first stage runs once per depth and quality runs share a memo of scores: one re-ranker pass
at the largest depth.  Latency is timed without the memo.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from embedlab import settings
from embedlab.cache.store import EmbeddingCache
from embedlab.encoders.base import EncodeStats
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import PairedComparison, compare_to_reference
from embedlab.eval.evaluate import evaluate
from embedlab.eval.measure import latency_probe
from embedlab.eval.metrics import MetricSpec
from embedlab.search.build import build_retriever, check_retrievable
from embedlab.search.pipeline import PipelineSpec
from embedlab.search.rerank import Reranker
from embedlab.search.staged import PipelineRetriever
from embedlab.tune.splits import Split, TuneSpec, intervals, split_queries

log = logging.getLogger(__name__)
DEPTHS = (10, 20, 50, 100, 200)
FUSE_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the CLI's default grid; 0 = fuse=last


@dataclass(frozen=True, kw_only=True)
class DepthTuneSpec(TuneSpec):
    """``pipeline``'s last stage re-ranks; that stage's depth is tuned."""

    depths: tuple[int, ...] = DEPTHS
    max_p95_ms: float | None = None
    alpha: float = 0.05
    latency_queries: int = 50
    fuse_weights: tuple[float, ...] = ()  # stage-fusion weights tried at each depth; (): the pipeline's own


@dataclass(frozen=True)
class DepthPoint:
    depth: int
    dev_mean: float  # the tuned metric on the dev queries
    fuse: float  # the last stage's fusion weight at this depth (0: fuse=last)
    fuse_trials: dict[float, float]  # weight -> dev mean (one entry when the weight is not tuned)
    versus_best: PairedComparison | None  # None for the best depth itself
    not_worse: bool
    means: dict[str, float]  # reported queries, per metric key
    intervals: dict[str, tuple[float, float]]
    p50_ms: float
    p95_ms: float
    within_budget: bool


@dataclass(frozen=True)
class DepthTuneResult:
    spec: DepthTuneSpec
    split: Split
    points: list[DepthPoint]
    best: int
    chosen: int | None  # None: no depth is within the latency budget
    note: str

    @property
    def pipeline(self) -> PipelineSpec | None:
        if self.chosen is None:
            return None
        point = next(p for p in self.points if p.depth == self.chosen)
        return with_depth(self.spec.pipeline, self.chosen, fuse=point.fuse)

    @property
    def fastest(self) -> DepthPoint:
        return min(self.points, key=lambda p: (p.p95_ms, p.depth))


def with_depth(pipeline: PipelineSpec, depth: int, *, fuse: float | None = None) -> PipelineSpec:
    """``pipeline`` with its last stage at ``depth`` (and fusion weight ``fuse`` when given)."""
    last = replace(pipeline.rerank[-1], depth=depth)
    if fuse is not None:
        last = replace(last, fuse=fuse)
    return replace(pipeline, rerank=(*pipeline.rerank[:-1], last), label=None)


class _Memo:
    """A re-ranker whose (query, passage) scores are kept: every depth re-uses the deepest's."""

    def __init__(self, inner: Reranker, scores: dict[tuple[str | Path, str | Path], float]) -> None:
        self.inner = inner
        self.name = inner.name
        self.reads_images = getattr(inner, "reads_images", False)
        self.scores = scores

    def score(self, query: str | Path, texts: Sequence[str | Path]) -> list[float]:
        """Texts, or image files for a wrapped bi-encoder (``reads_images``)."""
        missing = list(dict.fromkeys(t for t in texts if (query, t) not in self.scores))
        scored = cast(Any, self.inner).score(query, missing) if missing else []  # the inner's own item types
        for text, value in zip(missing, scored, strict=True):
            self.scores[(query, text)] = float(value)
        return [self.scores[(query, t)] for t in texts]


def check_depths(spec: DepthTuneSpec) -> tuple[int, ...]:
    if not spec.pipeline.rerank:
        raise EmbedlabError(
            "tune depth needs a pipeline with a re-rank stage",
            found=str(spec.pipeline),
            expected="FIRST >> RERANKER, e.g. 'all-MiniLM-L6-v2 >> bi:all-mpnet-base-v2' or '... >> models/ce'",
        )
    depths = tuple(sorted(set(spec.depths)))
    low = [d for d in depths if d < spec.metric.k]
    if low:
        raise EmbedlabError(
            f"re-rank depth {low[0]} is below k={spec.metric.k} of {spec.metric.label}",
            expected=f"depths >= {spec.metric.k}: below it the top {spec.metric.k} is partly not re-ranked",
        )
    if not depths or depths[-1] > 1000:
        raise EmbedlabError("invalid re-rank depths", found=repr(spec.depths), expected="whole numbers up to 1000")
    if spec.max_p95_ms is not None and not spec.max_p95_ms > 0:
        raise EmbedlabError("invalid latency budget", found=f"{spec.max_p95_ms:g} ms", expected="> 0 ms")
    bad = [w for w in spec.fuse_weights if not 0.0 <= w < 1.0]
    if bad:
        raise EmbedlabError(
            "invalid stage-fusion weight",
            found=f"{bad[0]:g}",
            expected="0 <= W < 1 (0: the re-ranker's score alone; W: the previous stage's share)",
        )
    return depths


ScoreMemo = dict[str, dict[tuple[str | Path, str | Path], float]]


def run_tune_depth(spec: DepthTuneSpec, *, memo: ScoreMemo | None = None) -> DepthTuneResult:
    """``memo`` (re-ranker name -> (query, passage) -> score) carries scores across calls: tuning the
    same re-ranker behind several first stages scores each shared candidate once."""
    depths = check_depths(spec)
    check_retrievable(spec.pipeline)
    split = split_queries(spec.dataset, dev=spec.dev, fraction=spec.dev_fraction, seed=spec.seed)
    metrics = tuple(dict.fromkeys((spec.metric, *spec.report_metrics)))
    k = max(m.k for m in metrics)
    base = build_retriever(with_depth(spec.pipeline, depths[-1]))
    if not isinstance(base, PipelineRetriever):  # a re-rank stage always makes a pipeline
        raise TypeError("a pipeline with a re-rank stage builds a PipelineRetriever")
    kept: ScoreMemo = {} if memo is None else memo
    memoised: list[Reranker] = [_Memo(r, kept.setdefault(r.name, {})) for r in base.rerankers]
    cache = EmbeddingCache(spec.cache_dir or settings.cache_dir()) if spec.use_cache else None
    per_query: dict[int, dict[str, dict[str, float]]] = {}
    fuses: dict[int, tuple[float, dict[float, float]]] = {}
    latency: dict[int, tuple[float, float]] = {}
    weights = tuple(dict.fromkeys(spec.fuse_weights)) or (spec.pipeline.rerank[-1].fuse,)
    images = _query_images(split)
    queries: dict[str, str] | dict[str, Path] = images if images is not None else split.queries
    try:
        base.index(split.dataset.iter_documents(), cache=cache, stats=EncodeStats(), show_progress=spec.show_progress)
        for depth in reversed(depths):  # the deepest first fills the memo
            # once per depth (a fused first stage takes max(k, depth) from each retriever), not per weight
            variant = base.variant(with_depth(spec.pipeline, depth))
            candidates = (
                variant.first_stage_images(images, k, cache=cache, stats=EncodeStats())
                if images is not None
                else variant.first_stage(split.queries, k, cache=cache, stats=EncodeStats())
            )
            trials: dict[float, tuple[float, dict[str, dict[str, float]]]] = {}
            for weight in weights:
                quality = base.variant(with_depth(spec.pipeline, depth, fuse=weight), rerankers=memoised)
                run = quality.reranked(candidates, queries, k, cache=cache)
                dev = evaluate(run, split.dev_qrels, [spec.metric])
                reported = evaluate(run, split.reported_qrels, metrics).per_query
                trials[weight] = (
                    dev.mean[spec.metric.key],
                    {**dev.per_query, **{f"reported:{key}": v for key, v in reported.items()}},
                )
            fuse = max(sorted(trials), key=lambda w: trials[w][0])  # ties: the smaller weight
            per_query[depth] = trials[fuse][1]
            fuses[depth] = (fuse, {w: mean for w, (mean, _) in trials.items()})
            timed = base.variant(with_depth(spec.pipeline, depth, fuse=fuse))
            probe = latency_probe(
                functools.partial(_search_image_file, timed)  # as eval times image queries
                if images is not None
                else functools.partial(timed.search_one, k=10),
                [str(images[q]) for q in split.reported] if images is not None else list(split.reported.values()),
                samples=spec.latency_queries,
                seed=spec.seed,
            )
            latency[depth] = (float(probe.get("p50_ms", 0.0)), float(probe.get("p95_ms", 0.0)))
            log.info("depth %d: p95 %.1f ms", depth, latency[depth][1])
    finally:
        if cache is not None:
            cache.close()
    return _choose(spec, split, depths, per_query, latency, metrics, fuses)


def _search_image_file(pipeline: PipelineRetriever, path: str) -> list[tuple[str, float]]:
    return pipeline.search_image_one(Path(path), 10)


def _query_images(split: Split) -> dict[str, Path] | None:
    """An image task's queries as image files (its first stage and re-ranker then read images);
    None for text queries.  A task mixing the two is one line."""
    if not split.images:
        return None
    if len(split.images) != len(split.queries):
        raise EmbedlabError(
            "tune depth takes text queries or image queries, not both in one task",
            found=f"{len(split.images)} image queries of {len(split.queries)}",
        )
    return split.images


def _choose(
    spec: DepthTuneSpec,
    split: Split,
    depths: tuple[int, ...],
    per_query: dict[int, dict[str, dict[str, float]]],
    latency: dict[int, tuple[float, float]],
    metrics: Sequence[MetricSpec],
    fuses: dict[int, tuple[float, dict[float, float]]],
) -> DepthTuneResult:
    key = spec.metric.key
    dev = {f"@{d}": per_query[d][key] for d in depths}
    dev_mean = {d: sum(dev[f"@{d}"].values()) / len(dev[f"@{d}"]) for d in depths}
    best = max(depths, key=lambda d: (dev_mean[d], -d))
    comparisons = {c.a: c for c in compare_to_reference(dev, f"@{best}", metric=key, seed=spec.seed)}
    points = []
    for d in depths:
        versus = comparisons.get(f"@{d}")
        reported = {m.key: per_query[d][f"reported:{m.key}"] for m in metrics}
        points.append(
            DepthPoint(
                depth=d,
                dev_mean=dev_mean[d],
                fuse=fuses[d][0],
                fuse_trials=fuses[d][1],
                versus_best=versus,
                not_worse=versus is None or versus.p_holm >= spec.alpha or versus.difference >= 0,
                means={name: sum(s.values()) / len(s) for name, s in reported.items()},
                intervals=intervals(reported, seed=spec.seed),
                p50_ms=latency[d][0],
                p95_ms=latency[d][1],
                within_budget=spec.max_p95_ms is None or latency[d][1] <= spec.max_p95_ms,
            )
        )
    eligible = [p for p in points if p.within_budget and p.not_worse]
    in_budget = [p for p in points if p.within_budget]
    if eligible:
        chosen: int | None = eligible[0].depth
        note = f"the smallest depth not significantly below the best (@{best}, Holm-adjusted p >= {spec.alpha:g})"
    elif in_budget:
        chosen = max(in_budget, key=lambda p: (p.dev_mean, -p.depth)).depth
        note = f"every depth within the budget is significantly below the best (@{best}); the best of them is chosen"
    else:
        chosen = None
        note = "no depth is within the latency budget"
    return DepthTuneResult(spec=spec, split=split, points=points, best=best, chosen=chosen, note=note)

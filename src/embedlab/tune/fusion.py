"""``embedlab tune fusion``: hybrid fusion settings searched on dev queries, reported on others.

The grid (every setting fused from the same cached candidate lists, :mod:`embedlab.tune.cached`):

- ``rrf``: RRF constant k in ``rrf_ks`` x per-retriever weights (the first retriever's weight is 1,
  each other's from ``weight_values``; only ratios matter);
- ``minmax`` / ``zscore``: convex combinations ``sum_i w_i norm_i(d)`` with the weights on the
  simplex in steps of ``alpha_step`` (two retrievers: alpha, 1 - alpha for alpha = 0, 0.1, ..., 1).

The setting with the best dev mean of ``metric`` wins (ties: the earlier in the grid, the
default RRF first, so a tie keeps the default).  On the reported queries (disjoint from dev,
:mod:`embedlab.tune.splits`) the tuned setting, the default RRF (k=60, equal weights) and each
retriever alone are scored with bootstrap intervals, and tuned vs default gets the paired
randomization test of :func:`embedlab.eval.compare.compare_pair` (one comparison, so no Holm).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from embedlab.data.types import Run
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import PairedComparison, compare_pair
from embedlab.eval.evaluate import evaluate
from embedlab.eval.metrics import MetricSpec
from embedlab.search.fusion import METHODS
from embedlab.search.pipeline import Fusion, PipelineSpec
from embedlab.tune.cached import retrieve
from embedlab.tune.splits import Split, TuneSpec, intervals, split_queries

log = logging.getLogger(__name__)
RRF_KS = (1.0, 5.0, 10.0, 20.0, 40.0, 60.0, 100.0)
WEIGHT_VALUES = (0.25, 0.5, 1.0, 2.0, 4.0)
ALPHA_STEP = 0.1


@dataclass(frozen=True, kw_only=True)
class FusionTuneSpec(TuneSpec):
    """``pipeline``: two or more first-stage models; its fusion's candidates are kept."""

    methods: tuple[str, ...] = METHODS
    rrf_ks: tuple[float, ...] = RRF_KS
    weight_values: tuple[float, ...] = WEIGHT_VALUES
    alpha_step: float = ALPHA_STEP


@dataclass(frozen=True)
class Row:
    """One system on the reported queries: means with bootstrap intervals per metric."""

    name: str
    pipeline: str
    means: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    per_query: dict[str, dict[str, float]] = field(repr=False)


@dataclass(frozen=True)
class FusionTuneResult:
    spec: FusionTuneSpec
    split: Split
    trials: list[tuple[str, float]]  # (fusion, dev mean), grid order
    tuned: PipelineSpec
    default: PipelineSpec
    rows: list[Row]  # tuned, default RRF, each retriever alone
    comparison: PairedComparison
    seconds: dict[str, float]


def settings_grid(
    count: int,
    *,
    candidates: int,
    methods: Sequence[str] = METHODS,
    rrf_ks: Sequence[float] = RRF_KS,
    weight_values: Sequence[float] = WEIGHT_VALUES,
    alpha_step: float = ALPHA_STEP,
) -> list[Fusion]:
    """Every setting, the default RRF first (see the module docstring)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise EmbedlabError(f"unknown fusion method {unknown[0] if unknown else ''!r}", expected=", ".join(METHODS))
    if not 0 < alpha_step <= 1 or abs(round(1 / alpha_step) * alpha_step - 1) > 1e-9:
        raise EmbedlabError("invalid alpha step", found=f"{alpha_step:g}", expected="1/N, e.g. 0.1 or 0.25")
    if any(k < 0 for k in rrf_ks) or any(w <= 0 for w in weight_values) or not rrf_ks or not weight_values:
        raise EmbedlabError("invalid grid", expected="RRF k values >= 0 and weights > 0")
    grid = [Fusion(candidates=candidates)]
    if "rrf" in methods:
        for k in rrf_ks:
            for rest in itertools.product(weight_values, repeat=count - 1):
                weights = None if all(w == 1.0 for w in rest) else (1.0, *rest)
                grid.append(Fusion(rrf_k=float(k), weights=weights, candidates=candidates))
    steps = round(1 / alpha_step)
    simplex = [
        tuple(round(p / steps, 6) for p in parts)
        for parts in itertools.product(range(steps + 1), repeat=count)
        if sum(parts) == steps
    ]
    for method in (m for m in METHODS if m != "rrf" and m in methods):
        grid += [Fusion(weights=w, candidates=candidates, method=method) for w in simplex]
    return list(dict.fromkeys(grid))  # the default once, first


def run_tune_fusion(spec: FusionTuneSpec) -> FusionTuneResult:
    models = spec.pipeline.first
    if len(models) < 2 or spec.pipeline.rerank:
        raise EmbedlabError(
            "tune fusion takes a hybrid first stage only",
            found=str(spec.pipeline),
            expected="two or more models joined by '+', no '>>' stage (tune a re-rank depth with `tune depth`)",
        )
    candidates = spec.pipeline.fusion.candidates
    grid = settings_grid(
        len(models),
        candidates=candidates,
        methods=spec.methods,
        rrf_ks=spec.rrf_ks,
        weight_values=spec.weight_values,
        alpha_step=spec.alpha_step,
    )
    split = split_queries(spec.dataset, dev=spec.dev, fraction=spec.dev_fraction, seed=spec.seed)
    metrics = tuple(dict.fromkeys((spec.metric, *spec.report_metrics)))
    k = max(m.k for m in metrics)
    cached = retrieve(
        models,
        split.dataset,
        split.queries,
        depth=max(candidates, k),
        use_cache=spec.use_cache,
        cache_dir=spec.cache_dir,
        show_progress=spec.show_progress,
    )
    dev, reported = cached.subset(list(split.dev)), cached.subset(list(split.reported))
    trials = [(str(f), evaluate(dev.fused(f, k=k), split.dev_qrels, [spec.metric]).mean[spec.metric.key]) for f in grid]
    best = max(range(len(grid)), key=lambda i: (trials[i][1], -i))
    tuned = replace(spec.pipeline, fusion=grid[best], label=None)
    default = replace(spec.pipeline, fusion=Fusion(candidates=candidates), label=None)
    log.info(
        "tuned on %d dev queries (%s): %s, dev %s %.4f",
        len(split.dev),
        split.source,
        tuned,
        spec.metric.label,
        trials[best][1],
    )
    rows = [
        _row("tuned", tuned, reported.fused(tuned.fusion, k=k), split, metrics, spec.seed),
        _row("default RRF", default, reported.fused(default.fusion, k=k), split, metrics, spec.seed),
    ]
    rows += [
        _row(name, PipelineSpec(first=(model,)), run, split, metrics, spec.seed)
        for name, model, run in zip(reported.names, models, reported.runs, strict=True)
    ]
    comparison = compare_pair(
        rows[0].per_query[spec.metric.key],
        rows[1].per_query[spec.metric.key],
        a="tuned",
        b="default RRF",
        metric=spec.metric.key,
        seed=spec.seed,
    )
    return FusionTuneResult(spec, split, trials, tuned, default, rows, comparison, cached.seconds)


def _row(name: str, pipeline: PipelineSpec, run: Run, split: Split, metrics: Sequence[MetricSpec], seed: int) -> Row:
    result = evaluate(run, split.reported_qrels, metrics)
    return Row(name, str(pipeline), dict(result.mean), intervals(result.per_query, seed=seed), result.per_query)

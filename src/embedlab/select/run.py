"""``embedlab select`` and ``embedlab pooling`` as library calls: evaluate every candidate
through the shared cache, then analyse."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedlab.encoders.spec import ModelSpec
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalReport, EvalSpec, run_eval
from embedlab.search.pipeline import PipelineSpec
from embedlab.select.analysis import Constraints, Selection, select
from embedlab.select.latency_check import check_cheaper  # same-shape latency claims re-timed

SELECT_METRICS = ("ndcg@10", "mrr@10", "recall@100", "map@100", "precision@10")


@dataclass(frozen=True)
class SelectSpec:
    datasets: tuple[str, ...]
    candidates: tuple[ModelSpec | PipelineSpec, ...]
    constraints: Constraints
    split: str = "test"
    cache_dir: Path | None = None
    use_cache: bool = True
    latency_queries: int = 100
    latency_repeats: int = 1
    latency_wait_quiet_s: float = 0.0
    seed: int = 0
    show_progress: bool = False
    reference: str | None = None  # the candidate retained quality is relative to (shrink: the original)


def run_selection(spec: SelectSpec) -> tuple[EvalReport, Selection]:
    report = run_eval(
        EvalSpec(
            datasets=spec.datasets,
            models=spec.candidates,
            metrics=tuple(parse_metrics(SELECT_METRICS)),
            split=spec.split,
            use_cache=spec.use_cache,
            cache_dir=spec.cache_dir,
            latency_queries=spec.latency_queries,
            latency_repeats=spec.latency_repeats,
            latency_wait_quiet_s=spec.latency_wait_quiet_s,
            seed=spec.seed,
            show_progress=spec.show_progress,
        )
    )
    selection = select(report, spec.constraints, seed=spec.seed, reference=spec.reference)
    return report, check_cheaper(
        report,
        selection,
        spec.candidates,
        dataset=spec.datasets[0],
        split=spec.split,
        samples=spec.latency_queries,
        seed=spec.seed,
    )


def pooling_candidates(model: str) -> tuple[ModelSpec, ...]:
    """The same transformer with mean, CLS and max pooling heads."""
    return tuple(
        ModelSpec(model=model, pooling=mode, label=f"{model.rstrip('/').split('/')[-1]}:{mode}")
        for mode in ("mean", "cls", "max")
    )

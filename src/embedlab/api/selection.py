"""``embedlab.select_model``: which model to ship, under latency, size and cost constraints.

The same work as ``embedlab select`` (which calls this function): every candidate evaluated
through the shared cache, then the trade-off matrix, Pareto fronts and a significance-tested
recommendation (:mod:`embedlab.select.analysis` states the rules).  Named ``select_model``
because ``embedlab.select`` is the subpackage that does the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from embedlab.api import specs
from embedlab.errors import EmbedlabError
from embedlab.eval.runner import EvalReport
from embedlab.select.analysis import Constraints, Selection
from embedlab.select.run import SelectSpec, run_selection


@dataclass(frozen=True)
class SelectionResult:
    """``recommended``: the model to ship (None when no candidate meets the constraints; ``reasons``
    say what to relax); ``selection``: the matrix, summaries, Pareto fronts and comparisons;
    ``report``: every candidate's evaluation; ``files``: what was written to ``out``, if given."""

    selection: Selection
    report: EvalReport
    files: tuple[Path, ...] = field(default=())

    @property
    def recommended(self) -> str | None:
        return self.selection.recommended

    @property
    def best(self) -> str | None:
        return self.selection.best

    @property
    def reasons(self) -> list[str]:
        return self.selection.reasons


def select_model(
    candidates: object = (),
    datasets: object = (),
    *,
    candidates_file: str | Path | None = None,
    max_p95_ms: float | None = None,
    max_size_mb: float | None = None,
    min_ndcg10: float | None = None,
    price_per_hour: float | None = None,
    alpha: float = 0.05,
    split: str = "test",
    cache: specs.Cache = True,
    latency_queries: int = 100,
    latency_repeats: int = 1,
    latency_wait_quiet_s: float = 0.0,
    seed: int = 0,
    out: str | Path | None = None,
    show_progress: bool = False,
) -> SelectionResult:
    """Evaluate every candidate on every dataset and recommend one, as ``embedlab select`` does.

    ``candidates``: model names, pipeline strings, specs or loaded models; ``candidates_file``: a
    TOML/YAML candidates file (its ``[machine] price_per_hour`` applies unless ``price_per_hour``
    is given), listed first.  Constraints: ``max_p95_ms`` (worst p95 over the datasets),
    ``max_size_mb``, ``min_ndcg10``; ``latency_repeats`` > 1: time latency that many times, keep the
    quietest run (a busy machine inflates p95 and can exclude a model), ``latency_wait_quiet_s`` > 0:
    wait up to that long for a quiet machine before each timing; ``alpha`` is the significance
    level for ties with the best.
    ``out``: a folder for selection.md/html/json and the eval files (checked before the work).

    >>> choice = select_model(["bm25", "bm25:k1=1.2,b=0.75"], "scifact", max_size_mb=100, latency_queries=5)
    >>> choice.recommended in ("bm25", "bm25:k1=1.2,b=0.75")
    True
    """
    chosen: list[specs.Retrieval] = []
    price = price_per_hour
    if candidates_file is not None:
        from embedlab.select.candidates import load_candidates

        from_file, machine = load_candidates(candidates_file)
        chosen += from_file
        price = price if price is not None else machine.price_per_hour
    if candidates not in ((), []):
        chosen += specs.retrievals(candidates, what="candidate")
    if not chosen:
        raise EmbedlabError("no candidates", expected="candidates=[MODEL, ...] and/or candidates_file=FILE")
    names = [s.name for s in chosen]
    if len(set(names)) != len(names):
        raise EmbedlabError(f"candidate {next(n for n in names if names.count(n) > 1)!r} is listed twice")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise EmbedlabError(f"alpha must be between 0 and 1, got {alpha}")
    limits = {"max_p95_ms": max_p95_ms, "max_size_mb": max_size_mb, "min_ndcg10": min_ndcg10, "price_per_hour": price}
    for option, value in limits.items():
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number and math.isfinite(value) and value >= 0):
            raise EmbedlabError(f"invalid {option}", found=repr(value), expected="a number >= 0")
    use_cache, cache_dir = specs.cache_option(cache)
    spec = SelectSpec(
        datasets=specs.datasets(datasets),
        candidates=tuple(chosen),
        constraints=Constraints(
            max_p95_ms=max_p95_ms,
            max_size_mb=max_size_mb,
            min_ndcg10=min_ndcg10,
            price_per_hour=price,
            alpha=alpha,
        ),
        split=split,
        cache_dir=cache_dir,
        use_cache=use_cache,
        latency_queries=specs.positive_int(latency_queries, name="latency_queries", minimum=0),
        latency_repeats=specs.positive_int(latency_repeats, name="latency_repeats", minimum=1),
        latency_wait_quiet_s=specs.seconds(latency_wait_quiet_s, name="latency_wait_quiet_s"),
        seed=seed,
        show_progress=show_progress,
    )
    if out is not None:
        from embedlab.output import check_output_folder

        check_output_folder(out)  # before the work, not after it
    report, selection = run_selection(spec)
    files: tuple[Path, ...] = ()
    if out is not None:
        from embedlab.select.report import write_selection

        files = tuple(write_selection(selection, report, Path(out)))
    return SelectionResult(selection=selection, report=report, files=files)

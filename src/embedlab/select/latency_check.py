"""The latency rule (:mod:`embedlab.eval.latency_compare`) applied to select's recommendation.

Select recommends a candidate statistically tied with the best one when it is cheaper, by the
mean of its own latency probe.  When the two have the same shape (a fine-tune and its base, two
checkpoints of one model), those probes were taken minutes apart and their gap can be machine
noise alone.  Then the two are timed again, interleaved on the same queries, and the claim
stands only if the paired test says the recommended one is faster; otherwise the best one is
recommended ("same latency (p = ...)": nothing to buy with the quality given up).

``embedlab shrink`` hands its variants to select; they all differ from the original in shape
(precision, layers, index kind), so their own p50/p95 stand and this check does not fire.
"""

from __future__ import annotations

from dataclasses import replace

from embedlab.encoders.spec import ModelSpec
from embedlab.eval.latency_compare import probe_models, same_shape
from embedlab.eval.runner import EvalReport
from embedlab.search.pipeline import PipelineSpec
from embedlab.select.analysis import Selection

MIN_SAMPLES = 30  # the paired test's floor when the run timed fewer queries


def check_cheaper(
    report: EvalReport,
    selection: Selection,
    candidates: tuple[ModelSpec | PipelineSpec, ...],
    *,
    dataset: str,
    split: str,
    samples: int,
    seed: int,
) -> Selection:
    """``selection`` unchanged, or with the paired latency test said and the recommendation
    moved back to the best candidate when the cheaper one is not measurably faster."""
    best, choice = selection.best, selection.recommended
    if best is None or choice is None or best == choice or samples <= 0:
        return selection
    specs = {c.name: c for c in candidates}
    spec_best, spec_choice = specs.get(best), specs.get(choice)
    if not isinstance(spec_best, ModelSpec) or not isinstance(spec_choice, ModelSpec):
        return selection
    results = {r.model: r for r in report.results if r.ok}
    if best not in results or choice not in results:
        return selection
    rb, rc = results[best], results[choice]
    if not same_shape(rb.fingerprint, rc.fingerprint, rb.measured()["size"], rc.measured()["size"]):
        return selection
    paired = probe_models(
        spec_best,
        spec_choice,
        dataset=dataset,
        split=split,
        samples=max(samples, MIN_SAMPLES),
        seed=seed,
        alpha=selection.constraints.alpha,
    )
    said = f"{choice} has the shape of {best}; timed interleaved on the same queries: {paired.summary()}"
    if paired.different and paired.difference_ms < 0:
        return replace(selection, reasons=[*selection.reasons, f"{said}."])
    reasons = [
        f"{said}: not cheaper; recommend {best}." if line.startswith(f"{choice} is statistically tied with") else line
        for line in selection.reasons
    ]
    return replace(selection, recommended=best, reasons=reasons)

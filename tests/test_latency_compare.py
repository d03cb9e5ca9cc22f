"""The latency rule (issue 18): same-shape models are timed interleaved and tested, not subtracted."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.eval.latency_compare import compare_latency, probe_pair, same_shape
from tests.helpers import TINY_QUERIES

QUERIES = [q["text"] for q in TINY_QUERIES]


def test_compare_latency_on_known_samples() -> None:
    rng = np.random.default_rng(0)
    base = 0.010 * rng.lognormal(0.0, 0.3, size=200)  # 10 ms with multiplicative noise
    same = compare_latency(base, base * rng.lognormal(0.0, 0.3, size=200), a="A", b="B")
    assert not same.different and same.summary().startswith("same latency (p = ")
    slower = compare_latency(base, base + 0.002, a="A", b="B")  # +2 ms on every query
    assert slower.different and slower.p_value < 0.001
    # 2 ms per query exactly: float64 seconds -> ms, a rounding error far below 1e-9 ms
    assert slower.difference_ms == pytest.approx(2.0, abs=1e-9)
    assert slower.summary().startswith("B is slower by 2.0 ms (p = ")
    close = compare_latency(base, base * 1.05, a="A", b="B")  # 5% on every query: significant, below 10%
    assert close.p_value < 0.001 and not close.different
    assert close.summary().startswith("same latency (within 10%: x1.050, p = ")
    faster = compare_latency(base, base * 0.5, a="A", b="B")
    assert faster.summary().startswith("B is faster by") and faster.ratio == pytest.approx(0.5, rel=1e-9)
    with pytest.raises(ValueError, match="equal, non-empty"):
        compare_latency([0.1, 0.2], [0.1])


def test_same_shape_reads_backend_precision_dimension_and_parameters() -> None:
    fp = {"backend": "onnx", "precision": "fp32", "max_length": 256, "pooling": "mean", "weights": "a"}
    size = {"dim": 384, "parameters": 22_700_000}
    assert same_shape(fp, {**fp, "weights": "b"}, size, dict(size))  # other weights, same arithmetic
    assert not same_shape(fp, {**fp, "precision": "int8"}, size, size)
    assert not same_shape(fp, fp, size, {**size, "dim": 256})
    assert not same_shape(fp, {**fp, "backend": "torch"}, size, size)
    assert not same_shape({**fp, "index": "exact"}, {**fp, "index": "int8"}, size, size)  # shrink's index variants


def _probe(delay_ms: float) -> tuple[bool, str, float]:
    a = load_encoder(ModelSpec(model="hashing"))
    b = load_encoder(ModelSpec(model="hashing", options={"delay_ms": delay_ms}))
    assert same_shape(a.fingerprint.as_dict(), b.fingerprint.as_dict(), a.size_info(), b.size_info())
    result = probe_pair(
        lambda t: a.encode([t], role="query"),
        lambda t: b.encode([t], role="query"),
        QUERIES,
        a="A",
        b="B",
        samples=40,
    )
    return result.different, result.summary(), result.difference_ms


def test_identical_models_are_reported_as_the_same_latency() -> None:
    """Under the null the test says "different" with probability alpha = 0.05 by design, so the
    rule is checked on up to three independent probes: a correct rule fails all three with
    probability 0.05^3 ~ 1e-4; a rule that reports noise as a change fails every one."""
    summaries = []
    for _ in range(3):
        different, summary, _ms = _probe(0.0)
        summaries.append(summary)
        if not different:
            break
    # "same latency (p = ...)", or "same latency (within 10%: x0.960, p = 0.041)" when noise is
    # significant but under the practical margin: both are the "same" verdict
    assert summaries[-1].startswith("same latency ("), summaries


def test_a_genuinely_slower_model_is_reported_as_slower() -> None:
    different, summary, ms = _probe(5.0)
    assert different and summary.startswith("B is slower by ") and "(p = " in summary
    # time.sleep(0.005) sleeps at least 5 ms; a busy machine can add to it, never take away
    assert 4.5 <= ms < 50, summary


def test_select_does_not_buy_noise_between_same_shape_twins(tmp_path) -> None:
    """Two identical models tie on quality.  Whichever one select would call cheaper from the
    separate probes, the interleaved test must not confirm it: the best one is recommended, with
    "same latency".  Null case, so up to three independent probes (as above)."""
    from dataclasses import replace

    from embedlab.select.analysis import Constraints
    from embedlab.select.latency_check import check_cheaper
    from embedlab.select.run import SelectSpec, run_selection
    from tests.helpers import single_char_dataset

    twins = (
        ModelSpec(model="hashing", options={"dim": 512}, label="twin-a"),
        ModelSpec(model="hashing", options={"dim": 512}, label="twin-b"),
    )
    dataset = single_char_dataset(tmp_path / "synth")
    spec = SelectSpec(
        datasets=(str(dataset),),
        candidates=twins,
        constraints=Constraints(),
        cache_dir=tmp_path / "c",
        latency_queries=15,
    )
    report, sel = run_selection(spec)
    other = next(t.name for t in twins if t.name != sel.best)
    tied = f"{other} is statistically tied with {sel.best} at alpha=0.05 and costs 1.2x less compute per query"
    forced = replace(sel, recommended=other, reasons=[*sel.reasons, tied])  # as if its probe had been quicker
    for attempt in range(3):
        checked = check_cheaper(report, forced, twins, dataset=str(dataset), split="test", samples=30, seed=attempt)
        if checked.recommended == sel.best:
            break
    assert checked.recommended == sel.best
    assert any(
        "same latency (p = " in line and line.endswith(f"not cheaper; recommend {sel.best}.")
        for line in checked.reasons
    )
    assert tied not in checked.reasons


def test_select_keeps_a_same_shape_candidate_that_is_really_faster(tmp_path) -> None:
    from dataclasses import replace

    from embedlab.select.analysis import Constraints
    from embedlab.select.latency_check import check_cheaper
    from embedlab.select.run import SelectSpec, run_selection
    from tests.helpers import single_char_dataset

    twins = (
        ModelSpec(model="hashing", options={"dim": 512, "delay_ms": 5}, label="slow-twin"),
        ModelSpec(model="hashing", options={"dim": 512}, label="fast-twin"),
    )
    dataset = single_char_dataset(tmp_path / "synth")
    spec = SelectSpec(
        datasets=(str(dataset),),
        candidates=twins,
        constraints=Constraints(),
        cache_dir=tmp_path / "c",
        latency_queries=15,
    )
    report, sel = run_selection(spec)
    tied = "fast-twin is statistically tied with slow-twin at alpha=0.05 and costs 9.9x less compute per query"
    forced = replace(sel, best="slow-twin", recommended="fast-twin", reasons=[tied])
    checked = check_cheaper(report, forced, twins, dataset=str(dataset), split="test", samples=30, seed=0)
    assert checked.recommended == "fast-twin" and checked.reasons[0] == tied
    assert "timed interleaved" in checked.reasons[-1] and "fast-twin is faster by" in checked.reasons[-1]

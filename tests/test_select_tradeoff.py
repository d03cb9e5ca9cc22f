"""A recommendation says what it gives up: the better candidate that misses a constraint, by how
much, and what it would have gained (difference, interval and p-value against the recommended)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embedlab.encoders.spec import ModelSpec
from embedlab.select.analysis import Constraints
from embedlab.select.report import render_markdown
from embedlab.select.run import SelectSpec, run_selection
from embedlab.select.tradeoff import Miss
from tests.helpers import single_char_dataset

CANDIDATES = (
    ModelSpec(model="hashing", dim=512, delay_ms=25, label="dense-big"),
    ModelSpec(model="hashing", dim=8, delay_ms=2, label="dense-small"),
    ModelSpec(model="bm25"),
)


def _select(dataset: Path, tmp_path: Path, constraints: Constraints) -> tuple:
    spec = SelectSpec(
        datasets=(str(dataset),),
        candidates=CANDIDATES,
        constraints=constraints,
        cache_dir=tmp_path / "cache",
        latency_queries=15,
    )
    return run_selection(spec)


def test_the_better_model_over_the_latency_budget_is_named_with_its_gain_and_miss(tmp_path: Path) -> None:
    dataset = single_char_dataset(tmp_path / "synth")
    report, free = _select(dataset, tmp_path, Constraints())
    assert free.best == "dense-big" and free.given_up == []  # nothing is given up without constraints
    by = {s.model: s for s in free.summaries}
    budget = round(by["dense-big"].worst_p95_ms / 1.5, 1)  # well below dense-big (25 ms sleep), above dense-small
    report, tight = _select(dataset, tmp_path, Constraints(max_p95_ms=budget))
    assert tight.recommended == "dense-small"
    (lost,) = tight.given_up
    assert lost.model == "dense-big" and lost.recommended == "dense-small"
    tight_by = {s.model: s for s in tight.summaries}
    # one dataset: the mean paired difference is the difference of the means (float64 sums of <= 60 terms)
    gain = tight_by["dense-big"].mean_quality - tight_by["dense-small"].mean_quality
    assert lost.mean_difference == pytest.approx(gain, abs=1e-9)
    assert lost.mean_difference > 0 and lost.ci_low <= lost.mean_difference <= lost.ci_high
    assert lost.p_holm < 0.05  # 512 vs 8 hashing dimensions: a large, real difference on 60 queries
    (miss,) = lost.misses
    p95 = tight_by["dense-big"].worst_p95_ms
    assert miss.option == "--max-p95-ms" and miss.value == p95 and miss.limit == budget
    assert miss.relative == pytest.approx(p95 / budget - 1, rel=1e-12)
    line = next(r for r in tight.reasons if r.startswith("Given up: dense-big"))
    assert f"would gain {gain:+.4f} nDCG@10 over dense-small" in line
    percent = re.search(rf"p95 {p95:.1f} ms vs --max-p95-ms {budget:g}: \+(\d+)%", line)
    assert percent is not None and int(percent.group(1)) == round(100 * (p95 / budget - 1))
    assert "Given up: dense-big" in render_markdown(tight, report)


def test_a_missed_floor_reads_as_a_shortfall() -> None:
    miss = Miss("nDCG@10", 0.45, 0.5, "--min-ndcg10", "", is_floor=True)
    assert miss.relative == pytest.approx(0.1, rel=1e-12)
    assert miss.describe() == "nDCG@10 0.4500 vs --min-ndcg10 0.5: -10%"
    assert Miss("size", 150.0, 100.0, "--max-size-mb", " MB").describe() == "size 150.0 MB vs --max-size-mb 100: +50%"

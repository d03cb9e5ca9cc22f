"""``eval`` with several models: each model against the best (paired randomization test, bootstrap
interval of the difference, Holm), the same numbers in summary.json, the terminal and both reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from embedlab.cli.main import main
from embedlab.encoders.spec import ModelSpec
from embedlab.eval.compare import compare_to_reference
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalReport, EvalSpec, run_eval
from embedlab.eval.stats import holm
from embedlab.reports.html import render_html
from embedlab.reports.markdown import render_markdown
from embedlab.reports.results import summary_json
from embedlab.reports.table import print_summary
from tests.helpers import single_char_dataset

MODELS = (
    ModelSpec.model_validate({"model": "hashing", "dim": 512, "label": "dense-big"}),  # encoder options are extras
    ModelSpec.model_validate({"model": "hashing", "dim": 8, "label": "dense-small"}),
    ModelSpec(model="bm25"),
)


def _eval(dataset: Path, tmp_path: Path, models=MODELS, metrics=("ndcg@10", "recall@10")) -> EvalReport:
    spec = EvalSpec(
        datasets=(str(dataset),),
        models=tuple(models),
        metrics=tuple(parse_metrics(list(metrics))),
        cache_dir=tmp_path / "cache",
        latency_queries=3,
        seed=7,
    )
    return run_eval(spec)


@pytest.fixture(scope="module")
def synth_report(tmp_path_factory: pytest.TempPathFactory) -> EvalReport:
    tmp = tmp_path_factory.mktemp("versus")
    return _eval(single_char_dataset(tmp / "synth", n_queries=40), tmp)


def test_every_model_is_compared_with_the_best_hashing_model(synth_report: EvalReport) -> None:
    (dataset,) = synth_report.datasets
    found = synth_report.comparisons[dataset]
    means = {r.model: r.scores["ndcg_at_10"] for r in synth_report.results}
    best = max(means, key=lambda m: means[m])
    assert best.startswith("dense-")  # BM25 drops the one-character tokens by construction
    assert {c.a for c in found} == set(means) - {best} and {c.b for c in found} == {best}
    bm25 = next(c for c in found if c.a == "bm25")
    assert bm25.difference < 0 and bm25.ci_high < 0 and bm25.p_holm < 0.05
    for c in found:
        assert c.metric == "ndcg_at_10" and c.queries == 40
        assert c.ci_low <= c.difference <= c.ci_high <= 0  # nobody beats the best on average


def test_the_numbers_are_compare_to_reference_with_holm_over_the_family(synth_report: EvalReport) -> None:
    (dataset,) = synth_report.datasets
    found = synth_report.comparisons[dataset]
    per_query = {r.model: r.evaluation.per_query["ndcg_at_10"] for r in synth_report.results if r.evaluation}
    direct = compare_to_reference(per_query, found[0].b, metric="ndcg_at_10", seed=synth_report.spec.seed)
    assert found == direct  # the same function, seed and order: identical dataclasses, bit for bit
    assert [c.p_holm for c in found] == holm([c.p_value for c in found])
    assert len(found) == 2
    low, high = sorted(c.p_value for c in found)  # Holm for m = 2: 2 p_(1), then max(that, p_(2))
    assert sorted(c.p_holm for c in found) == [min(1.0, 2 * low), max(min(1.0, 2 * low), min(1.0, high))]


def test_every_output_carries_the_comparisons(synth_report: EvalReport) -> None:
    (dataset,) = synth_report.datasets
    found = synth_report.comparisons[dataset]
    block = json.loads(json.dumps(summary_json(synth_report), default=str))["comparisons"][dataset]
    assert [b["model"] for b in block] == [c.a for c in found]
    for b, c in zip(block, found, strict=True):
        assert b["best"] == c.b and b["metric"] == "ndcg@10"
        assert b["mean_difference"] == c.difference and b["ci"] == [c.ci_low, c.ci_high]
        assert b["p"] == c.p_value and b["p_holm"] == c.p_holm
    bm25 = next(c for c in found if c.a == "bm25")
    shown = f"{bm25.difference:+.4f}"
    markdown = render_markdown(synth_report)
    assert "## Against the best model" in markdown and f"| bm25 | {shown} |" in markdown
    page = render_html(synth_report)
    assert 'class="results versus"' in page and f"<td>{shown}</td>" in page
    console = Console(width=80, record=True, force_terminal=False)
    print_summary(synth_report, main_metrics=("ndcg@10",), console=console)
    text = console.export_text()
    assert "against the best" in text and shown in text and f"{bm25.p_holm:.4f}" in text
    assert max(len(line) for line in text.splitlines()) <= 80  # the comparison table fits the terminal


def test_the_first_metric_is_compared_when_ndcg_at_10_is_not_requested(tiny_dataset: Path, tmp_path: Path) -> None:
    report = _eval(tiny_dataset, tmp_path, models=MODELS[1:], metrics=("mrr@10", "recall@5"))
    (c,) = report.comparisons["tiny"]
    assert c.metric == "mrr_at_10" and c.queries == 3 and c.p_holm == c.p_value  # a family of one
    summary = json.loads(json.dumps(summary_json(report), default=str))
    assert summary["comparisons"]["tiny"][0]["metric"] == "mrr@10"


def test_a_single_model_eval_has_no_comparisons(tiny_dataset: Path, tmp_path: Path) -> None:
    report = _eval(tiny_dataset, tmp_path, models=MODELS[2:])
    assert report.comparisons == {}
    assert "comparisons" not in summary_json(report)
    assert "Against the best" not in render_markdown(report) and "versus" not in render_html(report)


def test_the_cli_writes_the_comparisons(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["eval", "-d", str(tiny_dataset), "-m", "hashing", "-m", "bm25", "--out", str(out)]
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--latency-queries", "3", "--no-progress"]) == 0
    assert "against the best" in capsys.readouterr().out
    (block,) = json.loads((out / "summary.json").read_text())["comparisons"]["tiny"]
    assert block["metric"] == "ndcg@10" and {block["model"], block["best"]} == {"hashing", "bm25"}
    assert "## Against the best model" in (out / "report.md").read_text()

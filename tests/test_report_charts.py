"""Charts that do not mislead: constraint lines, error bars (scatter and bars), a value axis
from 0 on bars, a minimum quality span, labels that do not overlap, and the eval report's wide
table split into quality / speed / size."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from embedlab.encoders.spec import ModelSpec
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalSpec, run_eval
from embedlab.reports.html import render_html
from embedlab.reports.svg import Point, grouped_bars, scatter
from embedlab.select.analysis import Constraints
from embedlab.select.report import write_selection
from embedlab.select.run import SelectSpec, run_selection
from tests.helpers import CHROMIUM, FLAGS, browser_or_skip, single_char_dataset

SVG = "{http://www.w3.org/2000/svg}"


def _labels(svg: str) -> list[tuple[float, float, str]]:
    root = ET.fromstring(svg)
    return [(float(t.get("x", 0)), float(t.get("y", 0)), t.text or "") for t in root.iter(f"{SVG}text")
            if t.get("class") == "label"]  # fmt: skip


def test_scatter_draws_constraints_and_spreads_colliding_labels() -> None:
    points = [Point("model-a", 10.0, 0.500), Point("model-b", 10.2, 0.501), Point("model-c", 40.0, 0.52)]
    svg = scatter(points, x_label="p95 (ms)", y_label="nDCG@10", x_limit=(30.0, "--max-p95-ms 30"), min_y_span=0.1)
    root = ET.fromstring(svg)
    lines = [e for e in root.iter(f"{SVG}line") if e.get("class") == "constraint"]
    assert len(lines) == 1 and "--max-p95-ms 30" in svg
    labels = sorted(_labels(svg), key=lambda t: t[1])
    a, b = (next(t for t in labels if t[2] == name) for name in ("model-a", "model-b"))
    assert abs(a[1] - b[1]) >= 12  # 0.001 apart in value, but the labels are a line apart
    ticks = [float(t.text) for t in root.iter(f"{SVG}text") if t.text and re.fullmatch(r"\d\.\d{3}", t.text)]
    assert max(ticks) - min(ticks) >= 0.1 - 1e-9  # 0.02 of spread drawn on at least 0.1 of axis


def test_bars_have_a_value_axis_from_zero_and_error_bars() -> None:
    svg = grouped_bars(["d1", "d2"], {"m": [0.4, 0.6], "n": [0.5, 0.3]}, y_label="nDCG@10",
                       errors={"m": [(0.35, 0.45), (0.55, 0.66)], "n": [(0.4, 0.6), (0.2, 0.4)]})  # fmt: skip
    root = ET.fromstring(svg)
    ticks = [float(t.text or "") for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == 0.0 and ticks[-1] >= 0.66  # the axis starts at 0 and reaches the highest interval
    assert len([e for e in root.iter(f"{SVG}path") if e.get("class") == "error-bar"]) == 4


def test_eval_report_splits_the_table_and_shows_error_bars(tmp_path: Path) -> None:
    dataset = single_char_dataset(tmp_path / "synth", n_queries=20)
    report = run_eval(
        EvalSpec(
            datasets=(str(dataset),),
            models=(ModelSpec(model="hashing", dim=64), ModelSpec(model="bm25")),
            metrics=tuple(parse_metrics(["ndcg@10", "recall@100"])),
            use_cache=False,
            latency_queries=5,
        )
    )
    page = render_html(report)
    for group in ("quality", "speed", "size"):
        assert f'class="results {group}"' in page
    quality = page.split('class="results quality"')[1].split("</table>")[0]
    assert "ndcg@10" in quality and "p95 ms" not in quality and "disk MB" not in quality
    svg = page[page.index("<svg") : page.index("</svg>") + 6]
    bars = [e for e in ET.fromstring(svg).iter(f"{SVG}line") if e.get("stroke-width") == "1.5"]
    assert len(bars) == 2  # one 95% interval per model


def test_selection_charts_in_chromium(tmp_path: Path) -> None:
    """The selection page in headless Chromium: no console errors, the constraint drawn on the
    latency plot, error bars on the per-dataset bars, the given-up line in the reasons."""
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    dataset = single_char_dataset(tmp_path / "synth", n_queries=30)
    spec = SelectSpec(
        datasets=(str(dataset),),
        candidates=(
            ModelSpec(model="hashing", dim=256, delay_ms=25, label="dense-256"),
            ModelSpec(model="hashing", dim=8, label="dense-8"),
            ModelSpec(model="bm25"),
        ),
        constraints=Constraints(max_p95_ms=15),  # dense-256 sleeps 25 ms per query: it misses
        cache_dir=tmp_path / "cache",
        latency_queries=10,
    )
    report, selection = run_selection(spec)
    out = tmp_path / "site"
    write_selection(selection, report, out)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((out / "selection.html").as_uri())
        assert page.locator("svg.plot").count() >= 2
        assert page.locator("svg.plot line.constraint").count() == 1  # --max-p95-ms on the latency plot only
        assert page.locator("svg.bars path.error-bar").count() == 3  # one interval per model on one dataset
        assert page.locator("svg.bars text.tick").first.text_content() == "0"
        assert "Given up: dense-256" in page.locator("ul.reasons").inner_text()
        browser.close()
    assert errors == []

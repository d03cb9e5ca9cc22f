"""The selection report in a real headless Chromium (Debian's package, driven by Playwright):
it loads over HTTP with no console errors and shows the plots and the tables."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from embedlab.encoders.spec import ModelSpec
from embedlab.select.analysis import Constraints
from embedlab.select.report import write_selection
from embedlab.select.run import SelectSpec, run_selection
from tests.helpers import CHROMIUM, FLAGS, browser_or_skip, single_char_dataset


@pytest.fixture
def served_report(tmp_path: Path):
    dataset = single_char_dataset(tmp_path / "synth", n_queries=30)
    second = single_char_dataset(tmp_path / "synth2", n_queries=30, seed=1)
    spec = SelectSpec(
        datasets=(str(dataset), str(second)),
        candidates=(
            ModelSpec(model="hashing", dim=256, delay_ms=5, label="dense-256"),
            ModelSpec(model="hashing", dim=16, label="dense-16"),
            ModelSpec(model="bm25"),
        ),
        constraints=Constraints(max_p95_ms=100, price_per_hour=0.5),
        cache_dir=tmp_path / "cache",
        latency_queries=10,
    )
    report, selection = run_selection(spec)
    out = tmp_path / "site"
    write_selection(selection, report, out)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/selection.html", selection
    server.shutdown()


def test_selection_page_renders_in_chromium(served_report, tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    url, selection = served_report
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        response = page.goto(url)
        assert response is not None and response.ok
        # quality vs latency, quality vs size, quality vs index size; per-dataset bars
        assert page.locator("svg.plot").count() == 3 and page.locator("svg.bars").count() == 1
        assert page.locator("svg.plot circle").count() >= 3
        assert page.locator("svg.plot polyline.pareto").count() >= 1
        box = page.locator("svg.plot").first.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 200
        assert page.locator("table").count() == 3  # across datasets + one per dataset
        verdict = page.locator("p.verdict").inner_text()
        assert selection.recommended in verdict
        page.screenshot(path=str(tmp_path / "selection.png"), full_page=True)
        browser.close()
    assert errors == []

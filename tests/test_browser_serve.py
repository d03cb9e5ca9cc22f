"""The search page of ``embedlab serve`` in a real headless Chromium (Debian's, driven by Playwright):
type a query, see results with file, page and highlighted snippet, give feedback, find the row in SQLite."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from embedlab.serve import ServeConfig, create_app
from tests.helpers import CHROMIUM, FLAGS, browser_or_skip
from tests.serve_fixtures import build_collection, make_library, running


def test_search_page_feedback_lands_in_sqlite(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    errors: list[str] = []
    with running(create_app(ServeConfig(collection="lib", root=root))) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        expect(page.locator("#about")).to_contain_text("collection lib")

        page.fill("#q", "fresnel lens beam")
        page.select_option("#mode", "bm25")
        page.press("#q", "Enter")
        first = page.locator("li.hit").first
        expect(first).to_be_visible()
        expect(page.locator("#status")).to_contain_text("results from")
        expect(first.locator("a.open")).to_have_text("manuals/lighthouse.pdf")
        expect(first.locator(".meta")).to_contain_text("page 2")
        expect(first.locator(".snippet mark").first).to_have_text("fresnel", ignore_case=True)
        href = first.locator("a.open").get_attribute("href")
        assert href == "/v1/documents/manuals/lighthouse.pdf#page=2"
        pdf = page.request.get(url + href.split("#")[0])
        assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"

        first.locator("button.up").click()
        expect(first.locator(".sent")).to_have_text("thanks!")
        expect(first.locator("button.up")).to_have_attribute("aria-pressed", "true")
        second = page.locator("li.hit").nth(1)
        if second.count():
            second.locator("button.down").click()
            expect(second.locator(".sent")).to_have_text("noted")
        chunk = int(first.get_attribute("data-chunk") or -1)
        shown = [int(li.get_attribute("data-chunk") or -1) for li in page.locator("li.hit").all()]

        # the feedback buttons draw their thumbs as inline SVG with a text label: no emoji font needed
        up = first.locator("button.up")
        expect(up.locator("svg path")).to_have_count(1)
        assert up.inner_text().strip() == "relevant" and up.locator("svg").bounding_box()["width"] > 0
        labels = page.locator(".feedback button").all_inner_texts()
        assert all(not any(ord(c) > 0x2FFF for c in label) for label in labels), labels

        # the path filter is sent as "filter": only files matching the glob come back
        page.fill("#filter", "guide/*")
        page.fill("#q", "password")
        page.select_option("#mode", "hybrid")
        page.press("#q", "Enter")
        expect(page.locator("li.hit a.open").first).to_contain_text("guide/")
        paths = page.locator("li.hit a.open").all_inner_texts()
        assert paths and all(path.startswith("guide/") for path in paths), paths
        page.fill("#filter", "nothing/*")
        page.press("#q", "Enter")
        expect(page.locator("#status")).to_contain_text("0 results")
        expect(page.locator("li.hit")).to_have_count(0)
        page.fill("#filter", "")

        page.fill("#q", "   ")  # a blank query sends nothing
        page.press("#q", "Enter")
        browser.close()

    db = sqlite3.connect(root / "lib" / "feedback.sqlite")
    rows = db.execute(
        "SELECT kind, query, chunk_id, path, page, rank, mode, result_ids FROM feedback ORDER BY id"
    ).fetchall()
    db.close()
    assert rows[0][:7] == ("up", "fresnel lens beam", chunk, "manuals/lighthouse.pdf", 2, 1, "bm25")
    assert json.loads(rows[0][7]) == shown
    assert [r[0] for r in rows] == (["up", "down"] if len(shown) > 1 else ["up"])
    assert errors == []

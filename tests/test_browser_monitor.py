"""The served ``/dashboard`` in a real headless Chromium: plots present, no console errors; it honours
the API key like ``/v1/*``."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from embedlab.serve import ServeConfig, create_app
from tests.helpers import CHROMIUM, FLAGS, browser_or_skip
from tests.serve_fixtures import build_collection, call, call_json, make_library, running

KEY = "k" * 24


def _traffic(url: str, headers: dict[str, str]) -> None:
    for n, query in enumerate(["fresnel lens beam", "sourdough bread oven", "reset password"] * 4):
        _, res = call_json(url + "/v1/search", {"query": query, "k": 5, "session": f"s{n % 3}"}, headers=headers)
        if n % 2:
            body = {"query": query, "chunk_id": res["hits"][0]["chunk_id"], "kind": "click", "rank": 1,
                    "result_ids": [h["chunk_id"] for h in res["hits"]], "search_id": res["search_id"]}  # fmt: skip
            assert call_json(url + "/v1/feedback", body, headers=headers)[0] == 200


def test_dashboard_shows_plots_without_console_errors(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    app = create_app(ServeConfig(collection="lib", root=root, api_key=KEY))
    errors: list[str] = []
    with running(app) as url, sync_playwright() as p:
        headers = {"X-API-Key": KEY}
        _traffic(url, headers)
        app.state.search_log.flush()
        assert call(url + "/dashboard")[0] == 401
        assert call(url + "/dashboard?window=soon", headers=headers)[0] == 422
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        context = browser.new_context(extra_http_headers=headers)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        response = page.goto(url + "/dashboard?window=1m&hours=1")
        assert response is not None and response.status == 200
        assert page.locator("h1").inner_text() == "Watching lib"
        assert page.locator("figure.plot svg").count() >= 5
        assert page.locator("figure.plot svg circle").count() >= 5  # points drawn
        assert "12 searches" in page.locator("body").inner_text()
        browser.close()
    assert errors == []

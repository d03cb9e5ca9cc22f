"""The search page of an image collection in a real headless Chromium (Debian's, driven by Playwright):
upload a query image, see the results as thumbnails that loaded; a text query shows thumbnails too."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("PIL")
pytest.importorskip("transformers")

from embedlab.collection import build
from embedlab.data.images import ImageLimits
from embedlab.serve import ServeConfig, create_app
from tests.helpers import CHROMIUM, FLAGS, browser_or_skip
from tests.image_fixtures import ITEMS, write_tiny_clip
from tests.image_library import write_image_library
from tests.serve_fixtures import running

KEY = "browser-key-" + "x" * 12


def test_upload_an_image_and_see_thumbnails(tmp_path: Path) -> None:
    browser_or_skip()
    from playwright.sync_api import FilePayload, expect, sync_playwright

    clip = write_tiny_clip(tmp_path / "tiny-clip")
    library = write_image_library(tmp_path / "catalogue", bad=False)
    build(library, "cat", model_spec=str(clip), root=tmp_path / "col", use_cache=False, images=ImageLimits())
    errors: list[str] = []
    config = ServeConfig(collection="cat", root=tmp_path / "col", api_key=KEY)
    with running(create_app(config)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        expect(page.locator("#about")).to_contain_text(f"{len(ITEMS) + 3} images")
        expect(page.locator("#imagesearch")).to_be_visible()
        expect(page.locator("#mode")).to_have_value("dense")
        page.fill("#key", KEY)  # thumbnails are <img> requests: the key travels as the page's cookie

        page.set_input_files("#image", str(library / "shapes" / "i3.png"))  # choosing a file searches
        first = page.locator("li.hit").first
        expect(first).to_be_visible()
        expect(page.locator("#status")).to_contain_text("results from")
        expect(first.locator("a.open")).to_have_text("shapes/i3.png")
        thumb = first.locator("img.thumb")
        expect(thumb).to_be_visible()
        expect(thumb).to_have_attribute("alt", "shapes/i3.png")
        page.wait_for_function("() => [...document.querySelectorAll('img.thumb')].every(i => i.complete)")
        widths = page.eval_on_selector_all("img.thumb", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == len(ITEMS) + 3 and all(w > 0 for w in widths), widths  # every thumbnail decoded

        page.fill("#q", "blue square")  # a text query over the same images (the two-tower model)
        page.press("#q", "Enter")
        expect(page.locator("#status")).to_contain_text("dense")
        expect(page.locator("li.hit img.thumb").first).to_be_visible()

        fake: FilePayload = {"name": "fake.png", "mimeType": "image/png", "buffer": b"not an image"}
        page.set_input_files("#image", files=[fake])  # not an image: the server's one line, shown as an error
        expect(page.locator("#status")).to_have_class("error")
        expect(page.locator("#status")).to_contain_text("not an image")
        browser.close()
    # the only console line: Chromium's note of the bad upload's 400 (the page itself raised nothing)
    assert len(errors) <= 1 and all("status of 400" in e for e in errors), errors

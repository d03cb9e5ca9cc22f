"""A real collection: all-MiniLM-L6-v2 over two of the shared PDFs, chunked in the model's own tokens."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from embedlab.collection import build, info, open_collection
from tests.helpers import SHARED_DATA

pytestmark = pytest.mark.model

PDFS = ("The-Man-Without-A-Body.pdf", "10.21105.jose.00016.pdf")


def test_minilm_collection_finds_the_right_pages(tmp_path: Path) -> None:
    folder = SHARED_DATA / "pdfs"
    if not all((folder / name).is_file() for name in PDFS):
        pytest.skip(f"shared PDFs not present in {folder}")
    library = tmp_path / "library"
    library.mkdir()
    for name in PDFS:
        shutil.copyfile(folder / name, library / name)
    root = tmp_path / "collections"
    # torch backend: no ONNX export into the per-session test cache (keeps the test well under 30 s)
    report = build(library, "pdfs", model_spec="all-MiniLM-L6-v2:backend=torch", root=root, max_tokens=128, overlap=16)
    assert report.files == 2 and report.chunks > 6 and not report.skipped
    data = info("pdfs", root=root)
    assert data["chunking"]["counter"] == "model tokenizer" and data["dim"] == 384
    assert data["counts"]["pages"] == 6

    with open_collection("pdfs", root=root) as collection:
        # semantic: no query word needs to appear verbatim
        dense = collection.search("optimizing the parameters of a model to fit data with scipy", k=3, mode="dense")
        assert dense.hits[0].path == "10.21105.jose.00016.pdf"
        cv = collection.search("split-half cross-validation", k=3, mode="hybrid")
        assert ("10.21105.jose.00016.pdf", 2) in {(h.path, h.page) for h in cv.hits}
        rare = collection.search("telepomped", k=1, mode="bm25").hits[0]  # a word found only on page 3
        assert (rare.path, rare.page) == ("The-Man-Without-A-Body.pdf", 3)
        assert "**telepomp" in rare.marked_snippet().lower()  # the same stem: "Telepomp", "telepomped"
        hybrid = collection.search("telepomped", k=3, mode="hybrid")
        assert ("The-Man-Without-A-Body.pdf", 3) in {(h.path, h.page) for h in hybrid.hits}

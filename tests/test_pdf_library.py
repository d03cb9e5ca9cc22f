"""Known passages in real PDFs from ../shared/datasets/pdfs: the right file and page come back.

Expected pages were read off the PDFs by hand (page numbers as a PDF viewer shows them); the
queries paraphrase the passages rather than quote them.  Three files (two JOSE papers and
Alice in Wonderland, 86 pages) keep the build to seconds with all-MiniLM-L6-v2.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from embedlab.collection import build, open_collection
from embedlab.data.ingest import read_document
from embedlab.encoders.spec import ModelSpec
from tests.helpers import shared_dataset

FILES = ("10.21105.jose.00111.pdf", "10.21105.jose.00032.pdf", "Alice-In-Wonderland.pdf")
KNOWN = [
    (
        "an earlier teaching module that inspired this package could only handle a pin and roller support",
        "10.21105.jose.00111.pdf",
        2,
    ),
    ("by default a new beam gets the properties of a steel section", "10.21105.jose.00111.pdf", 3),
    ("once the beam is analysed, show the schematic and the internal results as figures", "10.21105.jose.00111.pdf", 4),
    ("teaching computer science works better with motivation from other disciplines", "10.21105.jose.00032.pdf", 2),
    ("courses with hundreds of students can now hand out notebook assignments", "10.21105.jose.00032.pdf", 3),
    ("the Hatter sang about a little bat at the Queen's concert", "Alice-In-Wonderland.pdf", 43),
    ("Alice protests against giving the sentence before the verdict", "Alice-In-Wonderland.pdf", 75),
]


@pytest.fixture(scope="module")
def pdf_collection(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    source = shared_dataset("pdfs")
    library = tmp_path_factory.mktemp("pdfs")
    for name in FILES:
        shutil.copy(source / name, library / name)
    root = tmp_path_factory.mktemp("collections")
    report = build(library, "pdfs", model_spec=ModelSpec(model="all-MiniLM-L6-v2"), root=root)
    assert report.files == 3 and not report.skipped
    return library, root


@pytest.mark.model
@pytest.mark.parametrize(("query", "path", "page"), KNOWN, ids=[k[0][:30] for k in KNOWN])
def test_known_passage_comes_back_with_its_page(
    pdf_collection: tuple[Path, Path], query: str, path: str, page: int
) -> None:
    library, root = pdf_collection
    with open_collection("pdfs", root=root) as collection:
        top = collection.search(query, k=3, mode="hybrid").hits[0]
        dense = collection.search(query, k=3, mode="dense").hits
    assert (top.path, top.page) == (path, page), (top.path, top.page, top.snippet[:200])
    assert (path, page) in {(h.path, h.page) for h in dense}
    page_doc = read_document(library / top.path, root=library).pages[top.page - 1]
    assert top.text in page_doc.search_text.text  # the chunk is clean text of that page ...
    span = page_doc.text[top.char_start : top.char_end]  # ... and its offsets point into the page as extracted
    assert re.sub(r"[\s\-]+", "", span) == re.sub(r"[\s\-]+", "", top.text)

"""Clean page text (embedlab.data.clean): each rule, its careful limits, and exact offsets back into the page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from embedlab.data.chunking import chunk_document
from embedlab.data.clean import CleanText, apply_edits, clean_pages
from embedlab.data.ingest import read_document
from tests.helpers import make_pdf


def squeeze(text: str) -> str:
    """The letters of a passage, whatever its spacing, line breaks and hyphens: what cleaning must keep."""
    return re.sub(r"[\s\-]+", "", text)


def check_map(raw: str, clean: CleanText) -> None:
    """Every copied character of the clean text maps to the same character of the page text, in order."""
    previous = -1
    for pos, char in enumerate(clean.text):
        start = clean.raw_start(pos)
        assert start >= previous
        previous = start
        if not char.isspace():
            assert raw[start] == char, (pos, char, raw[start])
            assert clean.raw_end(pos + 1) == start + 1


def one(raw: str, *, pages: list[str] | None = None, kind: str = "pdf") -> str:
    """The clean text of ``raw`` as the first page of a document of ``pages`` (checked against its map)."""
    cleaned = clean_pages([raw, *(pages or [])], kind=kind)[0]
    check_map(raw, cleaned)
    return cleaned.text


def test_whitespace_runs_and_tabs_inside_lines_become_one_space() -> None:
    assert one("the audience  as    frequently\tas\t \tbefore") == "the audience as frequently as before"
    assert one("\t is\nindented   line") == "is\nindented line"
    assert one("BLACK\n. He is") == "BLACK. He is"  # a line of closing punctuation joins the line before


def test_hyphenated_line_breaks_are_joined_and_real_hyphens_kept() -> None:
    assert one("keep them sepa-\nrate please") == "keep them separate please"
    assert one("a back-to-\nback talk") == "a back-to-back talk"  # the word already had hyphens
    doc = ["an open-\nsource tool", "open-source code, more open-source code"]
    assert one(doc[0], pages=doc[1:]) == "an open-source tool"  # the document writes it with a hyphen
    assert one("a well- known fact") == "a well- known fact"  # no line break: not touched
    assert one("ends with a dash -\nnext") == "ends with a dash -\nnext"


def test_spaced_out_capitals_are_joined_but_not_real_words() -> None:
    assert one("by W ILLIAM P ITTENGER and others") == "by WILLIAM PITTENGER and others"
    assert one("ADVENTURE I. A SCANDAL IN BOHEMIA") == "ADVENTURE I. A SCANDAL IN BOHEMIA"  # A, I are words
    text = "the C API is small"
    assert one(text, pages=["an API for all"]) == text  # API is a word of the document


def test_split_lower_case_words_are_joined_only_when_the_document_proves_it() -> None:
    most = ["most of it"] * 10  # ten times as often as the split form
    assert one("it was the mo st foolhardy thing", pages=most) == "it was the most foolhardy thing"
    assert one("it was the mo st foolhardy thing", pages=most[:5]) == "it was the mo st foolhardy thing"  # too rare
    assert one("we set up the setup", pages=["setup", "setup", "setup"]) == "we set up the setup"  # a real word
    assert one("have a go at it", pages=["ago", "ago", "ago"]) == "have a go at it"


def test_running_headers_footers_and_page_counters_are_dropped() -> None:
    pages = [f"The War of the Worlds\n{n} of 4\nBody text {n} here.\nMore text {n}." for n in range(1, 5)]
    cleaned = clean_pages(pages, kind="pdf")
    assert [c.text.strip() for c in cleaned] == [f"Body text {n} here.\nMore text {n}." for n in range(1, 5)]
    same = ["Same title\nSame line.", "Same title\nSame line.", "Same title\nSame line."]
    assert [c.text for c in clean_pages(same, kind="pdf")] == same  # never a whole page of text
    for raw, clean in zip(pages, cleaned, strict=True):
        check_map(raw, clean)
    heads = [f"CHAPTER V. ADVICE FROM A CATERPILLAR {n}\nSome words on page {n}.\n{n}" for n in range(26, 30)]
    assert all(c.text.strip().startswith("Some words") for c in clean_pages(heads + ["x"] * 6, kind="pdf")[:4])
    # a heading on a few pages far apart (chapter starts) is content, and so is a short document's first line
    chapters = ["Chapter 1\nText one.", "x", "x", "Chapter 2\nText two.", "x", "x", "Chapter 3\nText three."]
    assert clean_pages(chapters, kind="pdf")[3].text.startswith("Chapter 2")
    assert clean_pages(["Title\nText a.", "Title\nText b."], kind="pdf")[0].text.startswith("Title")


def test_text_files_keep_indentation_and_markdown() -> None:
    text = "# Title\n\n    code  block\n- item\twith a tab\nsepa-\nrate"
    assert one(text, kind="markdown") == "# Title\n\n    code block\n- item with a tab\nsepa-\nrate"


def test_edits_that_overlap_an_earlier_one_are_dropped() -> None:
    cleaned = apply_edits("abcdef", [(1, 4, "X"), (3, 5, ""), (5, 6, "")])
    assert cleaned.text == "aXe" and cleaned.raw_span(0, 3) == (0, 5) and cleaned.raw_span(1, 2) == (1, 4)


def test_pdf_chunks_are_clean_and_their_offsets_point_into_the_page(tmp_path: Path) -> None:
    body = [
        "Public speakers hold the audience  as    frequently as they can on page {n},",
        "and keep their {n} points sepa-",
        "rate and clear for W ILLIAM P ITTENGER {n}.",
    ]
    pages = [["The Art of Public Speaking", *(line.format(n=n) for line in body), f"{n} of 5"] for n in range(1, 6)]
    (tmp_path / "book.pdf").write_bytes(make_pdf(pages))
    doc = read_document(tmp_path / "book.pdf", root=tmp_path)
    chunks = chunk_document(doc, max_tokens=12, overlap=3)
    assert len({c.page for c in chunks}) == 5
    joined = " ".join(c.text for c in chunks if c.page == 2)
    assert "audience as frequently" in joined and "separate" in joined and "WILLIAM PITTENGER 2" in joined
    assert "of 5" not in joined and "Art of Public" not in joined
    for chunk in chunks:
        raw = doc.pages[chunk.page - 1].text
        span = raw[chunk.char_start : chunk.char_end]
        assert squeeze(span) == squeeze(chunk.text), (span, chunk.text)
        assert span[0] == chunk.text[0] and span[-1] == chunk.text[-1]


@pytest.mark.parametrize("kind", ["pdf", "text"])
def test_text_without_artefacts_is_unchanged(kind: str) -> None:
    text = "A plain paragraph. It has sentences, commas - and dashes.\n\nA second paragraph."
    assert clean_pages([text, text, text], kind=kind)[0].text == text


def test_a_collection_chunked_before_cleaning_opens_and_its_update_reads_every_file(tmp_path: Path) -> None:
    import json

    from embedlab.collection import build, open_collection, update
    from tests.library_fixtures import CHUNK, HASHING, write_library

    library = write_library(tmp_path / "lib")
    root = tmp_path / "collections"
    build(library, "lib", model_spec=HASHING, root=root, **CHUNK)
    manifest_path = root / "lib" / "gen-000001" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["chunking"]["cleaning"] == "clean-1"
    del manifest["chunking"]["cleaning"]  # as written before cleaning existed
    manifest_path.write_text(json.dumps(manifest))
    with open_collection("lib", root=root) as collection:
        assert collection.search("reset password", k=1, mode="bm25").hits
    report = update("lib", root=root)
    assert report.files_changed == 4 and report.files_unchanged == 0
    assert json.loads((root / "lib" / "gen-000002" / "manifest.json").read_text())["chunking"]["cleaning"] == "clean-1"
    assert update("lib", root=root).up_to_date

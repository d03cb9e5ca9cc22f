"""Document ingestion: PDF/text/Markdown/HTML fixtures made here, plus two real PDFs from shared/."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from embedlab.data.ingest import Page, Skipped, SourceDocument, iter_library, read_document
from embedlab.errors import EmbedlabError
from tests.helpers import SHARED_DATA, make_pdf


def write_pdf(path: Path, writer: PdfWriter) -> Path:
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def text_pdf_writer(pages: list[list[str]], tmp_path: Path) -> PdfWriter:
    source = tmp_path / "_source.pdf"
    source.write_bytes(make_pdf(pages))
    writer = PdfWriter()
    writer.append(PdfReader(source))
    return writer


# ----------------------------------------------------------------------------- PDF


def test_hand_made_pdf_is_read_page_by_page(tmp_path: Path) -> None:
    data = make_pdf([["Hello page one"], ["Hello page two.", "A second line (with parentheses)."]])
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "hello.pdf"
    path.write_bytes(data)
    doc = read_document(path, root=tmp_path)
    assert isinstance(doc, SourceDocument)
    assert (doc.kind, doc.relative, doc.path) == ("pdf", "sub/hello.pdf", path)
    assert doc.sha256 == hashlib.sha256(data).hexdigest()
    assert [page.number for page in doc.pages] == [1, 2]
    assert doc.pages[0] == Page(1, "Hello page one")
    assert doc.pages[1].text == "Hello page two.\nA second line (with parentheses)."


def test_blank_page_keeps_page_numbers(tmp_path: Path) -> None:
    writer = text_pdf_writer([["First page text"], ["Third page text"]], tmp_path)
    writer.insert_blank_page(index=1)
    doc = read_document(write_pdf(tmp_path / "gap.pdf", writer), root=tmp_path)
    assert [(page.number, page.text) for page in doc.pages] == [(1, "First page text"), (2, ""), (3, "Third page text")]


def test_image_only_pdf_is_an_error(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    writer.add_blank_page(width=612, height=792)
    path = write_pdf(tmp_path / "scan.pdf", writer)
    with pytest.raises(EmbedlabError, match=r"no extractable text \(on none of its 2 pages; image-only"):
        read_document(path, root=tmp_path)


def test_encrypted_pdf_is_an_error(tmp_path: Path) -> None:
    writer = text_pdf_writer([["Top secret text"]], tmp_path)
    writer.encrypt("secret")
    path = write_pdf(tmp_path / "locked.pdf", writer)
    assert PdfReader(path).is_encrypted
    with pytest.raises(EmbedlabError, match="encrypted and needs a password") as err:
        read_document(path, root=tmp_path)
    assert str(path) in str(err.value)


def test_pdf_with_only_an_owner_password_is_read(tmp_path: Path) -> None:
    writer = text_pdf_writer([["Readable by anyone"]], tmp_path)
    writer.encrypt(user_password="", owner_password="owner-only")
    doc = read_document(write_pdf(tmp_path / "restricted.pdf", writer), root=tmp_path)
    assert doc.pages[0].text == "Readable by anyone"


@pytest.mark.parametrize(
    "data",
    [random.Random(5).randbytes(3000), b"", b"%PDF-1.4\n1 0 obj\n<< /Type /Cat"],
    ids=["random-bytes", "empty", "truncated"],
)
def test_broken_pdf_is_an_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(data)
    with pytest.raises(EmbedlabError, match="broken PDF"):
        read_document(path, root=tmp_path)


# ----------------------------------------------------------------------------- text, Markdown, HTML


def test_text_file_keeps_its_text_with_normalised_newlines(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbfFirst line\r\nSecond line\r\n\r\nNew paragraph \xc3\xa9t\xc3\xa9.\n"
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    doc = read_document(path, root=tmp_path)
    assert doc.kind == "text"
    assert doc.sha256 == hashlib.sha256(data).hexdigest()  # of the bytes, BOM and CRLF included
    assert doc.pages == (Page(1, "First line\nSecond line\n\nNew paragraph été.\n"),)


def test_markdown_is_kept_verbatim(tmp_path: Path) -> None:
    text = "# Title\n\nSome *emphasis* and `code`.  \n- item one\n- item two\n"
    (tmp_path / "readme.md").write_text(text, encoding="utf-8")
    doc = read_document(tmp_path / "readme.md", root=tmp_path)
    assert doc.kind == "markdown"
    assert doc.pages[0].text == text


def test_non_utf8_text_names_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("line one\ncafé au lait\n".encode("latin-1"))
    with pytest.raises(EmbedlabError) as err:
        read_document(path, root=tmp_path)
    message = str(err.value)
    assert f"{path}:2: text is not valid UTF-8" in message
    assert "byte 0xe9 at byte offset 12" in message
    assert "iconv" in message


def test_html_keeps_visible_text_with_blocks_as_paragraphs(tmp_path: Path) -> None:
    html = """<!doctype html><html><head><title>Page title</title>
    <style>body { color: red }</style><script>var hidden = "no";</script></head>
    <body><h1>Main   heading</h1>
    <p>First paragraph
       spans lines &amp; has an <b>inline</b> tag.</p>
    <div>A line<br>broken here</div>
    <ul><li>one</li><li>two</li></ul>
    <table><tr><td>cell a</td><td>cell b</td></tr></table>
    <pre>  code   keeps
    spacing</pre>
    <noscript>enable js</noscript><p>Caf&eacute; &#8212; end</p></body></html>"""
    (tmp_path / "page.html").write_text(html, encoding="utf-8")
    doc = read_document(tmp_path / "page.html", root=tmp_path)
    assert doc.kind == "html"
    assert doc.pages[0].text == (
        "Page title\n\nMain heading\n\nFirst paragraph spans lines & has an inline tag.\n\n"
        "A line\nbroken here\n\none\n\ntwo\n\ncell a cell b\n\n  code   keeps\n    spacing\n\nCafé — end"
    )


def test_html_declared_charset_is_honoured(tmp_path: Path) -> None:
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Caf\xe9</p></body></html>'
    (tmp_path / "old.htm").write_bytes(html.encode("latin-1"))
    assert read_document(tmp_path / "old.htm", root=tmp_path).pages[0].text == "Café"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"  \n\n", "no extractable text (the file is empty or blank)"),
        ("script-only.html", b"<script>x()</script>", "no extractable text (the HTML has no visible text)"),
        ("slides.pptx", b"PK", "unsupported file type '.pptx'"),
        ("Makefile", b"all:", "unsupported file type '(no suffix)'"),
    ],
)
def test_unreadable_files_are_errors(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(EmbedlabError) as err:
        read_document(tmp_path / name, root=tmp_path)
    assert message in str(err.value)


def test_missing_file_and_file_outside_root(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    with pytest.raises(EmbedlabError, match="file not found"):
        read_document(tmp_path / "lib" / "gone.txt", root=tmp_path / "lib")
    (tmp_path / "elsewhere.txt").write_text("x")
    with pytest.raises(EmbedlabError, match="outside the library folder"):
        read_document(tmp_path / "elsewhere.txt", root=tmp_path / "lib")


# ----------------------------------------------------------------------------- iter_library


def test_iter_library_walks_sorted_skips_bad_files_and_never_raises(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "b_folder" / "deeper").mkdir(parents=True)
    (lib / ".git").mkdir()
    (lib / ".git" / "config.txt").write_text("hidden folder")
    (lib / ".hidden.txt").write_text("hidden file")
    (lib / "z.md").write_text("# Last\n")
    (lib / "a.txt").write_text("first")
    (lib / "b_folder" / "deeper" / "c.html").write_text("<p>deep</p>")
    (lib / "b_folder" / "good.pdf").write_bytes(make_pdf([["Good PDF"]]))
    (lib / "b_folder" / "broken.pdf").write_bytes(random.Random(1).randbytes(500))
    (lib / "b_folder" / "latin1.txt").write_bytes(b"ol\xe9")
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    write_pdf(lib / "b_folder" / "blank.pdf", writer)
    writer = text_pdf_writer([["secret"]], tmp_path)
    writer.encrypt("secret")
    write_pdf(lib / "b_folder" / "locked.pdf", writer)
    (lib / "b_folder" / "image.png").write_bytes(b"\x89PNG")

    items = list(iter_library(lib))

    order = [
        item.relative if isinstance(item, SourceDocument) else item.path.relative_to(lib).as_posix() for item in items
    ]
    assert order == [
        "a.txt",
        "b_folder/blank.pdf",
        "b_folder/broken.pdf",
        "b_folder/deeper/c.html",
        "b_folder/good.pdf",
        "b_folder/image.png",
        "b_folder/latin1.txt",
        "b_folder/locked.pdf",
        "z.md",
    ]
    reasons = {item.path.name: item.reason for item in items if isinstance(item, Skipped)}
    assert set(reasons) == {"blank.pdf", "broken.pdf", "image.png", "latin1.txt", "locked.pdf"}
    assert reasons["blank.pdf"].startswith("no extractable text (on none of its 1 pages")
    assert reasons["broken.pdf"].startswith("broken PDF")
    assert reasons["image.png"].startswith("unsupported file type '.png'")
    assert reasons["latin1.txt"].startswith("line 1: text is not valid UTF-8; found byte 0xe9 at byte offset 2")
    assert reasons["locked.pdf"].startswith("PDF is encrypted and needs a password")
    for reason in reasons.values():
        assert "\n" not in reason and str(lib) not in reason  # one line; the path is a separate field
    docs = {item.relative: item for item in items if isinstance(item, SourceDocument)}
    assert docs["b_folder/deeper/c.html"].pages[0].text == "deep"
    assert docs["b_folder/good.pdf"].pages == (Page(1, "Good PDF"),)


def test_iter_library_needs_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(EmbedlabError, match="library folder not found"):
        iter_library(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(EmbedlabError, match="expected a library folder"):
        iter_library(tmp_path / "file.txt")


# ----------------------------------------------------------------------------- real PDFs

# Phrases checked by hand against the extracted pages (see ../shared/datasets/pdfs/SOURCES.md).
REAL_PDFS = {
    "The-Man-Without-A-Body.pdf": (4, {"THE MAN WITHOUT A BODY": 1, "telepomped": 3, "Phillips Street": 4}),
    "10.21105.jose.00016.pdf": (2, {"Published: 04 July 2018": 1, "split-half cross-validation": 2}),
}


def test_real_pdfs_pages_and_known_phrases(tmp_path: Path) -> None:
    folder = SHARED_DATA / "pdfs"
    if not all((folder / name).is_file() for name in REAL_PDFS):
        pytest.skip(f"real PDFs not present in {folder}")
    lib = tmp_path / "lib"
    lib.mkdir()
    for name in REAL_PDFS:
        shutil.copyfile(folder / name, lib / name)
    docs = {item.relative: item for item in iter_library(lib)}
    assert set(docs) == set(REAL_PDFS)
    for name, (page_count, phrases) in REAL_PDFS.items():
        doc = docs[name]
        assert isinstance(doc, SourceDocument), doc
        assert doc.sha256 == hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert [page.number for page in doc.pages] == list(range(1, page_count + 1))
        for phrase, page_number in phrases.items():
            assert [page.number for page in doc.pages if phrase in page.text] == [page_number], phrase

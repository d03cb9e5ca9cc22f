"""Document ingestion: text, page by page, from PDF, plain text, Markdown and HTML files.

A library folder is read with :func:`iter_library`, which never raises for a bad file: a
broken, encrypted or image-only PDF, a file that is not UTF-8 or has an unsupported
suffix becomes a :class:`Skipped` with a one-line reason, so an indexing run finishes and
can list what it left out.  :func:`read_document` reads one file and raises
:class:`~embedlab.errors.EmbedlabError` for the same problems.  Which files are opened at
all (links, special files) and the caps per file are :mod:`embedlab.data.library`'s rules.

Every document keeps the SHA-256 of its file bytes (what incremental updates compare)
and its pages with 1-based numbers.  Text files and HTML are one page.  A page's ``text``
is kept as close to the source as possible: PDF text gets only light clean-up (line
endings, NUL and soft hyphens, ligatures, trailing spaces, runs of blank lines); plain
text and Markdown only have their line endings normalised and a BOM removed; HTML keeps
the visible text with block elements as paragraphs (a blank line between).  Its
``clean`` text (:mod:`embedlab.data.clean`: whitespace, hyphenated line breaks, spaced-out
letters, running headers and page numbers) is what is chunked and searched.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from embedlab.data.clean import CleanText, clean_pages, identity
from embedlab.data.library import (
    DEFAULT_RULES,
    LibraryRules,
    Skipped,
    display_path,
    library_files,
    megabytes,
    over_cap,
    read_regular,
)
from embedlab.data.pdf import describe, pdf_page_texts
from embedlab.data.pdf import newlines as _newlines
from embedlab.data.pdf import no_text as _no_text
from embedlab.errors import EmbedlabError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "LibraryRules",
    "Page",
    "Skipped",
    "SourceDocument",
    "iter_library",
    "library_files",
    "read_document",
    "read_or_skip",
]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One page of text; ``number`` is 1-based, as a reader sees it in a PDF viewer.

    ``text`` is the page as extracted (what chunk offsets point into); ``clean`` its text for
    search, with the map back (see :mod:`embedlab.data.clean`), filled in by :func:`read_document`.
    """

    number: int
    text: str
    clean: CleanText | None = field(default=None, compare=False, repr=False)

    @property
    def search_text(self) -> CleanText:
        return self.clean if self.clean is not None else identity(self.text)


@dataclass(frozen=True)
class SourceDocument:
    """A file read from a library: where it is, what it held (``sha256`` of the bytes), its pages."""

    path: Path
    relative: str  # POSIX path relative to the library root: the document's id
    sha256: str
    kind: str  # "pdf", "text", "markdown" or "html"
    pages: tuple[Page, ...]


# ----------------------------------------------------------------------------- text helpers


def _decode_utf8(data: bytes, path: Path) -> str:
    """Strict UTF-8 (a BOM is dropped); the error names the byte offset and line of the first bad byte."""
    body = data[3:] if data.startswith(codecs.BOM_UTF8) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + (len(data) - len(body))
        raise EmbedlabError(
            "text is not valid UTF-8",
            path=path,
            line=data.count(b"\n", 0, offset) + 1,
            found=f"byte 0x{data[offset]:02x} at byte offset {offset}",
            expected="UTF-8 encoded text",
            hint="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


# ----------------------------------------------------------------------------- readers


def _read_pdf(data: bytes, path: Path, rules: LibraryRules) -> tuple[Page, ...]:
    return tuple(Page(number, text) for number, text in enumerate(pdf_page_texts(data, path, rules=rules), start=1))


def _read_plain(data: bytes, path: Path, rules: LibraryRules) -> tuple[Page, ...]:
    text = _newlines(_decode_utf8(data, path))
    if not text.strip():
        raise _no_text(path, "the file is empty or blank")
    return (Page(1, text),)


_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def _html_encoding(data: bytes) -> tuple[str, str | None]:
    """``(codec, problem)``: the declared ``<meta charset>`` if Python has it as a text codec, else UTF-8 and
    why the declaration was passed over (an unknown name, or a codec such as ``hex`` or ``undefined``
    that does not decode text).  A declared UTF-16/32 is read as UTF-8, as browsers do: a ``<meta>``
    readable as ASCII means the file is not UTF-16."""
    declared = _CHARSET.search(data[:4096])
    if declared is None:
        return "utf-8", None
    name = declared.group(1).decode("ascii").lower()
    try:
        info = codecs.lookup(name)
    except LookupError:
        return "utf-8", f"unknown charset {name!r} declared"
    if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":
        return "utf-8", f"charset {name!r} declared, which is not a text encoding"
    if info.name.startswith(("utf-16", "utf-32")):
        return "utf-8", None
    return info.name, None


def _read_html(data: bytes, path: Path, rules: LibraryRules) -> tuple[Page, ...]:
    encoding, problem = _html_encoding(data)
    if codecs.lookup(encoding).name == "utf-8":
        try:
            markup = _decode_utf8(data, path)
        except EmbedlabError as err:
            if problem is None:
                raise
            raise EmbedlabError(
                f"{problem} and the file is not UTF-8 either",
                path=path,
                found=err.found,
                hint="declare the file's real charset, or re-encode it as UTF-8",
            ) from None
    else:
        try:
            markup = data.decode(encoding)
        except UnicodeDecodeError as err:
            raise EmbedlabError(
                f"HTML is not valid {encoding} as its <meta charset> declares",
                path=path,
                found=f"byte 0x{data[err.start]:02x} at byte offset {err.start}",
            ) from None
        except (UnicodeError, LookupError, ValueError) as err:  # a codec that fails in its own way
            raise EmbedlabError(
                f"cannot decode HTML as its declared charset {encoding!r} ({describe(err)})", path=path
            ) from None
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as err:
        raise EmbedlabError(f"cannot parse HTML ({describe(err)})", path=path) from None
    text = parser.text()
    if not text:
        raise _no_text(path, "the HTML has no visible text")
    return (Page(1, text),)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; block elements become paragraphs, ``<br>`` a line break."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    _BLOCKS = frozenset(
        {
            "address",
            "article",
            "aside",
            "blockquote",
            "body",
            "caption",
            "dd",
            "details",
            "div",
            "dl",
            "dt",
            "fieldset",
            "figcaption",
            "figure",
            "footer",
            "form",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "header",
            "hr",
            "html",
            "li",
            "main",
            "nav",
            "ol",
            "p",
            "pre",
            "section",
            "summary",
            "table",
            "tbody",
            "tfoot",
            "thead",
            "title",
            "tr",
            "ul",
        }
    )
    _CELLS = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._skip_depth = 0
        self._pre_depth = 0
        self._pieces: list[str] = []
        self._block_is_pre = False
        self._blocks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif tag == "br":
            self._pieces.append("\n")
        elif tag in self._CELLS:
            self._pieces.append(" ")
        elif tag in self._BLOCKS:
            self._flush()
            if tag == "pre":
                self._pre_depth += 1
                self._block_is_pre = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self._pieces.append("\n")
        elif tag in self._BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self._CELLS:
            self._pieces.append(" ")
        elif tag in self._BLOCKS:
            self._flush()
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:
            self._block_is_pre = True
            self._pieces.append(_newlines(data))
        else:
            self._pieces.append(re.sub(r"\s+", " ", data))

    def _flush(self) -> None:
        raw = "".join(self._pieces)
        self._pieces.clear()
        if self._block_is_pre:
            block = "\n".join(line.rstrip() for line in raw.strip("\n").split("\n"))
        else:
            block = "\n".join(" ".join(line.split()) for line in raw.split("\n") if line.strip())
        self._block_is_pre = False
        if block.strip():
            self._blocks.append(block)

    def text(self) -> str:
        self._flush()
        return "\n\n".join(self._blocks)


_READERS: dict[str, tuple[str, Callable[[bytes, Path, LibraryRules], tuple[Page, ...]]]] = {
    ".pdf": ("pdf", _read_pdf),
    ".txt": ("text", _read_plain),
    ".md": ("markdown", _read_plain),
    ".markdown": ("markdown", _read_plain),
    ".html": ("html", _read_html),
    ".htm": ("html", _read_html),
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_READERS)


# ----------------------------------------------------------------------------- public API


def read_document(path: str | Path, *, root: str | Path, rules: LibraryRules = DEFAULT_RULES) -> SourceDocument:
    """Read one file of a library rooted at ``root`` (``relative`` is its POSIX path from there).

    The file is opened only when ``rules`` allow it (see :mod:`embedlab.data.library`): a
    link out of the library, a FIFO or a device is an error before anything is opened, and
    a file over a cap is an error naming the cap.
    """
    path, root = Path(path), Path(root)
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise EmbedlabError(
                "file is outside the library folder", path=path, expected=f"a file under {root}"
            ) from None
    entry = _READERS.get(path.suffix.lower())
    if entry is None:
        raise EmbedlabError(
            f"unsupported file type {path.suffix or '(no suffix)'!r}",
            path=path,
            expected="one of " + ", ".join(SUPPORTED_SUFFIXES),
        )
    kind, reader = entry
    # text, Markdown and HTML: the file's size is its text's (bounds memory before reading);
    # a PDF's extracted text is counted page by page as it is extracted
    data = read_regular(path, root=root, rules=rules, max_bytes=None if kind == "pdf" else rules.max_text_bytes)
    pages = reader(data, path, rules)
    cleaned = clean_pages([page.text for page in pages], kind=kind)
    pages = tuple(Page(page.number, page.text, text) for page, text in zip(pages, cleaned, strict=True))
    text_bytes = sum(len(page.text.encode("utf-8", "surrogatepass")) for page in pages)
    if text_bytes > rules.max_text_bytes:  # HTML from a single-byte charset can grow in UTF-8
        raise over_cap(
            f"{megabytes(text_bytes)} of text",
            "max_text_bytes",
            f"{megabytes(rules.max_text_bytes)} of text",
            path=path,
        )
    return SourceDocument(path=path, relative=relative, sha256=hashlib.sha256(data).hexdigest(), kind=kind, pages=pages)


def iter_library(folder: str | Path, *, rules: LibraryRules = DEFAULT_RULES) -> Iterator[SourceDocument | Skipped]:
    """Every visible file under ``folder``, recursively, in sorted path order; bad files become :class:`Skipped`.

    Hidden files and folders (name starting with ``.``) are left out silently; links, special
    files and caps follow ``rules`` (see :mod:`embedlab.data.library`).  The folder itself must exist.
    """
    root = Path(folder)
    entries = library_files(root, rules=rules)
    return (entry if isinstance(entry, Skipped) else read_or_skip(entry, root=root, rules=rules) for entry in entries)


def read_or_skip(
    path: str | Path, *, root: str | Path, rules: LibraryRules = DEFAULT_RULES
) -> SourceDocument | Skipped:
    """:func:`read_document`, with any problem turned into a :class:`Skipped` and its one-line reason."""
    path = Path(path)
    try:
        return read_document(path, root=root, rules=rules)
    except EmbedlabError as err:
        reason = EmbedlabError(err.message, found=err.found, expected=err.expected, hint=err.hint).one_line()
        if err.line is not None:
            reason = f"line {err.line}: {reason}"
        logger.info("skipped %s: %s", display_path(path, Path(root)), reason)
        return Skipped(path=path, reason=reason)

"""Document ingestion: text, page by page, from PDF, plain text, Markdown and HTML files.

A library folder is read with :func:`iter_library`, which never raises for a bad file: a
broken, encrypted or image-only PDF, a file that is not UTF-8 or has an unsupported
suffix becomes a :class:`Skipped` with a one-line reason, so an indexing run finishes and
can list what it left out.  :func:`read_document` reads one file and raises
:class:`~embedlab.errors.EmbedlabError` for the same problems.

Every document keeps the SHA-256 of its file bytes (what incremental updates compare)
and its pages with 1-based numbers.  Text files and HTML are one page.  Text is kept as
close to the source as readable search snippets allow: PDF text gets only light clean-up
(line endings, NUL and soft hyphens, ligatures, trailing spaces, runs of blank lines);
plain text and Markdown only have their line endings normalised and a BOM removed;
HTML keeps the visible text with block elements as paragraphs (a blank line between).
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from embedlab.errors import EmbedlabError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Page:
    """One page of text; ``number`` is 1-based, as a reader sees it in a PDF viewer."""

    number: int
    text: str


@dataclass(frozen=True)
class SourceDocument:
    """A file read from a library: where it is, what it held (``sha256`` of the bytes), its pages."""

    path: Path
    relative: str  # POSIX path relative to the library root: the document's id
    sha256: str
    kind: str  # "pdf", "text", "markdown" or "html"
    pages: tuple[Page, ...]


@dataclass(frozen=True)
class Skipped:
    """A file :func:`iter_library` could not read, with the one-line reason."""

    path: Path
    reason: str


# ----------------------------------------------------------------------------- text helpers

_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st", "\u00ad": None, "\x00": None})
_TRAILING_SPACE = re.compile(r"[ \t\f\v]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean_pdf_text(text: str) -> str:
    text = _newlines(text).translate(_LIGATURES)
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


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


def _no_text(path: Path, what: str) -> EmbedlabError:
    return EmbedlabError(f"no extractable text ({what})", path=path, expected="a document with text")


# ----------------------------------------------------------------------------- readers

def _read_pdf(data: bytes, path: Path) -> tuple[Page, ...]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError

    # pypdf raises many exception types on malformed files (PdfReadError, but also
    # KeyError, ValueError, TypeError, RecursionError ...): any of them means "broken PDF".
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as err:  # noqa: BLE001 - third-party parser on untrusted input
        raise EmbedlabError(f"broken PDF, cannot parse it ({_describe(err)})", path=path,
                            expected="a valid PDF file") from None
    if encrypted:
        try:
            decrypted = reader.decrypt("")
        except DependencyError:
            raise EmbedlabError("PDF is encrypted with AES and cannot be read here", path=path,
                                hint="pip install cryptography, or save an unencrypted copy") from None
        except Exception as err:  # noqa: BLE001
            raise EmbedlabError(f"PDF is encrypted and cannot be decrypted ({_describe(err)})", path=path) from None
        if not decrypted:
            raise EmbedlabError("PDF is encrypted and needs a password", path=path,
                                hint="save an unencrypted copy (e.g. qpdf --decrypt) to index it")
    try:
        pdf_pages = list(reader.pages)
    except FileNotDecryptedError:
        raise EmbedlabError("PDF is encrypted and needs a password", path=path) from None
    except Exception as err:  # noqa: BLE001
        raise EmbedlabError(f"broken PDF, cannot read its pages ({_describe(err)})", path=path,
                            expected="a valid PDF file") from None
    if not pdf_pages:
        raise EmbedlabError("PDF has no pages", path=path)
    pages = []
    failed = []
    for number, pdf_page in enumerate(pdf_pages, start=1):
        try:
            text = pdf_page.extract_text() or ""
        except Exception as err:  # noqa: BLE001 - one bad page must not lose the others
            logger.warning("%s: page %d: cannot extract text (%s); indexed as empty", path, number, _describe(err))
            failed.append(number)
            text = ""
        pages.append(Page(number, _clean_pdf_text(text)))
    if not any(page.text for page in pages):
        if len(failed) == len(pages):
            raise EmbedlabError(f"broken PDF, text extraction failed on all {len(pages)} pages", path=path)
        raise _no_text(path, f"on none of its {len(pages)} pages; image-only or scanned PDF?")
    return tuple(pages)


def _describe(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _read_plain(data: bytes, path: Path) -> tuple[Page, ...]:
    text = _newlines(_decode_utf8(data, path))
    if not text.strip():
        raise _no_text(path, "the file is empty or blank")
    return (Page(1, text),)


_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)


def _read_html(data: bytes, path: Path) -> tuple[Page, ...]:
    declared = _CHARSET.search(data[:4096])
    encoding = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    if codecs.lookup(encoding).name == "utf-8":
        markup = _decode_utf8(data, path)
    else:
        try:
            markup = data.decode(encoding)
        except UnicodeDecodeError as err:
            raise EmbedlabError(f"HTML is not valid {encoding} as its <meta charset> declares", path=path,
                                found=f"byte 0x{data[err.start]:02x} at byte offset {err.start}") from None
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as err:  # noqa: BLE001 - html.parser is lenient, but a crash must not stop a library run
        raise EmbedlabError(f"cannot parse HTML ({_describe(err)})", path=path) from None
    text = parser.text()
    if not text:
        raise _no_text(path, "the HTML has no visible text")
    return (Page(1, text),)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page; block elements become paragraphs, ``<br>`` a line break."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "svg"})
    _BLOCKS = frozenset({
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
        "hr", "html", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody",
        "tfoot", "thead", "title", "tr", "ul",
    })
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


_READERS: dict[str, tuple[str, Callable[[bytes, Path], tuple[Page, ...]]]] = {
    ".pdf": ("pdf", _read_pdf),
    ".txt": ("text", _read_plain),
    ".md": ("markdown", _read_plain),
    ".markdown": ("markdown", _read_plain),
    ".html": ("html", _read_html),
    ".htm": ("html", _read_html),
}
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(_READERS)


# ----------------------------------------------------------------------------- public API

def read_document(path: str | Path, *, root: str | Path) -> SourceDocument:
    """Read one file of a library rooted at ``root`` (``relative`` is its POSIX path from there)."""
    path, root = Path(path), Path(root)
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        try:
            relative = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise EmbedlabError("file is outside the library folder", path=path,
                                expected=f"a file under {root}") from None
    entry = _READERS.get(path.suffix.lower())
    if entry is None:
        raise EmbedlabError(f"unsupported file type {path.suffix or '(no suffix)'!r}", path=path,
                            expected="one of " + ", ".join(SUPPORTED_SUFFIXES))
    kind, reader = entry
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise EmbedlabError("file not found", path=path) from None
    except IsADirectoryError:
        raise EmbedlabError("is a folder, expected a file", path=path) from None
    except OSError as err:
        raise EmbedlabError(f"cannot read file ({err.strerror or err})", path=path) from None
    pages = reader(data, path)
    return SourceDocument(path=path, relative=relative, sha256=hashlib.sha256(data).hexdigest(),
                          kind=kind, pages=pages)


def iter_library(folder: str | Path) -> Iterator[SourceDocument | Skipped]:
    """Every visible file under ``folder``, recursively, in sorted path order; bad files become :class:`Skipped`.

    Hidden files and folders (name starting with ``.``) are left out silently; symbolic
    links to folders are not followed (no cycles).  The folder itself must exist.
    """
    root = Path(folder)
    entries = library_files(root)
    return (entry if isinstance(entry, Skipped) else read_or_skip(entry, root=root) for entry in entries)


def library_files(folder: str | Path) -> list[Path | Skipped]:
    """The files :func:`iter_library` would read, in the same order, without reading them.

    An unreadable sub-folder is a :class:`Skipped`.  Lets a caller decide per file (e.g. by
    its hash) whether to read it at all; the folder itself must exist.
    """
    root = Path(folder)
    if not root.exists():
        raise EmbedlabError("library folder not found", path=root)
    if not root.is_dir():
        raise EmbedlabError("is a file, expected a library folder", path=root)
    entries: list[tuple[tuple[str, ...], Path, str | None]] = []  # (sort key, path, reason it cannot be read)

    def unreadable_folder(err: OSError) -> None:
        path = Path(err.filename)
        entries.append((path.relative_to(root).parts, path, f"cannot read folder ({err.strerror or err})"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable_folder):
        dirnames[:] = [name for name in dirnames if not name.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                path = Path(dirpath) / name
                entries.append((path.relative_to(root).parts, path, None))
    entries.sort(key=lambda entry: entry[0])
    out: list[Path | Skipped] = []
    for _, path, problem in entries:
        if problem is not None:
            logger.info("skipped %s: %s", path, problem)
            out.append(Skipped(path=path, reason=problem))
        else:
            out.append(path)
    return out


def read_or_skip(path: str | Path, *, root: str | Path) -> SourceDocument | Skipped:
    """:func:`read_document`, with any problem turned into a :class:`Skipped` and its one-line reason."""
    path = Path(path)
    try:
        return read_document(path, root=root)
    except EmbedlabError as err:
        reason = EmbedlabError(err.message, found=err.found, expected=err.expected, hint=err.hint).one_line()
        if err.line is not None:
            reason = f"line {err.line}: {reason}"
        logger.info("skipped %s: %s", path, reason)
        return Skipped(path=path, reason=reason)

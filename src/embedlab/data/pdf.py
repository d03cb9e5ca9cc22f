"""PDF text, page by page, within the caps of :class:`~embedlab.data.library.LibraryRules`.

The page count is taken from the page tree itself before any page is built or any text
extracted: a few kilobytes of PDF can name the same page subtree many times over (a
"page-tree bomb": 4.4 KB, 99,225 pages), so counting by expanding the tree, or trusting
its ``/Count``, is not safe.  Each ``/Pages`` node is counted once (memoised), so the count
costs one visit per node and edge whatever the tree multiplies to.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from embedlab.data.library import LibraryRules, megabytes, over_cap
from embedlab.errors import EmbedlabError

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

_LIGATURES = str.maketrans(
    {
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
        "\u00ad": None,
        "\x00": None,
    }
)
_TRAILING_SPACE = re.compile(r"[ \t\f\v]+$", re.MULTILINE)
_BLANK_RUNS = re.compile(r"\n{3,}")


def newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_pdf_text(text: str) -> str:
    text = newlines(text).translate(_LIGATURES)
    text = _TRAILING_SPACE.sub("", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def describe(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def no_text(path: Path, what: str) -> EmbedlabError:
    return EmbedlabError(f"no extractable text ({what})", path=path, expected="a document with text")


def count_pages(reader: Any, *, stop_above: int) -> int:
    """Pages of the tree, as pypdf would list them, or a count ``> stop_above`` as soon as one is reached.

    Follows pypdf's reading of the tree: a node is a ``/Pages`` node by its ``/Type``, or without
    one when it has ``/Kids``; non-dictionaries and empty dictionaries among ``/Kids`` are
    ignored; a node that is its own ancestor is an error.
    """
    from pypdf.errors import PdfReadError
    from pypdf.generic import ArrayObject, DictionaryObject

    def kind(node: DictionaryObject) -> str:
        declared = node.get("/Type")
        if declared is not None:
            return str(declared)
        return "/Pages" if "/Kids" in node else "/Page"

    def kids(node: DictionaryObject) -> list[Any]:
        value = node.get("/Kids")
        value = value.get_object() if value is not None else None
        return list(value) if isinstance(value, ArrayObject) else []

    root = reader.root_object.get("/Pages")
    root = root.get_object() if root is not None else None
    if not isinstance(root, DictionaryObject):
        raise PdfReadError("Invalid object in /Pages")
    memo: dict[int, int] = {}
    on_path = {id(root)}
    stack: list[list[Any]] = [[root, iter(kids(root)), 0]]  # node, its remaining kids, pages so far
    while stack:
        frame = stack[-1]
        for ref in frame[1]:
            node = ref.get_object()
            if not isinstance(node, DictionaryObject) or not node:
                continue
            node_kind = kind(node)
            if node_kind == "/Page":
                frame[2] += 1
            elif node_kind == "/Pages":
                if id(node) in on_path:
                    raise PdfReadError("Detected cyclic page references.")
                if id(node) not in memo:
                    on_path.add(id(node))
                    stack.append([node, iter(kids(node)), 0])
                    break
                frame[2] += memo[id(node)]
            if frame[2] > stop_above:
                return frame[2] + sum(f[2] for f in stack[:-1])
        else:
            stack.pop()
            memo[id(frame[0])] = frame[2]
            on_path.discard(id(frame[0]))
            if stack:
                stack[-1][2] += frame[2]
                if sum(f[2] for f in stack) > stop_above:
                    return sum(f[2] for f in stack)
    return memo[id(root)]


def pdf_page_texts(data: bytes, path: Path, *, rules: LibraryRules) -> list[str]:
    """The cleaned text of each page of the PDF ``data``; an error for a broken, locked, empty or over-cap PDF."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    # pypdf raises many exception types on malformed files (PdfReadError, but also
    # KeyError, ValueError, TypeError, RecursionError ...): any of them means "broken PDF".
    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as err:
        raise EmbedlabError(
            f"broken PDF, cannot parse it ({describe(err)})", path=path, expected="a valid PDF file"
        ) from None
    if encrypted:
        try:
            decrypted = reader.decrypt("")
        except DependencyError:
            raise EmbedlabError(
                "PDF is encrypted with AES and cannot be read here",
                path=path,
                hint="pip install cryptography, or save an unencrypted copy",
            ) from None
        except Exception as err:
            raise EmbedlabError(f"PDF is encrypted and cannot be decrypted ({describe(err)})", path=path) from None
        if not decrypted:
            raise EmbedlabError(
                "PDF is encrypted and needs a password",
                path=path,
                hint="save an unencrypted copy (e.g. qpdf --decrypt) to index it",
            )
    count = _page_tree(lambda: count_pages(reader, stop_above=rules.max_pages), path)
    if count > rules.max_pages:
        raise over_cap(f"PDF has more than {rules.max_pages} pages", "max_pages", f"{rules.max_pages} pages", path=path)
    pdf_pages = _page_tree(lambda: list(reader.pages), path)
    if not pdf_pages:
        raise EmbedlabError("PDF has no pages", path=path)
    if len(pdf_pages) > rules.max_pages:  # pypdf read the tree differently: the cap holds regardless
        raise over_cap(f"PDF has {len(pdf_pages)} pages", "max_pages", f"{rules.max_pages} pages", path=path)
    texts: list[str] = []
    failed = []
    total = 0
    for number, pdf_page in enumerate(pdf_pages, start=1):
        try:
            text = pdf_page.extract_text() or ""
        except Exception as err:
            logger.warning("%s: page %d: cannot extract text (%s); indexed as empty", path, number, describe(err))
            failed.append(number)
            text = ""
        texts.append(clean_pdf_text(text))
        total += len(texts[-1].encode("utf-8", "surrogatepass"))
        if total > rules.max_text_bytes:
            raise over_cap(
                f"PDF text passes {megabytes(rules.max_text_bytes)} by page {number}",
                "max_text_bytes",
                f"{megabytes(rules.max_text_bytes)} of text",
                path=path,
            )
    if not any(texts):
        if len(failed) == len(texts):
            raise EmbedlabError(f"broken PDF, text extraction failed on all {len(texts)} pages", path=path)
        raise no_text(path, f"on none of its {len(texts)} pages; image-only or scanned PDF?")
    return texts


def _page_tree(read: Callable[[], _T], path: Path) -> _T:
    """``read()`` of the page tree, with pypdf's failures as one line: encrypted, or broken."""
    from pypdf.errors import FileNotDecryptedError

    try:
        return read()
    except FileNotDecryptedError:
        raise EmbedlabError("PDF is encrypted and needs a password", path=path) from None
    except Exception as err:
        raise EmbedlabError(
            f"broken PDF, cannot read its pages ({describe(err)})", path=path, expected="a valid PDF file"
        ) from None

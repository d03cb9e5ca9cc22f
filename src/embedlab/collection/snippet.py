"""Snippets: the part of a chunk that best shows why it matched, with the query's terms marked.

A query term matches a word of the chunk when both analyse to the same BM25 term (same
stem, stop words ignored), so "passwords" marks "password".  Offsets are kept raw
(characters of the chunk text) so any front end can mark them its own way;
:func:`mark` renders them for a terminal (``**word**``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from embedlab.index.lexical import TermAnalyzer

SNIPPET_CHARS = 240
_CONTEXT = 60  # characters shown before the first mark of the window


@dataclass(frozen=True)
class Snippet:
    start: int  # offsets in the chunk text
    end: int
    highlights: tuple[tuple[int, int], ...]  # (start, end) in the chunk text, within [start, end)


def highlights(text: str, query: str, analyzer: TermAnalyzer) -> tuple[tuple[int, int], ...]:
    wanted = set(analyzer.terms(query))
    if not wanted:
        return ()
    return tuple(analyzer.matching_spans(text, wanted))


def _snap_start(text: str, start: int) -> int:
    """Move a window start back to a word start (never before 0)."""
    if start <= 0:
        return 0
    space = text.rfind(" ", max(0, start - 20), start)
    newline = text.rfind("\n", max(0, start - 20), start)
    cut = max(space, newline)
    return cut + 1 if cut >= 0 else start


def _snap_end(text: str, end: int) -> int:
    if end >= len(text):
        return len(text)
    match = re.compile(r"\s").search(text, end)
    return match.start() if match and match.start() - end < 20 else end


def make_snippet(text: str, marks: tuple[tuple[int, int], ...], *, width: int = SNIPPET_CHARS) -> Snippet:
    """The ``width``-character window holding the most marks (earliest on ties), at word boundaries."""
    if len(text) <= width:
        return Snippet(0, len(text), marks)
    best_start, best_count = 0, 0
    for s, _ in marks:
        start = max(0, s - _CONTEXT)
        count = sum(1 for a, b in marks if a >= start and b <= start + width)
        if count > best_count:
            best_start, best_count = start, count
    start = _snap_start(text, best_start)
    end = _snap_end(text, min(len(text), start + width))
    return Snippet(start, end, tuple((a, b) for a, b in marks if a >= start and b <= end))


def mark(text: str, snippet: Snippet, *, before: str = "**", after: str = "**", flatten: bool = True) -> str:
    """The snippet with its highlights wrapped in ``before``/``after``; "…" where text was cut."""
    pieces, cursor = [], snippet.start
    for s, e in snippet.highlights:
        pieces += [text[cursor:s], before, text[s:e], after]
        cursor = e
    pieces.append(text[cursor : snippet.end])
    body = "".join(pieces)
    if flatten:
        body = " ".join(body.split())
    return ("…" if snippet.start > 0 else "") + body + ("…" if snippet.end < len(text) else "")

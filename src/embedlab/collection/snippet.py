"""Snippets: the part of a chunk that best shows why it matched, with the query's terms marked.

A query term matches a word of the chunk when both analyse to the same BM25 term (same
stem, stop words ignored), so "passwords" marks "password".  Highlighting leaves out more
words than BM25 does (:data:`HIGHLIGHT_STOPWORDS`: question words, auxiliaries and pronouns
such as "how", "can", "did", "use"): BM25 weighs such words down by their idf, but a marked
"can" in every snippet only hides the words that made the hit.  Offsets are kept raw
(characters of the chunk text) so any front end can mark them its own way;
:func:`mark` renders them (``**word**`` by default; :func:`terminal_marks` picks real bold on a
terminal and nothing when the output is piped).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TextIO

from embedlab.index.lexical import TermAnalyzer

SNIPPET_CHARS = 240
_CONTEXT = 60  # characters shown before the first mark of the window


@dataclass(frozen=True)
class Snippet:
    start: int  # offsets in the chunk text
    end: int
    highlights: tuple[tuple[int, int], ...]  # (start, end) in the chunk text, within [start, end)


# English function words beyond Lucene's BM25 list (lexical.STOPWORDS), compared before stemming
HIGHLIGHT_STOPWORDS = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "all",
        "also",
        "am",
        "any",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "can",
        "cannot",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "done",
        "each",
        "few",
        "from",
        "further",
        "get",
        "gets",
        "got",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "its",
        "just",
        "me",
        "more",
        "most",
        "my",
        "need",
        "needs",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "shall",
        "she",
        "should",
        "so",
        "some",
        "than",
        "them",
        "those",
        "through",
        "too",
        "under",
        "until",
        "up",
        "us",
        "use",
        "used",
        "uses",
        "using",
        "very",
        "want",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "would",
        "you",
        "your",
        "yours",
    ]
)


def query_terms(query: str, analyzer: TermAnalyzer) -> set[str]:
    """The BM25 terms of ``query`` worth marking: its stop words and :data:`HIGHLIGHT_STOPWORDS` left out."""
    return {term for start, end, term in analyzer.spans(query) if query[start:end].lower() not in HIGHLIGHT_STOPWORDS}


def highlights(text: str, query: str, analyzer: TermAnalyzer) -> tuple[tuple[int, int], ...]:
    wanted = query_terms(query, analyzer)
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


BOLD = ("\033[1m", "\033[22m")  # ANSI SGR bold on / normal intensity


def terminal_marks(stream: TextIO) -> tuple[str, str]:
    """How to mark highlights on ``stream``: ANSI bold on a terminal (unless ``NO_COLOR`` is set, see
    https://no-color.org), nothing when piped or redirected, so the text stays plain for other programs."""
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty() and not os.environ.get("NO_COLOR"):
        return BOLD
    return ("", "")

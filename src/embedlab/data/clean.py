"""Clean page text for search, with an exact map back to the page text as extracted.

PDF extraction leaves artefacts that hurt chunking, BM25 and snippets: tabs and runs of
spaces inside sentences, words split at line ends by a hyphen ("sepa-\\nrate"), letters
spaced out by small capitals or kerning ("P UNCH", "mo st"), and the running headers,
footers and page counters ("101 of 293") printed on every page.  The page text as
extracted stays what a chunk's ``char_start``/``char_end`` point into (it is what a reader
finds on that page); the clean text is what is chunked, embedded, indexed and shown.

Cleaning is a list of non-overlapping edits on the page text (a span replaced by a shorter
string, usually ``""`` or ``" "``), so every character of the clean text that was copied
keeps its position in the page text: :class:`CleanText` keeps one breakpoint per edit
(memory grows with the edits, not with the text) and maps a clean span back to the page
span it came from.

Rules (each chosen to do nothing to ordinary prose; the document's own vocabulary decides
the doubtful cases, since no dictionary is shipped):

- **Whitespace**: a tab, or a run of two or more spaces (also no-break spaces) inside a
  line becomes one space; spaces at the start of a line go.  A line holding only closing
  punctuation's start (".", ",", ")" ...) is joined to the line before ("BLACK\\n. He").
- **Hyphenated line breaks**: ``letter-\\nletter`` is joined ("sepa-\\nrate" -> "separate")
  unless the hyphenated form is the more frequent one in the document ("self-explanatory")
  or the word before already holds a hyphen ("back-to-\\nback"): then only the line break goes.
- **Spaced-out letters**: a capital other than A, I, O followed by a space and two or more
  capitals is one word ("W ILLIAM" -> "WILLIAM"); two short lower-case fragments are one word
  when the joined word occurs in the document ten times as often as the split pair (and at
  least three times), and the first fragment is no common short word and never stands alone
  in the document ("mo st" -> "most", but never "a go" or "set up").
- **Headers, footers, page numbers** (PDFs of three or more pages): among the first and
  last three lines of a page, a line is dropped when it is a page counter ("12", "- 12 -",
  "Page 12", "12 of 293"), or when, with its digits masked, it sits at a page edge on at
  least half of the pages, or on three or more pages with a number that changes (a running
  head with its page number: "CHAPTER V. ADVICE FROM A CATERPILLAR 27").
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

CLEANING: Final = "clean-1"  # stored in a collection's manifest: chunks of another cleaning are re-read on update

_EDGE_LINES = 3
_MIN_PAGES = 3
_COUNTER = re.compile(
    r"(?i)^(?:[-\u2013\u2014]\s*)?(?:page\s+)?\d{1,5}(?:\s*(?:of|/)\s*\d{1,5})?(?:\s*[-\u2013\u2014])?$"
)
_WORDY = re.compile(r"[^\W\d_]{4}")
_DIGITS = re.compile(r"\d+")
_LINE = re.compile(r"[^\n]*(?:\n|$)")
_INNER_SPACE = re.compile(r"(?<=\S)(?:\t[ \t\u00a0]*|[ \u00a0][ \t\u00a0]+)(?=\S)")
_LEADING_SPACE = re.compile(r"(?m)^[ \t\u00a0]+(?=\S)")
_PUNCT_LINE = re.compile(r"(?<=\S)\n[ \t]*(?=[.,;:!?)\]\u201d\u2019](?:\s|$))")
_HYPHEN_BREAK = re.compile(r"(?<![\w-])([A-Za-z][\w-]*?[a-z])-[ \t]*\n[ \t]*([a-z]+)")
_SMALL_CAPS = re.compile(r"(?<![\w.'\u2019])([B-HJ-NP-Z]) ([A-Z]{2,})\b")
# a look-ahead, so that pairs overlap: in "the mo st" both "the mo" and "mo st" are looked at
_SPLIT_WORD = re.compile(r"(?<![\w'\u2019-])(?=([a-z]{2,3}) ([a-z]{1,6})(?![\w'\u2019-]))")
# short English words that are never taken for the first half of a split word ("set up" is not "setup")
_SHORT_WORDS = frozenset(
    [
        "am",
        "an",
        "as",
        "at",
        "be",
        "by",
        "do",
        "go",
        "he",
        "if",
        "in",
        "is",
        "it",
        "me",
        "my",
        "no",
        "of",
        "on",
        "or",
        "so",
        "to",
        "up",
        "us",
        "we",
        "all",
        "and",
        "any",
        "are",
        "but",
        "can",
        "did",
        "few",
        "for",
        "get",
        "got",
        "had",
        "has",
        "her",
        "him",
        "his",
        "how",
        "its",
        "let",
        "may",
        "new",
        "not",
        "now",
        "old",
        "one",
        "our",
        "out",
        "own",
        "put",
        "run",
        "saw",
        "say",
        "see",
        "set",
        "she",
        "the",
        "too",
        "two",
        "use",
        "was",
        "way",
        "who",
        "why",
        "yet",
        "you",
    ]
)
_WORD = re.compile(r"[A-Za-z][\w'’-]*")


@dataclass(frozen=True)
class CleanText:
    """The clean text of a page and the map from its characters to the page text's.

    ``breaks`` are ``(clean_pos, raw_pos, raw_end)``: from ``clean_pos`` on, clean characters are
    copies of page characters from ``raw_pos`` on, one for one, up to the next breakpoint;
    ``raw_end`` is ``-1`` for such a copied run, else the end of the page span that an edit
    replaced (the clean characters of a replacement all map to the whole span).
    """

    text: str
    breaks: tuple[tuple[int, int, int], ...]

    def raw_start(self, pos: int) -> int:
        clean_pos, raw_pos, raw_end = self.breaks[bisect_right(self.breaks, (pos, 1 << 62, 0)) - 1]
        return raw_pos if raw_end >= 0 else raw_pos + pos - clean_pos

    def raw_end(self, end: int) -> int:
        """The page offset just after clean character ``end - 1``."""
        clean_pos, raw_pos, raw_end = self.breaks[bisect_right(self.breaks, (end - 1, 1 << 62, 0)) - 1]
        return raw_end if raw_end >= 0 else raw_pos + end - clean_pos

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        """The page span that the clean span ``[start, end)`` (``start < end``) came from."""
        return self.raw_start(start), self.raw_end(end)


def identity(text: str) -> CleanText:
    return CleanText(text, ((0, 0, -1),))


def apply_edits(raw: str, edits: Sequence[tuple[int, int, str]]) -> CleanText:
    """Apply ``(start, end, replacement)`` edits to ``raw``; an edit overlapping an earlier one in the
    list is dropped (so callers list the edits that must win first)."""
    accepted = sorted(_first_wins(edits))
    pieces: list[str] = []
    breaks: list[tuple[int, int, int]] = []
    clean_pos = raw_pos = 0
    for start, end, replacement in accepted:
        if start > raw_pos:
            breaks.append((clean_pos, raw_pos, -1))
            pieces.append(raw[raw_pos:start])
            clean_pos += start - raw_pos
        if replacement:
            breaks.append((clean_pos, start, end))
            pieces.append(replacement)
            clean_pos += len(replacement)
        raw_pos = end
    if raw_pos < len(raw) or not breaks:
        breaks.append((clean_pos, raw_pos, -1))
        pieces.append(raw[raw_pos:])
    return CleanText("".join(pieces), tuple(breaks))


def _first_wins(edits: Sequence[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The edits that overlap no edit listed before them."""
    kept: list[tuple[int, int, str]] = []
    starts: list[int] = []
    ends: list[int] = []
    for start, end, replacement in edits:
        if start >= end:
            continue
        i = bisect_right(starts, start)
        if (i > 0 and ends[i - 1] > start) or (i < len(starts) and starts[i] < end):
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        kept.append((start, end, replacement))
    return kept


# ----------------------------------------------------------------------------- rules


def _edge_lines(text: str) -> list[tuple[int, int, str, bool]]:
    """``(start, end_with_newline, stripped, outermost)`` of the first and last few non-blank lines of a page."""
    lines = [(m.start(), m.end(), m.group().strip()) for m in _LINE.finditer(text) if m.group().strip()]
    out = [(*line, n in (0, len(lines) - 1)) for n, line in enumerate(lines)]
    return out if len(out) <= 2 * _EDGE_LINES else out[:_EDGE_LINES] + out[-_EDGE_LINES:]


def _furniture(pages: Sequence[str]) -> list[list[tuple[int, int, str]]]:
    """Per page, the line deletions of running headers, footers and page counters (never a whole page
    of text: a short document's pages may repeat a line without it being furniture)."""
    edges = [_edge_lines(text) for text in pages]
    exact: dict[str, set[int]] = {}
    masked: dict[str, list[int]] = {}
    numbers: dict[str, set[str]] = {}
    for number, lines in enumerate(edges):
        for _, _, line, outermost in lines:
            exact.setdefault(line, set()).add(number)
            if outermost:
                key = _DIGITS.sub("#", line)
                if masked.setdefault(key, [number])[-1] != number:
                    masked[key].append(number)
                numbers.setdefault(key, set()).add(" ".join(_DIGITS.findall(line)))
    many = max(_MIN_PAGES, (len(pages) + 1) // 2)

    def running(line: str, outermost: bool) -> bool:
        if len(pages) < _MIN_PAGES:
            return False
        if len(exact[line]) >= many:
            return True
        if not outermost:
            return False
        # a running head with its page number: words, a number at one end that changes, on pages that follow
        # each other
        key = _DIGITS.sub("#", line)
        on = masked[key]
        following = sum(1 for a, b in itertools.pairwise(on) if b == a + 1)
        return (
            (key.startswith("#") or key.endswith("#"))
            and bool(_WORDY.search(key))
            and len(numbers[key]) >= _MIN_PAGES
            and following >= _MIN_PAGES - 1
        )

    out = []
    for lines in edges:
        counters = [(start, end, "") for start, end, line, _ in lines if _COUNTER.match(line)]
        heads = [
            (start, end, "") for start, end, line, outer in lines if not _COUNTER.match(line) and running(line, outer)
        ]
        if len(counters) + len(heads) < len(lines):
            out.append(counters + heads)
        else:
            out.append(counters)
    return out


def _whitespace(text: str) -> list[tuple[int, int, str]]:
    edits = [(m.start(), m.end(), " ") for m in _INNER_SPACE.finditer(text)]
    edits += [(m.start(), m.end(), "") for m in _LEADING_SPACE.finditer(text)]
    edits += [(m.start(), m.end(), "") for m in _PUNCT_LINE.finditer(text)]
    return edits


def _hyphens(text: str, vocabulary: Counter[str]) -> list[tuple[int, int, str]]:
    edits = []
    for m in _HYPHEN_BREAK.finditer(text):
        before, after = m.group(1), m.group(2)
        hyphen = m.end(1)
        if "-" in before or vocabulary[f"{before}-{after}".lower()] > vocabulary[f"{before}{after}".lower()]:
            edits.append((hyphen + 1, m.start(2), ""))  # keep the hyphen, drop the line break
        else:
            edits.append((hyphen, m.start(2), ""))
    return edits


def _splits(pages: Sequence[str]) -> Counter[str]:
    """How often each word occurs as a fragment of a spaced-out word (the capitals after a lone capital,
    the first of two lower-case fragments), so that a fragment that is only ever a fragment is known as one."""
    out: Counter[str] = Counter()
    for text in pages:
        out.update(m.group(2).lower() for m in _SMALL_CAPS.finditer(text))
        for m in _SPLIT_WORD.finditer(text):
            out.update((m.group(1), f"{m.group(1)} {m.group(2)}"))
    return out


def _spaced_letters(text: str, vocabulary: Counter[str], splits: Counter[str]) -> list[tuple[int, int, str]]:
    edits = []
    for m in _SMALL_CAPS.finditer(text):
        if vocabulary[m.group(2).lower()] <= splits[m.group(2).lower()]:  # "UNCH" is no word of its own
            edits.append((m.end(1), m.end(1) + 1, ""))
    for m in _SPLIT_WORD.finditer(text):
        first, joined = m.group(1), m.group(1) + m.group(2)
        if (
            first not in _SHORT_WORDS
            and vocabulary[joined] >= max(3, 10 * splits[f"{first} {m.group(2)}"])  # "mo st" 1 time, "most" 300
            and vocabulary[first] <= splits[first]
        ):
            edits.append((m.end(1), m.end(1) + 1, ""))
    return edits


def _vocabulary(pages: Sequence[str]) -> Counter[str]:
    words: Counter[str] = Counter()
    for text in pages:
        words.update(word.lower() for word in _WORD.findall(text))
    return words


def clean_pages(pages: Sequence[str], *, kind: str) -> list[CleanText]:
    """The clean text of each page of one document of ``kind`` ("pdf", "text", "markdown", "html").

    PDFs get every rule; text, Markdown and HTML (written by people, not laid out on pages)
    only the whitespace inside lines, so indentation and Markdown are kept.
    """
    if kind != "pdf":
        return [apply_edits(text, [(m.start(), m.end(), " ") for m in _INNER_SPACE.finditer(text)]) for text in pages]
    vocabulary = _vocabulary(pages)
    splits = _splits(pages)
    furniture = _furniture(pages)
    out = []
    for text, drops in zip(pages, furniture, strict=True):
        edits = drops + _hyphens(text, vocabulary) + _whitespace(text) + _spaced_letters(text, vocabulary, splits)
        out.append(apply_edits(text, edits))
    return out

"""Chunking: a document's pages cut into passages that fit a token budget, for embedding.

Rules, in order of priority:

1. A chunk never spans two pages, so its page number is exact.  Chunks are cut from the
   page's clean text (:mod:`embedlab.data.clean`) and a chunk's text is a span of it (no
   whitespace at either end); ``char_start``/``char_end`` are that span mapped back to the
   page text as extracted, so ``page.text[char_start:char_end]`` is where the passage is
   on the page (the two are equal for text without artefacts).
2. A chunk has at most ``max_tokens`` tokens, as counted by ``count_tokens`` on the
   chunk's own text (so a tokenizer that adds special tokens is honoured), and at most
   ``max_tokens * MAX_CHARS_PER_TOKEN`` characters whatever the counter says: text with no
   boundary at all (a 30 MB line without a space) is still cut into bounded chunks, each
   cut found in time proportional to the chunk, not to the rest of the page.
3. Cuts fall on paragraph ends (a blank line, unless it sits inside a sentence: no end
   punctuation before it and a lower-case letter after it, as PDF column breaks leave)
   when one leaves the chunk at least half full, else on sentence ends; a sentence longer than
   the budget is cut at a line end
   (at least half full) or else between words, and a single word longer than the
   budget between characters.
   A back-matter heading on a line of its own ("References", "Bibliography", "Acknowledgements",
   "Notes", "Appendix A") always starts a new chunk: a passage and the reference list after it
   are different content, and one embedding of both matches neither well.
4. Consecutive chunks of a page overlap by at most ``overlap`` tokens: the longest run of
   whole trailing sentences of the previous chunk that fits, or, when its last sentence
   alone is too long, its last words.  The overlap is shortened or dropped when keeping
   it would force the next sentence to be cut.  Chunks on different pages do not overlap.

Sentence ends are found by a rule, not a model: ``.``, ``!``, ``?`` or ``…`` (with closing
quotes or brackets) followed by whitespace and a character that is not a lower-case
letter, except after common abbreviations and single-letter initials; list items
(bullets, ``1.``) and Markdown headings are sentences of their own.

The default token counter counts whitespace-separated words, a word longer than
``MAX_CHARS_PER_TOKEN`` characters as one token per started run of that many.  To budget in a model's
tokens pass a counter built on its tokenizer, e.g. ``count_tokens=lambda s:
len(tokenizer.encode(s).ids)`` with a Hugging Face ``tokenizers.Tokenizer`` whose
truncation and padding are off, or :func:`tokenizer_counter`, which makes sure of that (a
truncating tokenizer never counts past its limit, and chunks would silently outgrow
the budget).  Counting assumes a longer span never has fewer tokens and a word is at least
one token; each chunk's own count is still measured, so the budget always holds.
"""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from embedlab.data.ingest import SourceDocument
from embedlab.errors import EmbedlabError

TokenCounter = Callable[[str], int]
_BACK_MATTER = re.compile(  # a heading alone on its line
    r"^[ \t]*((?:references|bibliography|acknowledge?ments?|notes|literature cited|works cited"
    r"|appendix(?: [a-z0-9]{1,3})?)[:.]?)[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
MAX_CHARS_PER_TOKEN = 64  # no real tokenizer's tokens average this long; bounds text without boundaries
_LONG_WORD = re.compile(rf"\S{{{MAX_CHARS_PER_TOKEN + 1},}}")


def count_words(text: str) -> int:
    """Whitespace-separated words, the default, model-free token count; a word longer than
    ``MAX_CHARS_PER_TOKEN`` characters counts one token per started run of that many (a 2 MB
    string without spaces is not "one token")."""
    extra = sum((len(match.group()) - 1) // MAX_CHARS_PER_TOKEN for match in _LONG_WORD.finditer(text))
    return len(text.split()) + extra


def tokenizer_counter(tokenizer: Any) -> TokenCounter:
    """Count tokens with a Hugging Face ``tokenizers.Tokenizer``, special tokens included.

    Counts from a copy with truncation and padding switched off: model tokenizers often
    truncate (all-MiniLM-L6-v2's at 128 tokens), and a count that stops at the limit would
    let chunks grow past the budget unseen.
    """
    copy = type(tokenizer).from_str(tokenizer.to_str())
    copy.no_truncation()
    copy.no_padding()
    return lambda text: len(copy.encode(text).ids)


@dataclass(frozen=True)
class Chunk:
    """A passage of one page: ``text`` is clean text; ``page.text[char_start:char_end]`` is where it came from."""

    doc: str  # the document's relative path (SourceDocument.relative)
    index: int  # 0-based position of the chunk in its document
    page: int  # 1-based page number
    char_start: int
    char_end: int
    text: str
    tokens: int

    @property
    def id(self) -> str:
        return f"{self.doc}#{self.index}"


def chunk_document(
    doc: SourceDocument,
    *,
    max_tokens: int = 256,
    overlap: int = 32,
    count_tokens: TokenCounter = count_words,
) -> list[Chunk]:
    """Cut each page of ``doc`` into chunks of at most ``max_tokens`` tokens (see the module docstring)."""
    return list(iter_chunks(doc, max_tokens=max_tokens, overlap=overlap, count_tokens=count_tokens))


def iter_chunks(
    doc: SourceDocument,
    *,
    max_tokens: int = 256,
    overlap: int = 32,
    count_tokens: TokenCounter = count_words,
) -> Iterator[Chunk]:
    """:func:`chunk_document` one chunk at a time, so a caller can stop at a cap without cutting the rest."""
    _check_options(max_tokens, overlap, count_tokens)
    index = 0
    for page in doc.pages:
        clean = page.search_text
        for start, end, tokens in _PageChunker(clean.text, max_tokens, overlap, count_tokens).run():
            raw_start, raw_end = clean.raw_span(start, end)
            yield Chunk(
                doc=doc.relative,
                index=index,
                page=page.number,
                char_start=raw_start,
                char_end=raw_end,
                text=clean.text[start:end],
                tokens=tokens,
            )
            index += 1


def check_chunk_options(max_tokens: object, overlap: object, count_tokens: object = count_words) -> None:
    """The errors :func:`chunk_document` would raise for these options, before any work."""
    _check_options(max_tokens, overlap, count_tokens)


def _check_options(max_tokens: object, overlap: object, count_tokens: object) -> None:
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0:
        raise EmbedlabError(
            "invalid chunk size", found=f"max_tokens={max_tokens!r}", expected="a whole number of tokens > 0 (e.g. 256)"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < max_tokens:
        raise EmbedlabError(
            "invalid chunk overlap",
            found=f"overlap={overlap!r} with max_tokens={max_tokens}",
            expected=f"a whole number with 0 <= overlap < max_tokens (e.g. {max_tokens // 8})",
        )
    if not callable(count_tokens):
        raise EmbedlabError(
            "invalid token counter", found=repr(count_tokens), expected="a function from text to a number of tokens"
        )


# ----------------------------------------------------------------------------- segmentation

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\f\v\r]*\n\s*")
# the look-behind starts a match only at the first mark of a run: a long run of dots stays linear
_SENTENCE_END = re.compile(r"(?<![.!?\u2026])([.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*)\s+(?=(\S))")
_ITEM_START = re.compile(r"\n[ \t]*(?=(?:[\u2022\u25cf\u25aa\u25e6\u2023*\-\u2013]|\d{1,3}[.)]|#{1,6})[ \t])")
_HEADING_LINE = re.compile(r"^[ \t]*#{1,6}[ \t].*$", re.MULTILINE)
_WORD = re.compile(r"\S+")
_NON_SPACE = re.compile(r"\S")
_TERMINAL = frozenset(".!?:;\u2026\"'\u201d\u2019)]")
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "e.g",
        "i.e",
        "cf",
        "al",
        "fig",
        "figs",
        "eq",
        "eqs",
        "no",
        "nos",
        "vol",
        "pp",
        "ed",
        "eds",
        "approx",
        "dept",
        "inc",
        "ltd",
        "co",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "ch",
        "sec",
    ]
)


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Sentence spans (stripped) of the paragraph ``text[start:end]``."""
    cuts: set[int] = set()
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.group(2).islower():
            continue
        if match.group(1) == ".":
            # abbreviations are short: look back a few characters only (no scan of a long run)
            window = max(start, match.start(1) - 16)
            word_start = text.rfind(" ", window, match.start(1)) + 1
            word_start = max(word_start, text.rfind("\n", window, match.start(1)) + 1, window)
            word = text[word_start : match.start(1)].lstrip("([\"'\u201c\u2018").lower()
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        cuts.add(match.end(1))
    cuts.update(match.start() for match in _ITEM_START.finditer(text, start, end))
    cuts.update(match.end() for match in _HEADING_LINE.finditer(text, start, end))
    spans = []
    previous = start
    for cut in [*sorted(cuts), end]:
        span = _strip(text, previous, cut)
        if span:
            spans.append(span)
        previous = cut
    return spans


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


class _PageChunker:
    """Greedy packing of one page's sentences into chunks; see the module docstring."""

    def __init__(self, text: str, max_tokens: int, overlap: int, count: TokenCounter) -> None:
        self.text = text
        self.max_tokens = max_tokens
        self.max_chars = max_tokens * MAX_CHARS_PER_TOKEN
        self.overlap = overlap
        self.count = count
        # sentence spans in page order; ``strong`` marks those that end a paragraph
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.strong: list[bool] = []
        self.word_starts = [match.start() for match in _WORD.finditer(text)]
        previous = 0
        for brk in [*filter(self._is_paragraph_break, _PARAGRAPH_BREAK.finditer(text)), None]:
            para = _strip(text, previous, len(text) if brk is None else brk.start())
            if brk is not None:
                previous = brk.end()
            if para is None:
                continue
            sentences = _sentences(text, *para)
            for i, (s, e) in enumerate(sentences):
                self.starts.append(s)
                self.ends.append(e)
                self.strong.append(i == len(sentences) - 1)
        # ``hard[i]``: a back-matter heading follows sentence i, so a chunk must end after it
        self.hard = [False] * len(self.starts)
        for heading in _BACK_MATTER.finditer(text):
            self._break_before(heading.start(1))

    def _break_before(self, at: int) -> None:
        """Make ``at`` (a heading's start) begin a sentence, and the sentence before it a hard end."""
        i = bisect_right(self.starts, at) - 1
        if i < 0:
            return
        if self.starts[i] < at < self.ends[i]:  # the heading runs on into the next line: split there
            cut = at
            while cut > self.starts[i] and self.text[cut - 1].isspace():
                cut -= 1
            self.starts.insert(i + 1, at)
            self.ends.insert(i + 1, self.ends[i])
            self.strong.insert(i + 1, self.strong[i])
            self.hard.insert(i + 1, self.hard[i])
            self.ends[i], self.strong[i] = cut, True
            self.hard[i] = True
        elif self.starts[i] == at and i > 0:
            self.hard[i - 1] = True

    def _is_paragraph_break(self, brk: re.Match[str]) -> bool:
        """A blank line is a paragraph break unless a sentence visibly runs on through it.

        PDF extraction leaves blank lines at column and block changes mid-sentence
        ("... the zygomatic<blank line>major, and ..."): a break after no end punctuation and
        before a lower-case letter is read as a space.
        """
        if not self.text[brk.end() : brk.end() + 1].islower():
            return True
        i = brk.start() - 1
        while i >= 0 and self.text[i].isspace():
            i -= 1
        return i < 0 or self.text[i] in _TERMINAL

    def tokens(self, start: int, end: int, limit: int | None = None) -> int:
        """Tokens of ``text[start:end]``, or ``limit + 1`` without counting when it has more words than ``limit``.

        Every word is at least one token (true of word counts and subword tokenizers), so a
        span with more words cannot fit; skipping the count keeps long spans from being
        tokenized again for every chunk, which would be quadratic on long pages.
        """
        limit = self.max_tokens if limit is None else limit
        if end - start > self.max_chars:  # over the character bound of every chunk: never counted
            return limit + 1
        if bisect_left(self.word_starts, end) - bisect_left(self.word_starts, start) > limit:
            return limit + 1
        return self.count(self.text[start:end])

    def run(self) -> Iterator[tuple[int, int, int]]:
        if not self.starts:
            return
        pos = self.starts[0]  # where new content starts
        chunk_start = pos  # where the chunk starts (before ``pos`` when it repeats an overlap)
        while True:
            chunk_start, end, tokens = self._next_chunk(chunk_start, pos)
            yield chunk_start, end, tokens
            following = self._next_content(end)
            if following is None:
                return
            pos = following
            overlap_start = self._overlap_start(chunk_start, end) if self.overlap else None
            chunk_start = pos if overlap_start is None else overlap_start

    def _next_content(self, end: int) -> int | None:
        """Where the text after ``end`` resumes, or ``None`` at the end of the page."""
        if end >= self.ends[-1]:
            return None
        match = _NON_SPACE.search(self.text, end)  # not _WORD: it would scan to the end of a long word
        return None if match is None else match.start()

    def _next_chunk(self, chunk_start: int, pos: int) -> tuple[int, int, int]:
        """``(start, end, tokens)`` of the chunk that begins at ``chunk_start`` and adds text from ``pos``."""
        first = bisect_right(self.ends, pos)  # first sentence that ends after pos
        ends = self.ends
        fit = _latest_fitting(ends, lambda e: self.tokens(chunk_start, e), self.max_tokens, lo=first)
        if fit is not None:
            index, tokens = fit
            hard = next((j for j in range(first, index) if self.hard[j]), None)
            if hard is not None:  # a back-matter heading follows: the chunk ends before it
                return chunk_start, ends[hard], self.tokens(chunk_start, ends[hard])
            if not self.strong[index]:  # prefer a paragraph end when the chunk stays half full
                for j in range(index - 1, first - 1, -1):
                    if self.strong[j]:
                        paragraph_tokens = self.tokens(chunk_start, ends[j])
                        if 2 * paragraph_tokens >= self.max_tokens:
                            return chunk_start, ends[j], paragraph_tokens
                        break
            return chunk_start, ends[index], tokens
        sentence_end = self.ends[first]
        if chunk_start < pos and self.tokens(pos, sentence_end) <= self.max_tokens:
            # the sentence fits on its own: shorten the overlap rather than cut the sentence
            shorter = self._earliest_start(chunk_start, pos, sentence_end, self.max_tokens)
            return self._next_chunk(pos if shorter is None else shorter, pos)
        return self._cut_long_sentence(chunk_start, pos, sentence_end)

    def _cut_long_sentence(self, chunk_start: int, pos: int, sentence_end: int) -> tuple[int, int, int]:
        """A sentence over budget: cut at a line end (half full) or the last word end that fits."""
        # every word counts at least one token, so no chunk holds more than max_tokens of them,
        # nor more than max_chars characters: only that window is scanned
        window_end = min(sentence_end, pos + self.max_chars)
        words = itertools.islice(_WORD.finditer(self.text, pos, window_end), self.max_tokens + 1)
        word_ends = [m.end() for m in words]
        if word_ends and word_ends[-1] == window_end < sentence_end and not self.text[window_end].isspace():
            word_ends.pop()  # a word cut by the window's end, not a word end
        fit = _latest_fitting(word_ends, lambda e: self.tokens(chunk_start, e), self.max_tokens)
        if fit is None and chunk_start < pos:
            chunk_start = pos
            fit = _latest_fitting(word_ends, lambda e: self.tokens(chunk_start, e), self.max_tokens)
        if fit is None:  # one word longer than the budget: cut between characters
            word_end = word_ends[0] if word_ends else window_end
            char_ends = range(pos + 1, word_end + 1)
            fit = _latest_fitting(char_ends, lambda e: self.tokens(pos, e), self.max_tokens)
            if fit is None:
                raise EmbedlabError(
                    "max_tokens is too small for this token counter: a single character is over budget",
                    found=f"max_tokens={self.max_tokens}, {self.tokens(pos, pos + 1)} tokens for {self.text[pos]!r}",
                    expected="a larger max_tokens",
                )
            return pos, char_ends[fit[0]], fit[1]
        index, tokens = fit
        for j in range(index - 1, -1, -1):  # a line end in the second half of the chunk
            if "\n" in self.text[word_ends[j] : word_ends[j + 1]]:
                line_tokens = self.tokens(chunk_start, word_ends[j])
                if 2 * line_tokens >= self.max_tokens:
                    return chunk_start, word_ends[j], line_tokens
                break
        return chunk_start, word_ends[index], tokens

    def _overlap_start(self, chunk_start: int, end: int) -> int | None:
        """Where the next chunk starts: whole trailing sentences of this chunk, else its last words."""
        return self._earliest_start(chunk_start, end, end, self.overlap)

    def _earliest_start(self, lo: int, hi: int, end: int, limit: int) -> int | None:
        """The earliest sentence start, else word start, strictly between ``lo`` and ``hi`` whose span to
        ``end`` is within ``limit`` (``lo`` is excluded so an overlap is always a proper suffix)."""
        span_tokens = lambda start: self.tokens(start, end, limit)  # noqa: E731
        sentence_starts = self.starts[bisect_right(self.starts, lo) : bisect_left(self.starts, hi)]
        found = _earliest_fitting(sentence_starts, span_tokens, limit)
        if found is None:
            word_starts = [m.start() for m in _WORD.finditer(self.text, lo, hi) if m.start() > lo]
            found = _earliest_fitting(word_starts, span_tokens, limit)
        return found


def _latest_fitting(
    ends: Sequence[int], tokens: Callable[[int], int], limit: int, *, lo: int = 0
) -> tuple[int, int] | None:
    """``(index, tokens)`` of the last of ``ends[lo:]`` whose span is within ``limit`` (galloping, then bisection).

    Galloping from ``lo`` keeps the counted spans near the budget on long pages.  Assumes the
    count grows with the span; only counted spans are returned, so the limit holds regardless.
    """
    if lo >= len(ends):
        return None
    counts: dict[int, int] = {}

    def fits(i: int) -> bool:
        if i not in counts:
            counts[i] = tokens(ends[i])
        return counts[i] <= limit

    if not fits(lo):
        return None
    good, step = lo, 1
    while good + step < len(ends) and fits(good + step):
        good += step
        step *= 2
    bad = min(good + step, len(ends))
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good, counts[good]


def _earliest_fitting(starts: Sequence[int], tokens: Callable[[int], int], limit: int) -> int | None:
    """The first of ``starts`` whose span (to a fixed end) is within ``limit``, or ``None``."""
    reversed_starts = list(reversed(starts))
    fit = _latest_fitting(reversed_starts, tokens, limit)
    return None if fit is None else reversed_starts[fit[0]]

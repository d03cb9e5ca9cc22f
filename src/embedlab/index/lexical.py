"""The one lexical index: Lucene BM25 through ``bm25s``, for eval's ``bm25`` model and for collections.

Variant: Lucene BM25 (Robertson et al., with Lucene's idf = ln(1 + (N - df + 0.5)/(df + 0.5)))::

    score(d, q) = sum_{t in q} idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

Analysis (the same for documents, queries and snippet highlights): lower-case, words of two or
more word characters (bm25s's default splitter), English stop words removed, then the Porter
stemmer (PyStemmer's ``porter``; ``english`` is Snowball English, ``none`` no stemming).
Defaults k1=0.9, b=0.4: Anserini's BEIR "flat" baseline settings.  Reference: S. Robertson and
H. Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond" (2009); X. Lù, "BM25S" (2024).

Ties are broken like every index here: score descending, then id ascending.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.errors import EmbedlabError
from embedlab.index.base import id_ranks
from embedlab.index.exact import select_top

if TYPE_CHECKING:
    from bm25s.tokenization import Tokenizer

K1 = 0.9
B = 0.4
STEMMER: Final = "porter"
STOPWORDS = "en"
METHOD = "lucene"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's default splitter: words of two or more word characters
QUERY_BLOCK = 16  # queries scored against every document at a time (bounds the dense score block)


class BM25Options(BaseModel):
    """The options of the ``bm25`` model (``bm25:k1=1.2,b=0.75``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k1: float = Field(default=K1, gt=0)
    b: float = Field(default=B, ge=0, le=1)
    stemmer: Literal["porter", "english", "none"] = STEMMER


def bm25_tokenizer(stemmer: str = STEMMER) -> Tokenizer:
    """bm25s's tokenizer with this module's analysis (documents, when indexing)."""
    import Stemmer
    from bm25s.tokenization import Tokenizer

    stem = None if stemmer == "none" else Stemmer.Stemmer(stemmer).stemWord
    return Tokenizer(lower=True, splitter=TOKEN_PATTERN, stopwords=STOPWORDS, stemmer=stem)


class TermAnalyzer:
    """The same analysis as :func:`bm25_tokenizer`, as plain strings and with positions.

    For queries (a term is looked up in the index's own vocabulary, so no tokenizer state is
    kept between queries) and for highlighting query terms in a snippet."""

    _MEMO_LIMIT = 200_000  # distinct words remembered (a few MB); a served collection's vocabulary fits

    def __init__(self, stemmer: str = STEMMER) -> None:
        tokenizer = bm25_tokenizer(stemmer)
        self._stopwords = frozenset(tokenizer.stopwords or ())
        self._stem = tokenizer.stemmer or (lambda word: word)
        self._words = re.compile(TOKEN_PATTERN)
        # word -> term (None for a stop word): snippets analyse every word of every hit, and a dict
        # lookup is an order of magnitude cheaper than lower-casing and stemming again
        self._memo: dict[str, str | None] = {}

    def _term(self, word: str) -> str | None:
        term = self._memo.get(word, "")
        if term != "":
            return term
        lower = word.lower()
        term = None if lower in self._stopwords else self._stem(lower)
        if len(self._memo) < self._MEMO_LIMIT:
            self._memo[word] = term
        return term

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, term)`` of every indexed word of ``text`` (stop words left out)."""
        out = []
        for match in self._words.finditer(text):
            term = self._term(match.group())
            if term is not None:
                out.append((match.start(), match.end(), term))
        return out

    def matching_spans(self, text: str, wanted: set[str]) -> list[tuple[int, int]]:
        """``(start, end)`` of the words of ``text`` whose term is in ``wanted`` (snippet highlights:
        the same analysis as :meth:`spans`, with the per-word work in list comprehensions)."""
        matches = list(self._words.finditer(text))
        memo = self._memo
        terms = [memo.get(m.group(), "") for m in matches]
        for n, term in enumerate(terms):
            if term == "":
                terms[n] = self._term(matches[n].group())
        return [m.span() for m, term in zip(matches, terms, strict=True) if term in wanted]

    def terms(self, text: str) -> list[str]:
        return [term for _, _, term in self.spans(text)]


class BM25Index:
    """BM25 over ``rows`` texts (row i = the i-th text given to :meth:`build`)."""

    def __init__(self, model: Any, *, options: BM25Options, rows: int, ids: Sequence[object] | None = None) -> None:
        self.model = model  # a bm25s.BM25, or None when there are no texts
        self.options = options
        self.rows = rows
        self.doc_ids = list(ids) if ids is not None else None
        self.id_order = id_ranks(ids, rows)
        self.analyzer = TermAnalyzer(options.stemmer)

    @classmethod
    def build(
        cls,
        batches: Iterable[Sequence[str]],
        *,
        options: BM25Options | None = None,
        ids: Sequence[object] | None = None,
    ) -> BM25Index:
        """Index texts given a batch at a time (only token ids are kept, never all texts)."""
        options = options or BM25Options()
        tokenizer = bm25_tokenizer(options.stemmer)
        tokens: list[list[int]] = []
        for texts in batches:
            tokens.extend(tokenizer.tokenize(list(texts), update_vocab=True, show_progress=False, return_as="ids"))
        if not tokens:
            return cls(None, options=options, rows=0, ids=ids)
        import bm25s

        model = bm25s.BM25(k1=options.k1, b=options.b, method=METHOD)
        model.index(tokenizer.to_tokenized_tuple(tokens), show_progress=False)
        return cls(model, options=options, rows=len(tokens), ids=ids)

    def save(self, folder: Path) -> None:
        """Into ``folder`` (bm25s's files); callers write whole folders atomically."""
        if self.model is not None:
            self.model.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path | None, *, options: BM25Options, rows: int) -> BM25Index:
        if folder is None or rows == 0:
            return cls(None, options=options, rows=rows)
        import bm25s

        try:
            model = bm25s.BM25.load(str(folder), mmap=False, show_progress=False)
        except (OSError, ValueError, KeyError, IndexError, EOFError, RecursionError) as err:
            # what bm25s's JSON and .npy readers raise on a missing, truncated or overwritten file
            raise EmbedlabError(
                f"cannot load the BM25 index ({type(err).__name__}: {' '.join(str(err).split())[:200]})",
                path=folder,
                expected="the bm25s index folder written by `embedlab index build`",
                hint="it is damaged; `embedlab index build --replace` rebuilds the collection",
            ) from None
        return cls(model, options=options, rows=rows)

    def scores(self, query: str) -> np.ndarray:
        """One float32 score per row (0 for rows sharing no term with the query)."""
        if self.model is None:
            return np.zeros(self.rows, dtype=np.float32)
        vocab = self.model.vocab_dict
        terms = [t for t in self.analyzer.terms(query) if t in vocab]
        if not terms:
            return np.zeros(self.rows, dtype=np.float32)
        return np.asarray(self.model.get_scores(terms), dtype=np.float32)

    def search(
        self, queries: Sequence[str], k: int, *, rows: np.ndarray | None = None, matches_only: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, positions)``, each ``(len(queries), min(k, candidates))``, score desc then id asc.

        ``matches_only``: rows sharing no term with a query are left out (position -1, score
        -inf, at the end); else they fill the ranking after the matches, by id — a full ranking,
        which is what ``embedlab eval`` scores (the README's BM25 figures are measured so)."""
        candidates = self.rows if rows is None else len(rows)
        k = max(0, min(int(k), candidates))
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_p = np.full((len(queries), k), -1, dtype=np.int64)
        if k == 0:
            return out_s, out_p
        order = self.id_order if self.id_order is not None else np.arange(self.rows)
        cols = np.arange(self.rows) if rows is None else np.asarray(rows, dtype=np.int64)
        for start in range(0, len(queries), QUERY_BLOCK):
            block = np.stack([self.scores(q)[cols] for q in queries[start : start + QUERY_BLOCK]])
            s, p = select_top(block, np.broadcast_to(cols, block.shape), order, k)
            if matches_only:
                p = np.where(s > 0, p, -1)
                s = np.where(s > 0, s, -np.inf).astype(np.float32)
            out_s[start : start + len(block)], out_p[start : start + len(block)] = s, p
        return out_s, out_p

    def search_one(self, query: str, k: int, *, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The rows matching one query: 1-d ``(scores, positions)``, at most ``k``."""
        scores, positions = self.search([query], k, rows=rows)
        keep = positions[0] >= 0
        return scores[0][keep], positions[0][keep]

    @property
    def memory_bytes(self) -> int:
        if self.model is None:
            return 0
        matrix = self.model.scores
        return sum(int(matrix[key].nbytes) for key in ("data", "indices", "indptr") if key in matrix)

    @property
    def vocabulary_size(self) -> int:
        return 0 if self.model is None else len(self.model.vocab_dict)

    def describe(self) -> dict[str, object]:
        stemmer = self.options.stemmer
        return {
            "kind": "bm25",
            "library": f"bm25s {version('bm25s')}",
            "method": METHOD,
            "k1": self.options.k1,
            "b": self.options.b,
            "stemmer": f"{stemmer} (PyStemmer)" if stemmer != "none" else "none",
            "stopwords": STOPWORDS,
        }

"""BM25 as a model like any other, through ``bm25s``.

Variant: Lucene BM25 (Robertson et al. with Lucene's idf = ln(1 + (N - df + 0.5)/(df + 0.5))),
English stop words and the Snowball English stemmer (PyStemmer), title + text as one
field.  Defaults k1=0.9, b=0.4 (Anserini's BEIR baseline settings).  Scores for all
documents are computed per query and cut with embedlab's own top-k, so ties follow the
project rule (score desc, doc id asc).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.metadata import version
from typing import TYPE_CHECKING

import numpy as np

from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Document, chunks
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.spec import ModelSpec
from embedlab.index.exact import _select
from embedlab.search.dense import CORPUS_CHUNK
from embedlab.search.retriever import Retriever, to_run

if TYPE_CHECKING:
    from bm25s.tokenization import Tokenizer

K1 = 0.9
B = 0.4
STEMMER = "porter"
STOPWORDS = "en"
TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s's default splitter: words of two or more word characters
QUERY_BLOCK = 16


def bm25_tokenizer(stemmer: str = STEMMER) -> Tokenizer:
    """The analysis every BM25 index here uses: lower-case, ``TOKEN_PATTERN`` words, English stop
    words removed, Snowball ``stemmer`` (PyStemmer; ``"none"`` for no stemming)."""
    import Stemmer
    from bm25s.tokenization import Tokenizer

    stem = None if stemmer == "none" else Stemmer.Stemmer(stemmer).stemWord
    return Tokenizer(lower=True, splitter=TOKEN_PATTERN, stopwords=STOPWORDS, stemmer=stem)


class TermAnalyzer:
    """The same analysis as :func:`bm25_tokenizer`, as plain strings and with positions.

    For queries against a saved index (no tokenizer vocabulary needed: a term is looked up
    in the index's own vocabulary) and for highlighting query terms in a snippet.
    """

    def __init__(self, stemmer: str = STEMMER) -> None:
        tokenizer = bm25_tokenizer(stemmer)
        self._stopwords = frozenset(tokenizer.stopwords or ())
        self._stem = tokenizer.stemmer or (lambda word: word)
        self._words = re.compile(TOKEN_PATTERN)

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, term)`` of every indexed word of ``text`` (stop words left out)."""
        out = []
        for match in self._words.finditer(text):
            word = match.group().lower()
            if word not in self._stopwords:
                out.append((match.start(), match.end(), self._stem(word)))
        return out

    def terms(self, text: str) -> list[str]:
        return [term for _, _, term in self.spans(text)]


class BM25Retriever(Retriever):
    def __init__(self, spec: ModelSpec, *, label: str) -> None:
        import bm25s

        self.label = label
        self.k1 = spec.k1 if spec.k1 is not None else K1
        self.b = spec.b if spec.b is not None else B
        self.stemmer = spec.stemmer or STEMMER
        self.tokenizer = bm25_tokenizer(self.stemmer)
        self.model = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self.doc_ids: list[str] = []
        self.id_order = np.zeros(0, dtype=np.int64)

    def index(self, documents: Iterable[Document], *, cache: EmbeddingCache | None, stats: EncodeStats,
              show_progress: bool = False) -> None:
        """Tokenise the corpus chunk by chunk (only token ids are kept, never all texts), then index."""
        self.doc_ids = []
        ids: list[list[int]] = []
        for chunk in chunks(documents, CORPUS_CHUNK):
            self.doc_ids.extend(d.id for d in chunk)
            ids.extend(self.tokenizer.tokenize([d.content for d in chunk], update_vocab=True, show_progress=False,
                                               return_as="ids"))
        self.model.index(self.tokenizer.to_tokenized_tuple(ids), show_progress=False)
        order = np.argsort(np.asarray(self.doc_ids, dtype=object), kind="stable")
        self.id_order = np.empty(len(order), dtype=np.int64)
        self.id_order[order] = np.arange(len(order))
        stats.texts += len(self.doc_ids)
        stats.encoded += len(self.doc_ids)

    def _scores(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer.tokenize(texts, update_vocab=False, show_progress=False, return_as="string")
        vocab = self.model.vocab_dict
        rows = np.zeros((len(texts), len(self.doc_ids)), dtype=np.float32)
        for r, words in enumerate(tokens):
            known = [w for w in words if w in vocab and w != ""]
            if known:
                rows[r] = self.model.get_scores(known)
        return rows

    def _top(self, texts: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.doc_ids))
        out_s, out_i = [], []
        for start in range(0, len(texts), QUERY_BLOCK):
            scores = self._scores(texts[start : start + QUERY_BLOCK])
            cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
            s, i = _select(scores, cols, self.id_order, k)
            out_s.append(s)
            out_i.append(i)
        return np.concatenate(out_s), np.concatenate(out_i)

    def search(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        query_ids = list(queries)
        scores, indices = self._top([queries[q] for q in query_ids], k)
        stats.texts += len(query_ids)
        return to_run(query_ids, scores, indices, self.doc_ids, self.label)

    def search_one(self, text: str, k: int) -> list[tuple[str, float]]:
        scores, indices = self._top([text], k)
        return [(self.doc_ids[j], float(s)) for s, j in zip(scores[0], indices[0], strict=True)]

    def describe(self) -> dict[str, object]:
        return {
            "kind": "bm25", "library": f"bm25s {version('bm25s')}", "method": "lucene", "k1": self.k1,
            "b": self.b, "stemmer": f"snowball {self.stemmer} (PyStemmer)" if self.stemmer != "none" else "none", "stopwords": "en", "fields": "title + text",
        }

    def size_info(self) -> dict[str, object]:
        matrix = self.model.scores
        index_bytes = sum(int(matrix[key].nbytes) for key in ("data", "indices", "indptr") if key in matrix)
        return {"dim": len(self.model.vocab_dict), "parameters": 0, "weights_bytes": 0,
                "index_bytes": index_bytes, "index": "sparse (bm25s CSC matrix)", "source": "built in"}

    def conditions(self) -> dict[str, object]:
        return {"backend": "bm25s numpy", "device": "cpu", "threads": 1}

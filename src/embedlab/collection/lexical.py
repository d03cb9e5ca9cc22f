"""BM25 over a generation's chunks (``bm25/``, saved by bm25s), document i = row i.

Same variant and analysis as the ``bm25`` model (:mod:`embedlab.search.bm25`): Lucene
BM25, k1=0.9, b=0.4, English stop words, Porter stemmer.  Queries are analysed with
:class:`~embedlab.search.bm25.TermAnalyzer` and looked up in the saved vocabulary, so no
tokenizer state is kept between queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

import numpy as np

from embedlab.collection.manifest import LexicalInfo
from embedlab.search.bm25 import B, K1, STEMMER, STOPWORDS, TermAnalyzer, bm25_tokenizer

FOLDER = "bm25"
METHOD = "lucene"


def build_bm25(batches: Iterable[list[str]], folder: Path, *, count: int) -> LexicalInfo:
    """Index the chunk texts (in row order, a batch at a time) and save the index in ``folder/bm25``."""
    info = dict(k1=K1, b=B, method=METHOD, stemmer=STEMMER, stopwords=STOPWORDS)
    if count == 0:
        return LexicalInfo(folder=None, **info)
    import bm25s

    tokenizer = bm25_tokenizer(STEMMER)
    ids: list[list[int]] = []
    for texts in batches:
        ids.extend(tokenizer.tokenize(texts, update_vocab=True, show_progress=False, return_as="ids"))
    model = bm25s.BM25(k1=K1, b=B, method=METHOD)
    model.index(tokenizer.to_tokenized_tuple(ids), show_progress=False)
    model.save(str(folder / FOLDER), show_progress=False)
    return LexicalInfo(folder=FOLDER, **info)


class LexicalIndex:
    """BM25 scores of every row for a query."""

    def __init__(self, info: LexicalInfo, folder: Path, rows: int) -> None:
        self.info = info
        self.rows = rows
        self.analyzer = TermAnalyzer(info.stemmer)
        self.model = None
        if info.folder is not None:
            import bm25s

            self.model = bm25s.BM25.load(str(folder / info.folder), mmap=False, show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        """One float32 score per row (0 for rows sharing no term with the query)."""
        if self.model is None:
            return np.zeros(self.rows, dtype=np.float32)
        vocab = self.model.vocab_dict
        terms = [t for t in self.analyzer.terms(query) if t in vocab]
        if not terms:
            return np.zeros(self.rows, dtype=np.float32)
        return np.asarray(self.model.get_scores(terms), dtype=np.float32)

    def search(self, query: str, k: int, *, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of the best ``k`` matching rows (score > 0), score desc, row asc."""
        scores = self.scores(query)
        candidates = np.flatnonzero(scores > 0)
        if rows is not None:
            candidates = np.intersect1d(candidates, rows, assume_unique=True)
        if len(candidates) > k:  # cut to the k-th score (keeping its ties) before sorting
            kth = np.partition(scores[candidates], len(candidates) - k)[len(candidates) - k]
            candidates = candidates[scores[candidates] >= kth]
        order = np.lexsort((candidates, -scores[candidates]))[:k]
        chosen = candidates[order]
        return scores[chosen], chosen.astype(np.int64)

    @staticmethod
    def describe() -> str:
        return f"bm25s {version('bm25s')}"

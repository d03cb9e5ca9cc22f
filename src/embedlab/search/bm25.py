"""BM25 as a model like any other: the lexical index (:mod:`embedlab.index.lexical`) as a retriever.

Scores for all documents are computed per query and cut with embedlab's own top-k, so ties
follow the project rule (score desc, doc id asc); documents sharing no term with a query fill
the ranking after the matches, by id (a full ranking, as the README's BM25 figures were measured).
"""

from __future__ import annotations

from collections.abc import Iterable

from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Document, chunks
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.index.lexical import BM25Index, BM25Options
from embedlab.payloads import Conditions, SizeInfo
from embedlab.search.dense import CORPUS_CHUNK
from embedlab.search.retriever import Retriever, to_run


class BM25Retriever(Retriever):
    def __init__(self, options: BM25Options, *, label: str) -> None:
        self.label = label
        self.options = options
        self.index_: BM25Index | None = None
        self.doc_ids: list[str] = []

    def index(
        self,
        documents: Iterable[Document],
        *,
        cache: EmbeddingCache | None,
        stats: EncodeStats,
        show_progress: bool = False,
    ) -> None:
        """Tokenise the corpus chunk by chunk (only token ids are kept, never all texts), then index."""
        self.doc_ids = []

        def batches() -> Iterable[list[str]]:
            for chunk in chunks(documents, CORPUS_CHUNK):
                self.doc_ids.extend(d.id for d in chunk)
                yield [d.content for d in chunk]

        built = BM25Index.build(batches(), options=self.options)
        self.index_ = BM25Index(built.model, options=self.options, rows=built.rows, ids=self.doc_ids)
        stats.texts += len(self.doc_ids)
        stats.encoded += len(self.doc_ids)

    def _ready(self) -> BM25Index:
        if self.index_ is None:
            raise RuntimeError("index() must be called before search()")
        return self.index_

    def search(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        query_ids = list(queries)
        scores, positions = self._ready().search([queries[q] for q in query_ids], k, matches_only=False)
        stats.texts += len(query_ids)
        return to_run(query_ids, scores, positions, self.doc_ids, self.label)

    def search_one(self, text: str, k: int) -> list[tuple[str, float]]:
        scores, positions = self._ready().search([text], k, matches_only=False)
        return [(self.doc_ids[j], float(s)) for s, j in zip(scores[0], positions[0], strict=True)]

    def describe(self) -> dict[str, object]:
        return {**self._ready().describe(), "fields": "title + text"}

    def size_info(self) -> SizeInfo:
        index = self._ready()
        return {
            "dim": index.vocabulary_size,
            "parameters": 0,
            "weights_bytes": 0,
            "index_bytes": index.memory_bytes,
            "index": "sparse (bm25s CSC matrix)",
            "source": "built in",
        }

    def conditions(self) -> Conditions:
        return {"backend": "bm25s numpy", "device": "cpu", "threads": 1}

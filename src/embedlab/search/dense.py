"""Dense retrieval: an encoder, the embedding cache and a vector index (any registered kind,
with its options: exact, HNSW, or a compact one such as int8, binary, PCA, Matryoshka)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Document, chunks
from embedlab.data.types import Run
from embedlab.encoders.base import Encoder, EncodeStats
from embedlab.index import VectorIndex, build_index
from embedlab.payloads import Conditions, SizeInfo
from embedlab.search.retriever import Retriever, to_run

CORPUS_CHUNK = 50_000  # documents encoded per pass; bounds the text held in memory


class DenseRetriever(Retriever):
    def __init__(
        self, encoder: Encoder, *, label: str, index: str = "exact", index_options: Mapping[str, Any] | None = None
    ) -> None:
        self.encoder = encoder
        self.label = label
        self.index_kind = index
        self.index_options = dict(index_options or {})
        self.index_: VectorIndex | None = None
        self.doc_ids: list[str] = []  # the index's rows' ids (the index keeps them as objects)

    def index(
        self,
        documents: Iterable[Document],
        *,
        cache: EmbeddingCache | None,
        stats: EncodeStats,
        show_progress: bool = False,
    ) -> None:
        ids: list[str] = []
        parts: list[np.ndarray] = []
        for chunk in chunks(documents, CORPUS_CHUNK):
            ids.extend(d.id for d in chunk)
            parts.append(self._encode_documents(chunk, cache=cache, stats=stats, show_progress=show_progress))
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.encoder.dim), np.float32)
        self.index_ = build_index(self.index_kind, vectors, ids, options=self.index_options)
        self.doc_ids = ids

    def _encode_documents(
        self, chunk: list[Document], *, cache: EmbeddingCache | None, stats: EncodeStats, show_progress: bool
    ) -> np.ndarray:
        """Texts through the text tower, image documents through the image tower, rows in order."""
        pictures = [i for i, d in enumerate(chunk) if d.image is not None]
        if not pictures:
            return self.encoder.encode(
                [d.content for d in chunk], role="document", cache=cache, stats=stats, show_progress=show_progress
            )
        out = np.zeros((len(chunk), self.encoder.dim), np.float32)
        paths = [chunk[i].image for i in pictures]
        out[pictures] = self.encoder.encode_images(
            [p for p in paths if p is not None], role="document", cache=cache, stats=stats, show_progress=show_progress
        )
        texts = [i for i, d in enumerate(chunk) if d.image is None]
        if texts:
            out[texts] = self.encoder.encode(
                [chunk[i].content for i in texts],
                role="document",
                cache=cache,
                stats=stats,
                show_progress=show_progress,
            )
        return out

    def modalities(self) -> frozenset[str]:
        return self.encoder.modalities

    def search_images(
        self, images: dict[str, Path], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats
    ) -> Run:
        self._ready()
        query_ids = list(images)
        vectors = self.encoder.encode_images([images[q] for q in query_ids], role="query", cache=cache, stats=stats)
        return self._run(query_ids, vectors, k)

    def search_image_one(self, image: Path, k: int) -> list[tuple[str, float]]:
        self._ready()
        return self._top(self.encoder.encode_images([image], role="query"), k)

    def _ready(self) -> VectorIndex:
        if self.index_ is None:
            raise RuntimeError("index() must be called before search()")
        return self.index_

    def search(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        self._ready()
        query_ids = list(queries)
        vectors = self.encoder.encode([queries[q] for q in query_ids], role="query", cache=cache, stats=stats)
        return self._run(query_ids, vectors, k)

    def search_one(self, text: str, k: int) -> list[tuple[str, float]]:
        self._ready()
        return self._top(self.encoder.encode([text], role="query"), k)

    def _run(self, query_ids: list[str], vectors: np.ndarray, k: int) -> Run:
        scores, indices = self._ready().search(vectors, k)
        return to_run(query_ids, scores, indices, self.doc_ids, self.label)

    def _top(self, vector: np.ndarray, k: int) -> list[tuple[str, float]]:
        scores, indices = self._ready().search(vector, k)
        return [(self.doc_ids[j], float(s)) for s, j in zip(scores[0], indices[0], strict=True)]

    def describe(self) -> dict[str, object]:
        described: dict[str, object] = {**self.encoder.fingerprint.as_dict(), "index": self.index_kind}
        if self.index_options:
            described["index_options"] = dict(self.index_options)
        return described

    def size_info(self) -> SizeInfo:
        info = self.encoder.size_info().copy()
        if self.index_ is not None:
            built = self.index_.info()
            info["index_bytes"] = self.index_.memory_bytes
            fixed = self.index_.fixed_bytes
            info["index_bytes_per_vector"] = (self.index_.memory_bytes - fixed) / max(1, len(self.index_))
            info["index_fixed_bytes"] = fixed
            info["index"] = "exact (numpy, inner product)" if self.index_kind == "exact" else self.index_kind
            if built.note:
                info["index"] += f" ({built.note})"
            info["index_info"] = built.model_dump(exclude_none=True)
        return info

    def conditions(self) -> Conditions:
        return self.encoder.conditions()

"""FAISS indexes behind the same interface as ``ExactIndex`` (tested against it).

- ``faiss-flat``: exact inner product (IndexFlatIP).
- ``faiss-hnsw``: HNSW graph (M=32, efConstruction=200, efSearch=128 by default);
  approximate, so its recall against exact search is measured, never assumed.

Ties among equal scores are re-ordered by document id after FAISS returns, so the
project-wide order (score desc, id asc) holds within what FAISS returned.
"""

from __future__ import annotations

import numpy as np

from embedlab.errors import EmbedlabError

KINDS = ("faiss-flat", "faiss-hnsw")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise EmbedlabError("FAISS indexes need faiss-cpu", hint='pip install "embedlab[faiss]"') from None
    return faiss


class FaissIndex:
    def __init__(self, vectors: np.ndarray, doc_ids: list[str], *, kind: str = "faiss-flat", hnsw_m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128) -> None:
        if kind not in KINDS:
            raise EmbedlabError(f"unknown FAISS index {kind!r}", expected=f"one of {', '.join(KINDS)}")
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.kind = kind
        self.doc_ids = doc_ids
        dim = vectors.shape[1]
        if kind == "faiss-flat":
            self.index = faiss.IndexFlatIP(dim)
        else:
            self.index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efConstruction = ef_construction
            self.index.hnsw.efSearch = ef_search
        self.index.add(vectors)
        ranks = np.empty(len(doc_ids), dtype=np.int64)
        ranks[np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
        self.id_order = ranks

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.doc_ids))
        scores, indices = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        valid = indices >= 0
        safe = np.where(valid, indices, 0)
        order_key = np.where(valid, self.id_order[safe], np.iinfo(np.int64).max)
        score_key = np.where(valid, -scores, np.inf)
        idx = np.lexsort((order_key, score_key), axis=-1)
        return np.take_along_axis(scores, idx, axis=1), np.take_along_axis(indices, idx, axis=1)

    @property
    def memory_bytes(self) -> int:
        faiss = _faiss()
        return int(faiss.serialize_index(self.index).nbytes)

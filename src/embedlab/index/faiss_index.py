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


def faiss_module():  # noqa: ANN201
    """``import faiss``, or a clear error naming the extra."""
    try:
        import faiss
    except ImportError:
        raise EmbedlabError("FAISS indexes need faiss-cpu", hint='pip install "embedlab[faiss]"') from None
    return faiss


def hnsw_index(vectors: np.ndarray, *, m: int = 32, ef_construction: int = 200, ef_search: int = 128):  # noqa: ANN201
    """An inner-product ``faiss.IndexHNSWFlat`` holding ``vectors`` (row i has id i)."""
    faiss = faiss_module()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    index.add(vectors)
    return index


def order_ties(scores: np.ndarray, indices: np.ndarray, id_order: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Re-order FAISS results per row by score desc, then ``id_order[index]`` asc (default: the index
    itself); missing results (index -1) go last."""
    valid = indices >= 0
    safe = np.where(valid, indices, 0)
    order_key = np.where(valid, safe if id_order is None else id_order[safe], np.iinfo(np.int64).max)
    score_key = np.where(valid, -scores, np.inf)
    idx = np.lexsort((order_key, score_key), axis=-1)
    return np.take_along_axis(scores, idx, axis=1), np.take_along_axis(indices, idx, axis=1)


class FaissIndex:
    def __init__(self, vectors: np.ndarray, doc_ids: list[str], *, kind: str = "faiss-flat", hnsw_m: int = 32,
                 ef_construction: int = 200, ef_search: int = 128) -> None:
        if kind not in KINDS:
            raise EmbedlabError(f"unknown FAISS index {kind!r}", expected=f"one of {', '.join(KINDS)}")
        faiss = faiss_module()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.kind = kind
        self.doc_ids = doc_ids
        dim = vectors.shape[1]
        if kind == "faiss-flat":
            self.index = faiss.IndexFlatIP(dim)
            self.index.add(vectors)
        else:
            self.index = hnsw_index(vectors, m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        ranks = np.empty(len(doc_ids), dtype=np.int64)
        ranks[np.argsort(np.asarray(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
        self.id_order = ranks

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(self.doc_ids))
        scores, indices = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return order_ties(scores, indices, self.id_order)

    @property
    def memory_bytes(self) -> int:
        faiss = faiss_module()
        return int(faiss.serialize_index(self.index).nbytes)

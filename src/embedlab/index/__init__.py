"""Vector indexes behind one interface (:mod:`embedlab.index.base`), registered by kind.

Built in: ``exact`` (NumPy, the reference), ``faiss-flat``, ``faiss-hnsw``, and the compact-code
kinds (:mod:`embedlab.index.coded`): ``int8`` (scalar quantization), ``binary`` (sign bits,
Hamming distance, re-scored), ``pca`` and ``matryoshka`` (fewer dimensions); outside engines
(extra ``scale``): ``milvus`` (Milvus Lite or a server) and ``chroma`` (embedded or a server).
Adding a backend:
one module with a :class:`VectorIndex` subclass decorated with ``@register_index``, imported here.
"""

from embedlab.index import binary, chroma, exact, faiss_index, int8, matryoshka, milvus, pca  # noqa: F401  (importing registers the kinds)
from embedlab.index.base import INDEXES, IndexInfo, VectorIndex, build_index, load_index, order_ties
from embedlab.index.exact import ExactIndex, top_k

__all__ = ["INDEXES", "ExactIndex", "IndexInfo", "VectorIndex", "build_index", "load_index", "order_ties", "top_k"]

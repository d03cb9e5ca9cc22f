"""Vector indexes: exact NumPy search is the reference; FAISS indexes are tested against it."""

from embedlab.index.exact import ExactIndex, top_k

__all__ = ["ExactIndex", "top_k"]

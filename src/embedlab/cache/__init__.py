"""The one embedding cache shared by evaluation, mining, indexing and serving."""

from embedlab.cache.store import EmbeddingCache, text_key

__all__ = ["EmbeddingCache", "text_key"]

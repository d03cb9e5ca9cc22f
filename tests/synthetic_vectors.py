"""Synthetic vectors shaped like sentence embeddings, for index tests (shared by test modules).

Isotropic random unit vectors are the one distribution where every dimension and every sign
bit carries the same share of the signal; no embedding model produces them.  Real sentence
embeddings are clustered by topic and their variance is concentrated in few directions:
all-MiniLM-L6-v2's SciFact document vectors have a PCA variance spectrum decaying as j^-1.2
(half of the 384 dimensions hold 93% of the variance; measured on the cached vectors).  These
are unit vectors around ``centres`` cluster centres with a per-dimension scale of j^-0.6 (so
variance ~ j^-1.2), the shape benchmarks/bench_ann_1m.py generates at 1M rows.  The
dimensions are in decreasing order of variance, as in a Matryoshka-trained model.
"""

from __future__ import annotations

import numpy as np


def realistic_embeddings(
    n: int = 3000, dim: int = 128, *, queries: int = 50, centres: int = 60, seed: int = 1
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(vectors, queries, ids)``: float32 unit rows drawn around shared cluster centres."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, dim + 1) ** -0.6).astype(np.float32)
    means = (rng.standard_normal((centres, dim)) * scale).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        x = means[rng.integers(0, centres, m)] + rng.standard_normal((m, dim)).astype(np.float32) * 0.6 * scale
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    return draw(n), draw(queries), [f"d{i:05d}" for i in range(n)]

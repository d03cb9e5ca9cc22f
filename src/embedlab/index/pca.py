"""``pca``: project vectors and queries onto the ``dim`` principal directions of the corpus.

The projection is fitted on the indexed vectors (a seeded sample of ``sample`` rows when
there are more: the principal directions of a million sentence embeddings are settled long
before that), by a NumPy SVD of the centred sample.  Documents are stored as
``z = P (x - mean)`` (``dim`` float32 per row); a query ``q`` scores
``(P q) . z + q . mean``, which is ``q . x`` for the part of ``x`` the projection keeps: the
scores stay approximate inner products (cosines for unit vectors), and the constant
``q . mean`` does not change the ranking.  Unlike Matryoshka truncation this works for any
model, since it keeps the directions with the most variance whatever their order.

``save`` writes the projection, the mean and the projected rows to ``pca.npz`` with its
SHA-256; ``load`` checks it and searches with the stored projection (never refitted).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.index.base import register_index
from embedlab.index.coded import CodedIndex
from embedlab.index.exact import blocked_top_k
from embedlab.index.matryoshka import reduced_dim

PROJECT_BLOCK = 65_536


def fit_pca(vectors: np.ndarray, dim: int, *, sample: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(components (dim x d), mean (d,))`` from a seeded sample of ``vectors``."""
    n, d = vectors.shape
    if n > sample:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False))
        fit = np.asarray(vectors[rows], dtype=np.float64)
    else:
        fit = np.asarray(vectors, dtype=np.float64)
    if not len(fit):  # nothing to fit: the first ``dim`` axes
        return np.eye(d, dtype=np.float32)[:dim], np.zeros(d, np.float32)
    mean = fit.mean(axis=0)
    # full_matrices only when more components are asked than the sample has rows: the extra
    # ones are orthonormal directions the sample does not vary along (they carry zero variance)
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=dim > min(len(fit), d))
    return vt[:dim].astype(np.float32), mean.astype(np.float32)


def project(vectors: np.ndarray, components: np.ndarray, mean: np.ndarray) -> np.ndarray:
    out = np.empty((len(vectors), len(components)), np.float32)
    for start in range(0, len(vectors), PROJECT_BLOCK):
        block = np.asarray(vectors[start : start + PROJECT_BLOCK], np.float32)
        out[start : start + PROJECT_BLOCK] = (block - mean) @ components.T
    return out


class PCAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int | None = Field(default=None, ge=1)  # None: half the vectors' dimensions
    sample: int = Field(default=100_000, ge=2)  # rows the projection is fitted on (seeded sample)
    seed: int = 0


@register_index
class PCAIndex(CodedIndex):
    kind = "pca"
    Options = PCAOptions
    FILE = "pca.npz"

    @property
    def _opts(self) -> PCAOptions:
        assert isinstance(self.options, PCAOptions)  # Options narrows the base type (not an input check)
        return self.options

    def _encode(self) -> None:
        dim = reduced_dim(self._opts.dim, self.vectors.shape[1], self.kind)
        self.options = self._opts.model_copy(update={"dim": dim})
        self.components, self.mean = fit_pca(self.vectors, dim, sample=self._opts.sample, seed=self._opts.seed)
        self.projected = project(self.vectors, self.components, self.mean)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"components": self.components, "mean": self.mean, "projected": self.projected}

    def _restore(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        self.components = arrays["components"].astype(np.float32)
        self.mean = arrays["mean"].astype(np.float32)
        self.projected = self._expect_rows(arrays["projected"].astype(np.float32), path, "projected rows")

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        docs = self.projected if rows is None else self.projected[rows]
        order = self.id_order if rows is None or self.id_order is None else self.id_order[rows]
        dim = docs.shape[1]
        augmented = np.ascontiguousarray(
            np.concatenate([queries @ self.components.T, (queries @ self.mean)[:, None]], axis=1), dtype=np.float32
        )

        def score(qb: np.ndarray, start: int, stop: int) -> np.ndarray:
            return qb[:, :dim] @ docs[start:stop].T + qb[:, dim:]

        scores, found = blocked_top_k(augmented, len(docs), k, score, id_order=order)
        return scores, (found if rows is None else rows[found])

    @property
    def memory_bytes(self) -> int:
        return int(self.projected.nbytes + self.fixed_bytes)

    @property
    def fixed_bytes(self) -> int:
        return int(self.components.nbytes + self.mean.nbytes)

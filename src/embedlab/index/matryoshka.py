"""``matryoshka``: keep the first ``dim`` dimensions of every vector and query.

Meaningful only for models trained so that a prefix of the embedding is itself an embedding
(Matryoshka Representation Learning, Kusupati et al. 2022; ``embedlab finetune --matryoshka``):
for any other model the first dimensions are no more informative than the last, and quality
drops much more than PCA to the same size would.  The index says so in its ``note``, which
eval results carry.  When the vectors are unit length (cosine models), the truncated ones are
re-normalised (cosine in the smaller space, as Matryoshka models are used); ``normalize``
overrides that detection.  ``dim`` defaults to half the vectors' dimensions.

Nothing is saved beside the vectors: the truncation is rebuilt from them on load.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.errors import EmbedlabError
from embedlab.index.base import register_index
from embedlab.index.coded import CodedIndex
from embedlab.index.exact import exact_search

UNIT_TOLERANCE = 1e-3  # float32 unit vectors from any model are within ~1e-6 of length 1


def reduced_dim(requested: int | None, dim: int, kind: str) -> int:
    """The target dimension: ``requested`` (at most ``dim``), or half of ``dim`` by default."""
    if requested is None:
        return max(1, (dim + 1) // 2)
    if requested > dim:
        raise EmbedlabError(
            f"index {kind!r} cannot keep {requested} dimensions of {dim}-dimensional vectors",
            expected=f"a dim from 1 to {dim}",
            hint=f"in a model spec: index_dim=N with N <= {dim}",
        )
    return requested


def is_unit(vectors: np.ndarray) -> bool:
    if not len(vectors):
        return False
    norms = np.linalg.norm(vectors[: min(len(vectors), 10_000)], axis=1)
    return bool(np.all(np.abs(norms - 1.0) <= UNIT_TOLERANCE))


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class MatryoshkaOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int | None = Field(default=None, ge=1)  # None: half the vectors' dimensions
    normalize: bool | None = None  # None: re-normalise when the vectors are unit length


@register_index
class MatryoshkaIndex(CodedIndex):
    kind = "matryoshka"
    Options = MatryoshkaOptions

    @property
    def _opts(self) -> MatryoshkaOptions:
        assert isinstance(self.options, MatryoshkaOptions)  # Options narrows the base type (not an input check)
        return self.options

    def _encode(self) -> None:
        self.full_dim = self.vectors.shape[1]
        dim = reduced_dim(self._opts.dim, self.full_dim, self.kind)
        normalize = is_unit(self.vectors) if self._opts.normalize is None else self._opts.normalize
        self.options = self._opts.model_copy(update={"dim": dim, "normalize": normalize})
        self.short = self._truncate(self.vectors)

    def _truncate(self, x: np.ndarray) -> np.ndarray:
        short = np.ascontiguousarray(x[:, : self._opts.dim], dtype=np.float32)
        return unit_rows(short) if self._opts.normalize else short

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(self._truncate(queries), self.short, k, id_order=self.id_order, rows=rows)

    def note(self) -> str:
        return (
            f"Matryoshka truncation to the first {self._opts.dim} of {self.full_dim} dimensions: "
            "meaningful only for models trained with a Matryoshka loss (embedlab finetune --matryoshka)"
        )

    @property
    def memory_bytes(self) -> int:
        return int(self.short.nbytes)

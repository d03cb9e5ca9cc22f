"""Contrastive losses on sentence embeddings (torch tensors, one row per text).

- **MNRL** (MultipleNegativesRankingLoss; Henderson et al. 2017, arXiv:1705.00652; the
  sentence-transformers default for (query, positive[, negatives]) data).  With queries
  q_1..q_B and documents D = positives p_1..p_B followed by every hard negative, and
  s(q, d) = scale * cos(q, d):

      loss = -1/B * sum_i log( exp s(q_i, p_i) / sum_{d in D} exp s(q_i, d) )

  i.e. cross-entropy where every other positive in the batch is an extra negative
  (in-batch negatives).  scale = 20 as in sentence-transformers.
- **Triplet**: mean max(0, cos(q, n) - cos(q, p) + margin), cosine distance, margin 0.2
  (sentence-transformers' TripletLoss uses Euclidean distance with margin 5; cosine keeps the
  margin meaningful for normalised models).
- **Matryoshka** (Kusupati et al. 2022, arXiv:2205.13147): the mean of a loss over the
  leading ``dims`` coordinates of every embedding, so truncated vectors stay useful.

- **MSE distillation** (Reimers & Gurevych 2020, arXiv:2004.09813): a student learns to
  reproduce a teacher's embeddings of the same texts, ``mean_{i,j} (s_ij - t_ij)^2`` over the
  batch's rows i and dimensions j; no labels.  Not in ``LOSSES`` (those compare queries with
  documents); :mod:`embedlab.optimize.distill` runs it through the same loop.

CachedMNRL (GradCache, Gao et al. 2021, arXiv:2101.06983) computes the same MNRL value; it
differs only in how gradients are obtained, see ``embedlab.train.loop``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from embedlab.registry import Registry

if TYPE_CHECKING:
    import torch

LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
LOSSES: Registry[LossFn] = Registry("loss")
MNRL_SCALE = 20.0
TRIPLET_MARGIN = 0.2


@LOSSES.register("mnrl")
def mnrl(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """``documents`` = the B positives (row i belongs to query i), then any negatives."""
    import torch
    import torch.nn.functional as F

    scores = F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T * MNRL_SCALE
    labels = torch.arange(queries.shape[0], device=queries.device)
    return F.cross_entropy(scores, labels)


LOSSES.add("cached-mnrl", mnrl)  # same value; the loop computes its gradient in mini-batches


@LOSSES.register("triplet")
def triplet(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """``documents`` = B positives then B negatives (the first negative of each example)."""
    import torch.nn.functional as F

    b = queries.shape[0]
    q = F.normalize(queries, dim=-1)
    pos = (q * F.normalize(documents[:b], dim=-1)).sum(-1)
    neg = (q * F.normalize(documents[b : 2 * b], dim=-1)).sum(-1)
    return F.relu(neg - pos + TRIPLET_MARGIN).mean()


def matryoshka(loss: LossFn, dims: Sequence[int]) -> LossFn:
    """The mean of ``loss`` over the first ``d`` coordinates, for each ``d`` in ``dims``."""

    def wrapped(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
        parts = [loss(queries[:, :d], documents[:, :d]) for d in dims]
        return sum(parts[1:], parts[0]) / len(parts)

    return wrapped


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the student's and the teacher's embeddings (row i = text i)."""
    import torch.nn.functional as F

    return F.mse_loss(student, teacher)

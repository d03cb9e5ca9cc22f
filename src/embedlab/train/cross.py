"""Cross-encoder training: a sequence-classification model with one output (a relevance logit)
reads each (query, passage) pair together; it re-ranks a first stage's top candidates.

The model is a sentence-transformers ``CrossEncoder`` (so the saved folder loads with
``CrossEncoder(folder)`` and with transformers' ``AutoModelForSequenceClassification``, which is
what :class:`embedlab.search.rerank.CrossEncoderReranker` uses).  Starting from an embedding
model (e.g. all-MiniLM-L6-v2's encoder weights) adds a new, randomly initialised 1-label head;
starting from a cross-encoder folder continues from its head.  The activation is saved as
``Identity``, so ``CrossEncoder.predict`` returns the raw logit, the score embedlab ranks by.

Losses over one example's candidates, the positive p then its negatives n_1..n_k, with
logits s = f(q, d):

- **bce**: binary cross-entropy with logits, labels 1 for (q, p) and 0 for each (q, n_j),
  averaged over every pair of the batch (the classic monoBERT objective: Nogueira and Cho 2019,
  "Passage Re-ranking with BERT", arXiv:1901.04085).
- **listwise**: softmax cross-entropy of the positive among its list,
  ``-log( exp s_p / (exp s_p + sum_j exp s_nj) )``, averaged over examples (the localized
  contrastive estimation loss of Gao, Dai and Callan 2021, "Rethink Training of BERT Rerankers
  in Multi-Stage Retrieval Pipeline", arXiv:2101.08751).  An example without negatives adds
  nothing (its list has one member), so the run stops early if no example has one.

The epoch loop (best checkpoint by dev NDCG@10, early stopping) is :func:`embedlab.train.fit.fit`.
The dev score re-ranks each dev query's first-stage top-N (:class:`RerankDev`) and takes
NDCG@10 of that ranking: what the model will be used for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embedlab.data.types import Qrels, Run
from embedlab.errors import EmbedlabError
from embedlab.eval.evaluate import evaluate
from embedlab.registry import Registry
from embedlab.train.data import TrainExample
from embedlab.train.fit import fit, pick_device, seed_everything
from embedlab.train.loop import DEV_METRIC, TrainConfig, TrainResult

if TYPE_CHECKING:
    import torch

CrossLoss = Callable[["torch.Tensor", Sequence[int]], "torch.Tensor"]
CROSS_LOSSES: Registry[CrossLoss] = Registry("cross-encoder loss")
DEFAULT_CROSS_LOSS = "listwise"


@CROSS_LOSSES.register("bce")
def bce(logits: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """``logits``: each example's positive then its negatives, examples one after another."""
    import torch
    import torch.nn.functional as F

    labels = torch.tensor([float(i == 0) for n in sizes for i in range(n)], device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, labels)


@CROSS_LOSSES.register("listwise")
def listwise(logits: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Softmax cross-entropy of each example's positive (first) among its own list."""
    import torch

    parts = [group for group in torch.split(logits, list(sizes)) if group.numel() > 1]
    if not parts:
        return logits.sum() * 0.0  # no list to rank in this batch: a zero loss that still has a graph
    return torch.stack([torch.logsumexp(group, 0) - group[0] for group in parts]).mean()


@dataclass(frozen=True)
class RerankDev:
    """Dev queries, their judgments, and each one's first-stage candidates (id, text), best first."""

    queries: dict[str, str]
    qrels: Qrels
    candidates: dict[str, tuple[tuple[str, str], ...]]


def load_cross_encoder(folder: str, *, max_length: int | None, device: str | None = None) -> Any:
    """A ``CrossEncoder`` with one label and no activation from a transformer folder."""
    import torch
    from transformers.utils import logging as hf_logging

    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        raise EmbedlabError(
            "cross-encoder training needs sentence-transformers", hint="pip install sentence-transformers"
        ) from None
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier.*" is the point here, not a warning
    try:
        return CrossEncoder(
            folder,
            num_labels=1,
            max_length=max_length,
            activation_fn=torch.nn.Identity(),
            device=device or pick_device(),
            local_files_only=True,
        )
    except (OSError, ValueError) as err:
        raise EmbedlabError(f"cannot load {folder!r} as a cross-encoder ({' '.join(str(err).split())[:200]})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def pair_scores(model: Any, pairs: list[tuple[str, str]]) -> torch.Tensor:
    """One logit per (query, passage) pair, with gradients."""
    features = model.preprocess(pairs)
    features = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in features.items()}
    return model(features)["scores"].squeeze(-1)


def dev_rerank_ndcg(model: Any, dev: RerankDev, *, batch_size: int = 64) -> float:
    """NDCG@10 of the dev queries' first-stage candidates re-ranked by ``model``."""
    import torch

    out: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for query_id, query in dev.queries.items():
            candidates = dev.candidates.get(query_id, ())
            scores: list[float] = []
            for start in range(0, len(candidates), batch_size):
                chunk = candidates[start : start + batch_size]
                scores.extend(float(s) for s in pair_scores(model, [(query, text) for _, text in chunk]).float().cpu())
            out[query_id] = {doc_id: s for (doc_id, _), s in zip(candidates, scores, strict=True)}
    return evaluate(Run(out, name="dev"), dev.qrels, [DEV_METRIC]).mean[DEV_METRIC.key]


def train_cross_encoder(
    model: Any,
    examples: Sequence[TrainExample],
    *,
    config: TrainConfig,
    dev: RerankDev | None,
    show_progress: bool = False,
) -> TrainResult:
    """Train ``model`` (from :func:`load_cross_encoder`) in place; it ends on the best checkpoint."""
    import torch

    config.check(CROSS_LOSSES)
    loss_fn = CROSS_LOSSES.get(config.loss)
    if not any(e.negatives for e in examples):
        raise EmbedlabError(
            f"cross-encoder training needs negatives, and no example has one ({len(examples)} examples)",
            hint="mine them with --hard-negatives N (N >= 1) and a wider --mine-ranks window",
        )
    seed_everything(config.seed)

    def step(batch: list[TrainExample]) -> float:
        pairs = [(e.query, text) for e in batch for text in (e.positive, *e.negatives)]
        loss = loss_fn(pair_scores(model, pairs), [1 + len(e.negatives) for e in batch])
        loss.backward()
        return float(loss.detach())

    fitted = fit(
        model,
        examples,
        schedule=config.schedule(),
        step=step,
        dev_score=lambda: dev_rerank_ndcg(model, dev) if dev is not None else None,
        show_progress=show_progress,
    )
    return TrainResult(
        fitted.curve,
        fitted.best_epoch,
        fitted.steps,
        fitted.seconds,
        str(model.device),
        fitted.stopped_early,
        fitted.batches_per_epoch,
        {
            "device": str(model.device),
            "torch_threads": torch.get_num_threads(),
            "max_seq_length": model.max_seq_length,
            "processes": 1,
        },
    )

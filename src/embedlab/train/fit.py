"""The epoch loop every trainer shares (bi-encoder: :mod:`embedlab.train.loop`, cross-encoder:
:mod:`embedlab.train.cross`): no-duplicate batches, AdamW with linear warmup and decay, gradient
clipping, a dev score after every epoch (epoch 0 = the untouched model), the best checkpoint
kept, early stopping after ``patience`` epochs without a dev gain.

What differs between model kinds is passed in: ``step(batch) -> loss value`` (forward and
backward for one batch, gradients left in the model) and ``dev_score() -> float | None``.
Why a hand-written loop and not sentence-transformers' trainers: see :mod:`embedlab.train.loop`.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from embedlab.progress import progress_bar
from embedlab.train.distributed import ONE_PROCESS, Cluster, average_gradients

log = logging.getLogger(__name__)


class Example(Protocol):
    """What the loop needs of an example: its texts (a batch never holds one text twice).
    :class:`~embedlab.train.data.TrainExample` for contrastive training; the texts a student
    copies its teacher on for distillation (:mod:`embedlab.optimize.distill`)."""

    def texts(self) -> tuple[str, ...]: ...


E = TypeVar("E", bound=Example)


@dataclass(frozen=True)
class EpochPoint:
    epoch: int  # 0 = the base model, before any step
    steps: int
    train_loss: float | None
    dev_ndcg_at_10: float | None
    seconds: float  # since training started


@dataclass(frozen=True)
class Fitted:
    curve: tuple[EpochPoint, ...]
    best_epoch: int
    steps: int
    seconds: float
    stopped_early: bool
    batches_per_epoch: int


@dataclass(frozen=True)
class Schedule:
    """The optimiser settings :func:`fit` reads (a subset of ``TrainConfig``)."""

    epochs: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    patience: int
    seed: int


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def no_duplicate_batches(examples: Sequence[E], batch_size: int, *, seed: int) -> list[list[E]]:
    """Shuffled batches in which no text (query, positive or negative) appears twice."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    remaining: OrderedDict[int, None] = OrderedDict((i, None) for i in order)
    batches: list[list[E]] = []
    while remaining:
        batch: list[int] = []
        texts: set[str] = set()
        for i in remaining:
            words = set(examples[i].texts())
            if len(words) == len(examples[i].texts()) and not words & texts:
                batch.append(i)
                texts |= words
            elif not batch:  # an example repeating a text within itself goes alone
                batch.append(i)
                break
            if len(batch) == batch_size:
                break
        for i in batch:
            del remaining[i]
        batches.append([examples[i] for i in batch])
    return batches


def fit(
    model: Any,
    examples: Sequence[E],
    *,
    schedule: Schedule,
    step: Callable[[list[E]], float],
    dev_score: Callable[[], float | None],
    show_progress: bool = False,
    on_epoch: Callable[[EpochPoint], None] | None = None,
    cluster: Cluster = ONE_PROCESS,
) -> Fitted:
    """Train ``model`` (a torch module) in place; at the end it holds the best checkpoint by
    ``dev_score`` (the last one when ``dev_score`` gives None)."""
    import torch

    batches_per_epoch = len(no_duplicate_batches(examples, schedule.batch_size, seed=schedule.seed))
    total = batches_per_epoch * schedule.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    warmup = int(total * schedule.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, warmup, total))
    started = time.perf_counter()
    curve: list[EpochPoint] = []

    def record(epoch: int, steps: int, loss: float | None) -> EpochPoint:
        model.eval()
        score = dev_score()
        point = EpochPoint(epoch, steps, loss, score, time.perf_counter() - started)
        curve.append(point)
        log.info(
            "epoch %d: train loss %s, dev ndcg@10 %s",
            epoch,
            "-" if loss is None else f"{loss:.4f}",
            "-" if score is None else f"{score:.4f}",
        )
        if on_epoch is not None:
            on_epoch(point)
        return point

    best = record(0, 0, None)
    judged = best.dev_ndcg_at_10 is not None
    best_state = copy.deepcopy(model.state_dict()) if judged else None
    steps, since_best, stopped = 0, 0, False
    with progress_bar(total=total, desc="train", unit="steps", enabled=show_progress) as bar:
        for epoch in range(1, schedule.epochs + 1):
            model.train()
            losses = []
            for batch in no_duplicate_batches(examples, schedule.batch_size, seed=schedule.seed + epoch):
                loss = step(batch)
                average_gradients(model, cluster)
                if schedule.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss)
                steps += 1
                bar.update(1)
                if cluster.main:
                    _log_progress(steps, total, started, loss)
            point = record(epoch, steps, float(np.mean(losses)) if losses else None)
            if not judged:
                continue
            if best.dev_ndcg_at_10 is None or (point.dev_ndcg_at_10 or 0.0) > best.dev_ndcg_at_10:
                best, best_state, since_best = point, copy.deepcopy(model.state_dict()), 0
            else:
                since_best += 1
                if since_best >= schedule.patience and epoch < schedule.epochs:
                    log.info("early stop: dev ndcg@10 did not improve for %d epochs", since_best)
                    stopped = True
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best_epoch = best.epoch if judged else curve[-1].epoch
    return Fitted(tuple(curve), best_epoch, steps, time.perf_counter() - started, stopped, batches_per_epoch)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to the peak over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _log_progress(steps: int, total: int, started: float, loss: float) -> None:
    every = max(1, total // 20)
    if steps % every and steps != total:
        return
    elapsed = time.perf_counter() - started
    eta = elapsed / steps * (total - steps)
    log.info("step %d/%d  loss %.4f  %.1f s/step  ETA %s", steps, total, loss, elapsed / steps, _clock(eta))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{secs:02d}s"

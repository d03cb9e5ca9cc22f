"""CLIP-style alignment of a frozen image backbone with a text tower: heads, loss and loop.

Loss: the symmetric InfoNCE of CLIP (Radford et al. 2021, "Learning Transferable Visual Models
From Natural Language Supervision", Fig. 3): for a batch of B pairs with L2-normalised
embeddings a_i, b_i and a learned logit scale s = exp(t),

    L = (CE(s * A B^T, I) + CE(s * B A^T, I)) / 2,

t initialised to log(1/0.07) and s clipped at 100, as CLIP.  The text tower is locked as in LiT
(Zhai et al. 2022, "LiT: Zero-Shot Transfer with Locked-image text Tuning"; here it is the
*text* side that is locked and pretrained, the image side gets a trained head), optionally with
a trained linear text projection.  Because both towers are frozen, the loop runs on their cached
features (:mod:`embedlab.train.image_text_data`): a step is a few small matrix products.

False negatives: pairs of several tasks share items (the emoji caption appears in text2image
and image2text), so two rows of a batch can hold the same item or a known pair; those
off-diagonal logits are masked (set to -inf) rather than pushed apart.

Dev: after every epoch the heads are exported to numpy and the dev queries of every task are
ranked against that task's whole corpus with exactly the code the saved folder uses
(:func:`embedlab.encoders.aligned.project`); NDCG@10 averaged over the tasks picks the best
epoch (epoch 0 = the untrained heads), ``patience`` epochs without a gain stop the run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.data.types import Qrels
from embedlab.encoders.aligned import project
from embedlab.errors import EmbedlabError
from embedlab.eval.evaluate import evaluate
from embedlab.index.exact import ExactIndex
from embedlab.search.retriever import to_run
from embedlab.train.fit import EpochPoint
from embedlab.train.image_text_data import Features, Item, TaskSplit
from embedlab.train.loop import DEV_METRIC

log = logging.getLogger(__name__)
INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class AlignConfig:
    text_model: str = "all-MiniLM-L6-v2"
    views: int = 4  # view 0 = the clean image, 1.. = seeded augmentations
    text_projection: bool = False  # False: LiT (locked text tower, identity)
    dim: int | None = None  # shared space; None: the text tower's dimension
    image_hidden: int = 0  # 0: linear image head; else one hidden GELU layer of this width

    def check(self) -> None:
        if not 1 <= self.views <= 32:
            raise EmbedlabError("--views must be in 1..32", found=str(self.views))
        if self.dim is not None and self.dim < 1:
            raise EmbedlabError("--dim must be >= 1", found=str(self.dim))
        if self.image_hidden < 0:
            raise EmbedlabError("--image-hidden must be >= 0", found=str(self.image_hidden))


@dataclass(frozen=True)
class AlignResult:
    heads: dict[str, np.ndarray]  # the best epoch's
    initial: dict[str, np.ndarray]  # epoch 0 (the untrained baseline)
    curve: tuple[EpochPoint, ...]
    best_epoch: int
    steps: int
    seconds: float
    stopped_early: bool
    batches_per_epoch: int
    logit_scale: float


def output_dim(config: AlignConfig, text_dim: int) -> int:
    if not config.text_projection:
        if config.dim not in (None, text_dim):
            raise EmbedlabError(
                f"--dim {config.dim} needs --text-projection: a locked text tower keeps its {text_dim} dimensions",
                hint=f"add --text-projection, or leave --dim out ({text_dim})",
            )
        return text_dim
    return config.dim or text_dim


def align(
    pairs: Sequence[tuple[Item, Item]],
    features: Features,
    dev: Sequence[tuple[TaskSplit, Sequence[str]]],
    *,
    config: AlignConfig,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    warmup_ratio: float,
    weight_decay: float,
    patience: int,
    seed: int,
) -> AlignResult:
    """Train the heads on ``pairs``; ``dev``: (task, its dev query ids) ranked each epoch."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dim = output_dim(config, features.texts.shape[1])
    heads = _Heads(features.images.shape[2], features.texts.shape[1], dim, config)
    side_a, side_b = [features.rows([p[i] for p in pairs]) for i in (0, 1)]
    keys = _keys(pairs)
    known = {(a, b) for a, b in zip(keys[0], keys[1], strict=True)}
    known |= {(b, a) for a, b in known}
    batches = math.ceil(len(pairs) / batch_size)
    total = batches * epochs
    optimizer = torch.optim.AdamW(heads.parameters(), lr=learning_rate, weight_decay=weight_decay)
    warm = max(1, round(total * warmup_ratio))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    images, texts = torch.from_numpy(features.images), torch.from_numpy(features.texts)
    started = time.perf_counter()
    initial = heads.export()
    best, best_epoch, best_heads = _dev_score(initial, features, dev), 0, initial
    curve = [EpochPoint(0, 0, None, best, 0.0)]
    steps, stale, stopped = 0, 0, False
    shapes = _shapes(pairs)
    for epoch in range(1, epochs + 1):
        views = rng.integers(0, features.views, size=(2, len(pairs)))
        losses = []
        for rows in _batches(shapes, batch_size, rng):
            if len(rows) < 2:
                continue  # one pair has no in-batch negative
            a = heads.embed(side_a, rows, views[0], images, texts)
            b = heads.embed(side_b, rows, views[1], images, texts)
            mask = torch.from_numpy(_mask(rows, keys, known))
            logits = (heads.scale().exp() * a @ b.T).masked_fill(mask, float("-inf"))
            target = torch.arange(len(rows))
            loss = (
                torch.nn.functional.cross_entropy(logits, target) + torch.nn.functional.cross_entropy(logits.T, target)
            ) / 2
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            steps += 1
        exported = heads.export()
        score = _dev_score(exported, features, dev)
        curve.append(
            EpochPoint(epoch, steps, float(np.mean(losses)) if losses else None, score, time.perf_counter() - started)
        )
        log.info("epoch %d: train loss %.4f, dev NDCG@10 %s", epoch, curve[-1].train_loss or 0.0, score)
        if score is None or best is None or score > best:
            best, best_epoch, best_heads, stale = score, epoch, exported, 0
        else:
            stale += 1
            if stale >= patience:
                stopped = True
                break
    return AlignResult(
        best_heads,
        initial,
        tuple(curve),
        best_epoch,
        steps,
        time.perf_counter() - started,
        stopped,
        batches,
        float(heads.scale().detach().exp()),
    )


class _Heads:
    """The trainable parts: image head, optional text projection, logit scale."""

    def __init__(self, image_dim: int, text_dim: int, dim: int, config: AlignConfig) -> None:
        import torch

        self.torch = torch
        layers: list[torch.nn.Module] = []
        if config.image_hidden:
            layers += [torch.nn.Linear(image_dim, config.image_hidden), torch.nn.GELU(approximate="tanh")]
        layers.append(torch.nn.Linear(config.image_hidden or image_dim, dim))
        self.image = torch.nn.Sequential(*layers)
        self.text = torch.nn.Linear(text_dim, dim) if config.text_projection else None
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))

    def parameters(self) -> list:
        params = [*self.image.parameters(), self.logit_scale]
        return params + (list(self.text.parameters()) if self.text is not None else [])

    def scale(self):
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE))

    def embed(self, side, rows, views, images, texts):
        torch = self.torch
        is_image, index = side
        out = None
        image_rows = [r for r in rows if is_image[r]]
        text_rows = [r for r in rows if not is_image[r]]
        parts: dict[int, Any] = {}
        if image_rows:
            x = images[torch.as_tensor(views[image_rows]), torch.as_tensor(index[image_rows])]
            parts.update(zip(image_rows, self.image(torch.nn.functional.normalize(x, dim=1)), strict=True))
        if text_rows:
            x = torch.nn.functional.normalize(texts[torch.as_tensor(index[text_rows])], dim=1)
            y = self.text(x) if self.text is not None else x
            parts.update(zip(text_rows, y, strict=True))
        out = torch.stack([parts[r] for r in rows])
        return torch.nn.functional.normalize(out, dim=1)

    def export(self) -> dict[str, np.ndarray]:
        """The heads as :func:`embedlab.encoders.aligned.project` reads them."""
        out = export_image_head(self.image)
        if self.text is not None:
            out["text.w"], out["text.b"] = _np(self.text.weight), _np(self.text.bias)
        return out


def _shapes(pairs: Sequence[tuple[Item, Item]]) -> np.ndarray:
    """Each pair's (kind, kind) shape as a small integer: image-image, text-image, image-text..."""
    kinds = {"image": 0, "text": 1}
    return np.array([2 * kinds[a.kind] + kinds[b.kind] for a, b in pairs])


def _batches(shapes: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches, each of pairs of one shape, in random order.  Why: in a batch mixing
    (caption, image) with (image, image) pairs, most in-batch negatives of an image are captions or
    images of the other side's modality, told apart by the modality gap alone; batches of one shape
    make every negative the same kind as the positive (measured on emoji dev, image2image
    Recall@1: see the README)."""
    out = []
    for shape in np.unique(shapes):
        rows = rng.permutation(np.flatnonzero(shapes == shape))
        out += [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


def export_image_head(head) -> dict[str, np.ndarray]:
    """An image head (``Linear``, or ``Linear -> GELU -> Linear``) as ``image.*`` arrays."""
    linear = [m for m in head if hasattr(m, "weight")]
    out: dict[str, np.ndarray] = {}
    if len(linear) == 2:
        out["image.w1"], out["image.b1"] = _np(linear[0].weight), _np(linear[0].bias)
    out["image.w"], out["image.b"] = _np(linear[-1].weight), _np(linear[-1].bias)
    return out


def image_head_from(heads: dict[str, np.ndarray]):
    """The exported ``image.*`` arrays back as a trainable torch module (values copied)."""
    import torch

    def linear(weight: np.ndarray, bias: np.ndarray):
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
            layer.bias.copy_(torch.from_numpy(bias))
        return layer

    layers: list[torch.nn.Module] = []
    if "image.w1" in heads:
        layers += [linear(heads["image.w1"], heads["image.b1"]), torch.nn.GELU(approximate="tanh")]
    layers.append(linear(heads["image.w"], heads["image.b"]))
    return torch.nn.Sequential(*layers)


def _np(tensor) -> np.ndarray:
    return np.array(tensor.detach().cpu().numpy(), np.float32)


def _keys(pairs: Sequence[tuple[Item, Item]]) -> tuple[np.ndarray, np.ndarray]:
    ids: dict[Item, int] = {}
    a = np.array([ids.setdefault(p[0], len(ids)) for p in pairs])
    b = np.array([ids.setdefault(p[1], len(ids)) for p in pairs])
    return a, b


def _mask(rows: np.ndarray, keys: tuple[np.ndarray, np.ndarray], known: set[tuple[int, int]]) -> np.ndarray:
    """True where logit [i, j] (a of row i, b of row j, i != j) is a false negative: the same item
    or a known positive pair."""
    a, b = keys[0][rows], keys[1][rows]
    same = (a[:, None] == b[None, :]) | np.array([[(x, y) in known for y in b] for x in a], bool)
    np.fill_diagonal(same, False)
    return same


def embed_items(items: Sequence[Item], features: Features, heads: dict[str, np.ndarray]) -> np.ndarray:
    """Items (view 0 for images) through the exported heads, L2-normalised: the saved folder's vectors."""
    is_image, index = features.rows(items)
    out = np.zeros((len(items), 0), np.float32)
    if is_image.any():
        image = project(features.images[0, index[is_image]], heads, "image")
        out = np.zeros((len(items), image.shape[1]), np.float32)
        out[is_image] = image
    if (~is_image).any():
        text = project(features.texts[index[~is_image]], heads, "text")
        out = out if out.shape[1] else np.zeros((len(items), text.shape[1]), np.float32)
        out[~is_image] = text
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _dev_score(
    heads: dict[str, np.ndarray], features: Features, dev: Sequence[tuple[TaskSplit, Sequence[str]]]
) -> float | None:
    """NDCG@10 of the dev queries against their task's whole corpus, averaged over the tasks."""
    scores = []
    for task, query_ids in dev:
        if not query_ids:
            continue
        doc_ids = list(task.corpus)
        docs = embed_items([task.corpus[d] for d in doc_ids], features, heads)
        queries = embed_items([task.queries[q] for q in query_ids], features, heads)
        found, indices = ExactIndex(docs, doc_ids).search(queries, DEV_METRIC.k)
        run = to_run(list(query_ids), found, indices, doc_ids, "dev")
        judged = Qrels({q: task.qrels.judgments[q] for q in query_ids})
        scores.append(evaluate(run, judged, [DEV_METRIC]).mean[DEV_METRIC.key])
    return float(np.mean(scores)) if scores else None

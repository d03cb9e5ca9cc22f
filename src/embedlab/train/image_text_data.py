"""Training data of ``embedlab finetune --kind image-text``: pairs from BEIR image tasks, and the
frozen towers' features computed once.

**Pairs.** Every ``--train`` task (comma-separated BEIR folders or names) gives its split's
judged (query, document) pairs, each side an image file or a text.  For the emoji data the
decision (README "Image-text fine-tuning") is to train on all three tasks' train splits: the
(caption, OpenMoji image) and (Google image, caption) pairs align images with text, and the
(Google image, OpenMoji image) pairs of ``image2image`` teach the head the cross-style
invariance the image -> image task needs; the items are the same across the three tasks and
split by item, so no test item is seen.  A task with no image on either side is refused (one
line: that is a text dataset, use the bi-encoder kind).

**Features.** The towers are frozen, so a tower's output for one input never changes during
training: each image is decoded and run through the backbone once per view, each text through
the text tower once.  View 0 is the image as the eval core sees it (through the embedding
cache, the same space ``embedlab eval`` uses); views 1.. are seeded augmentations (random
resized crop, scale 0.6-1 and aspect 3/4-4/3 as in CLIP / SimCLR, then brightness, contrast and
saturation jitter of +-30%), cached in the embedding cache under a space that names the
augmentation and the view's seed, so a rerun costs nothing.  Each epoch draws one view per
training image at random.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from embedlab.data.beir import load_dataset
from embedlab.data.images import image_sha256, read_image
from embedlab.data.types import Qrels
from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from PIL.Image import Image

    from embedlab.cache.store import EmbeddingCache
    from embedlab.encoders.base import Encoder

log = logging.getLogger(__name__)
Kind = Literal["image", "text"]
AUGMENT = "random resized crop scale 0.6-1 ratio 3/4-4/3, brightness/contrast/saturation x U(0.7, 1.3)"


@dataclass(frozen=True)
class Item:
    kind: Kind
    value: str  # the image file (resolved path) or the text


@dataclass(frozen=True)
class TaskSplit:
    """One task's judged pairs of one split, and what its corpus holds (for ranking)."""

    name: str
    queries: dict[str, Item]
    qrels: Qrels
    corpus: dict[str, Item]

    def pairs(self) -> list[tuple[Item, Item]]:
        return [
            (self.queries[q], self.corpus[d])
            for q, grades in self.qrels.judgments.items()
            if q in self.queries
            for d, g in grades.items()
            if g > 0 and d in self.corpus
        ]


def task_names(text: str) -> list[str]:
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise EmbedlabError("no task named", found=repr(text), expected="a BEIR image task, e.g. emoji/text2image")
    return names


def read_task(name: str, split: str) -> TaskSplit:
    """A task's split as items; a task without images is one line (a text dataset)."""
    data = load_dataset(name, split=split)  # a missing image file stops here, with its line
    if not data.corpus_images and not data.query_images:
        raise EmbedlabError(
            f"{name!r} has no image records: image-text fine-tuning needs image queries or image documents",
            path=data.path,
            hint="use --kind bi-encoder for a text dataset",
        )
    corpus = {
        doc.id: Item("image", str(doc.image)) if doc.image is not None else Item("text", doc.content)
        for doc in data.iter_documents()
    }
    queries = {
        q: Item("image", str(data.query_images[q])) if q in data.query_images else Item("text", text)
        for q, text in data.queries.items()
    }
    return TaskSplit(name, queries, data.qrels, corpus)


def has_split(name: str, split: str) -> bool:
    from embedlab.data.beir import resolve_dataset

    return (resolve_dataset(name) / "qrels" / f"{split}.tsv").is_file()


class Features:
    """Tower features of every item used, computed once (see the module docstring)."""

    def __init__(self, image_tower: Encoder, text_tower: Encoder, *, views: int, seed: int) -> None:
        self.image_tower, self.text_tower = image_tower, text_tower
        self.views, self.seed = views, seed
        self.image_rows: dict[str, int] = {}
        self.text_rows: dict[str, int] = {}
        self.images = np.zeros((views, 0, image_tower.dim), np.float32)
        self.texts = np.zeros((0, text_tower.dim), np.float32)

    def add(
        self, items: Sequence[Item], *, augment: bool, cache: EmbeddingCache | None, show_progress: bool = False
    ) -> None:
        """Encode the items not yet known (images: every view when ``augment``, else view 0 only,
        the other views then repeat view 0)."""
        paths = sorted({i.value for i in items if i.kind == "image" and i.value not in self.image_rows})
        texts = sorted({i.value for i in items if i.kind == "text" and i.value not in self.text_rows})
        if texts:
            vectors = self.text_tower.encode(texts, role="document", cache=cache, use_prompt=False)
            self.text_rows.update({t: len(self.text_rows) + n for n, t in enumerate(texts)})
            self.texts = np.concatenate([self.texts, vectors])
        if paths:
            files = [Path(p) for p in paths]
            clean = self.image_tower.encode_images(files, role="document", cache=cache, show_progress=show_progress)
            block = np.repeat(clean[None], self.views, axis=0)
            if augment:
                for view in range(1, self.views):
                    block[view] = self._augmented(files, view, cache)
            self.image_rows.update({p: len(self.image_rows) + n for n, p in enumerate(paths)})
            self.images = np.concatenate([self.images, block], axis=1)

    def _augmented(self, files: list[Path], view: int, cache: EmbeddingCache | None) -> np.ndarray:
        from embedlab.encoders.images import image_space

        tower = self.image_tower
        keys = [image_sha256(p) for p in files]
        description = {**image_space(tower.fingerprint, "document"), "augment": AUGMENT, "view_seed": self.seed + view}
        space = cache.space(description, tower.dim) if cache is not None else None
        out, found = cache.get(space, keys, tower.dim) if cache is not None and space is not None else (None, None)
        result = np.zeros((len(files), tower.dim), np.float32) if out is None else out
        todo = [i for i in range(len(files)) if found is None or not found[i]]
        preprocess = getattr(tower, "preprocess")  # noqa: B009  (an image tower has one: encode_images checked)
        for start in range(0, len(todo), tower.batch_size):
            rows = todo[start : start + tower.batch_size]
            pictures = [augment(read_image(files[i]), seed=_seed(keys[i], self.seed + view)) for i in rows]
            vectors = tower.encode_image_batch(preprocess.pixels(pictures)).astype(np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            result[rows] = vectors
            if cache is not None and space is not None:
                cache.put(space, [keys[i] for i in rows], vectors)
        return result

    def rows(self, items: Sequence[Item]) -> tuple[np.ndarray, np.ndarray]:
        """(is_image mask, row in the image or text table) per item."""
        is_image = np.array([i.kind == "image" for i in items], bool)
        rows = np.array([self.image_rows[i.value] if i.kind == "image" else self.text_rows[i.value] for i in items])
        return is_image, rows


def _seed(key: bytes, view_seed: int) -> int:
    return int.from_bytes(hashlib.sha256(key + view_seed.to_bytes(8, "little")).digest()[:8], "little")


def augment(image: Image, *, seed: int) -> Image:
    """One seeded view: random resized crop (area 0.6-1, aspect 3/4-4/3, back to the input size),
    then brightness, contrast and saturation each scaled by U(0.7, 1.3)."""
    from PIL import ImageEnhance

    rng = np.random.default_rng(seed)
    width, height = image.size
    area = width * height * rng.uniform(0.6, 1.0)
    ratio = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    w = min(width, max(1, round(np.sqrt(area * ratio))))
    h = min(height, max(1, round(np.sqrt(area / ratio))))
    left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    view = image.crop((left, top, left + w, top + h)).resize((width, height))
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(float(rng.uniform(0.7, 1.3)))
    return view

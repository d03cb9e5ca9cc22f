"""``student`` of an aligned image-text folder: a cheaper query image tower distilled into the
teacher's space (``embedlab shrink --model ALIGNED --variants student``).

What is distilled: the teacher's *aligned* image embeddings (its backbone at 224 px, then its
head), into the same backbone at ``--student-image-size`` px (default 128: (128/224)^2 = 0.33 of
the network's compute; the emoji images are 64-72 px, so nothing is lost to the resize) with a
head initialised from the teacher's and trained by MSE between the L2-normalised student and
teacher vectors (= 2 - 2 cos), no labels (Hinton et al.'s distillation on embeddings, as the text
``student`` does, :mod:`embedlab.optimize.distill`).  The student folder keeps the teacher inside
(``teacher/``) and encodes document images with it (:mod:`embedlab.encoders.aligned`,
``documents``): a catalogue is encoded once at index time by the expensive tower, each query by
the cheap one.  That is the two-stage image pipeline's cheap query side; the index kind is the
other half (``:index=binary,index_rescore=50,index_rescore_with=float``: Hamming distance on the
teacher vectors' sign bits for the top 50, then the full-precision teacher vectors).

Images it learns from, per ``-d`` task: the corpus images (the catalogue, known at index time, as
int8-static's calibration sample) and the query images of the ``train`` split; the query images of
the ``dev`` split are held out (a seeded tenth of the training images when there is no dev split)
and pick the epoch by their mean cosine to the teacher (patience 5).  The test split's queries are
never seen.  Each image is used in ``views`` versions, the clean one and seeded crop + colour
jitter views, the same views for both towers (:class:`embedlab.train.image_text_data.Features`,
cached).  Why an initialised head and lr 1e-3 (measured on emoji/image2image dev with clean images
while designing this): the teacher's head applied to the 128 px features already reaches Recall@10
0.78 against the teacher's 0.86; 10 epochs of MSE bring it to 0.85, and training on past the
held-out cosine's best lowers Recall@1.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.atomic import atomic_dir, atomic_write_text
from embedlab.checksum import file_sha256
from embedlab.encoders.aligned import (
    HEADS,
    MANIFEST,
    AlignedEncoder,
    AlignedManifest,
    l2,
    project,
    read_aligned_manifest,
)
from embedlab.encoders.image_models import EFFICIENTNET_LITE0, EFFICIENTNET_LITE0_MULTISCALE
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.train.align import export_image_head, image_head_from

log = logging.getLogger(__name__)
TEACHER = "teacher"  # the teacher's folder inside the student's
LEARNING_RATE = 1e-3
PATIENCE = 5
BATCH = 256
HELD_OUT_SHARE = 0.1  # without a dev split


@dataclass(frozen=True)
class StudentImages:
    train: list[Path]
    held_out: list[Path]
    source: str  # how they were chosen, for the record


def student_images(tasks: Sequence[str], *, seed: int) -> StudentImages:
    """The images the student learns from and the held-out ones (module docstring)."""
    from embedlab.train.image_text_data import has_split, read_task

    train: set[str] = set()
    held: set[str] = set()
    for name in tasks:
        splits = [split for split in ("train", "dev", "test") if has_split(name, split)]
        task = read_task(name, splits[0] if splits else "test")  # no split at all: read_task's own line
        train |= {i.value for i in task.corpus.values() if i.kind == "image"}
        if "train" in splits:
            train |= {task.queries[q].value for q in task.qrels.judgments if task.queries[q].kind == "image"}
        if "dev" in splits:
            dev = read_task(name, "dev")
            held |= {dev.queries[q].value for q in dev.qrels.judgments if dev.queries[q].kind == "image"}
    if not train:
        raise EmbedlabError(
            "no images to distil a student on",
            expected='an image task (documents or queries with an "image" path), e.g. emoji/image2image',
        )
    train -= held
    source = "corpus images + train-split query images (if any); held out: dev-split query images"
    if not held:
        ordered = sorted(train)
        held = set(random.Random(seed).sample(ordered, max(1, round(len(ordered) * HELD_OUT_SHARE))))
        train -= held
        source = f"corpus images + train-split query images (if any); held out: a seeded {HELD_OUT_SHARE:.0%} of them"
    return StudentImages(sorted(Path(p) for p in train), sorted(Path(p) for p in held), source)


def check_teacher(model: str, image_size: int) -> AlignedManifest:
    """The manifest of the aligned folder to distil (read, not loaded: ``shrink`` checks this before
    any work); one line for anything a student cannot be made of."""
    folder = Path(model).expanduser()
    manifest = read_aligned_manifest(folder) if folder.is_dir() else None
    if manifest is None or manifest.documents is not None:
        raise EmbedlabError(
            f"{model!r} is not an aligned image-text folder with its own image tower",
            expected="a folder written by embedlab finetune --kind image-text",
        )
    backbone = manifest.image_model
    if backbone not in (EFFICIENTNET_LITE0.name, EFFICIENTNET_LITE0_MULTISCALE.name):
        raise EmbedlabError(
            f"the image student runs the teacher's backbone at a lower resolution; {backbone!r} has a fixed input",
            expected=f"an aligned folder on {EFFICIENTNET_LITE0.name} or {EFFICIENTNET_LITE0_MULTISCALE.name}",
        )
    size = manifest.image_options.get("image_size", EFFICIENTNET_LITE0.preprocess.size)
    if not 32 <= image_size < size:
        raise EmbedlabError(
            f"--student-image-size {image_size} is not below the teacher's {size} px", expected=f"32..{size - 1}"
        )
    return manifest


def build_image_student(
    model: str,
    target: Path,
    *,
    tasks: Sequence[str],
    image_size: int,
    views: int,
    epochs: int,
    seed: int,
    label: str,
    cache_dir: Path | None = None,
) -> dict[str, object]:
    """Distil the aligned folder ``model`` into a student folder at ``target``; its record."""
    import json

    from embedlab.cache.store import EmbeddingCache
    from embedlab.encoders.registry import load_encoder
    from embedlab.settings import cache_dir as default_cache
    from embedlab.train.image_text_data import Features, Item

    check_teacher(model, image_size)
    teacher = load_encoder(ModelSpec(model=model))
    assert isinstance(teacher, AlignedEncoder)  # an aligned manifest loads as one (not an input check)
    images = student_images(tasks, seed=seed)
    started = time.perf_counter()
    tower = load_encoder(ModelSpec(model=teacher.manifest.image_model, options={"image_size": image_size}))
    cache = EmbeddingCache(cache_dir or default_cache())
    items = [Item("image", str(p)) for p in [*images.train, *images.held_out]]
    features = {}
    for name, image_tower in (("student", tower), ("teacher", teacher.image_tower)):
        f = Features(image_tower, teacher.text_tower, views=views, seed=seed)
        f.add(items, augment=views > 1, cache=cache)
        features[name] = f
    rows = features["student"].rows(items)[1]
    teacher_rows = features["teacher"].rows(items)[1]
    x = features["student"].images[:, rows]  # (views, images, backbone dim): same order for both
    y = np.stack([l2(project(v[teacher_rows], teacher.heads, "image")) for v in features["teacher"].images])
    split = len(images.train)
    heads, curve = _train(x, y, split, teacher.heads, epochs=epochs, seed=seed)
    record = {
        "teacher": teacher.manifest.name,
        "image_size": image_size,
        "teacher_image_size": teacher.preprocess.size,
        "compute_share": round((image_size / teacher.preprocess.size) ** 2, 4),
        "images": {"train": split, "held_out": len(images.held_out), "views": views, "chosen": images.source},
        "loss": "MSE of L2-normalised student and teacher image embeddings",
        "learning_rate": LEARNING_RATE,
        "batch_size": BATCH,
        "patience": PATIENCE,
        "held_out_cosine_by_epoch": [round(c, 6) for c in curve],
        "best_epoch": int(np.argmax(curve)),
        "held_out_cosine_untrained": round(curve[0], 6),
        "held_out_cosine": round(max(curve), 6),
        "seconds": round(time.perf_counter() - started, 1),
    }
    source = Path(model).expanduser()
    with atomic_dir(target) as work:
        shutil.copytree(source, work / TEACHER, ignore=shutil.ignore_patterns("*.json.tmp*", ".*"))
        arrays: dict[str, Any] = {**heads, **{k: v for k, v in teacher.heads.items() if k.startswith("text.")}}
        with open(work / HEADS, "wb") as handle:
            np.savez(handle, **arrays)
        manifest = teacher.manifest.model_copy(
            update={
                "name": f"{label}:student",
                "image_options": {"image_size": image_size},
                "documents": TEACHER,
                "heads_sha256": file_sha256(work / HEADS),
                "made_with": {"distilled": record},
            }
        )
        atomic_write_text(work / MANIFEST, json.dumps(manifest.model_dump(), indent=2) + "\n")
    log.info("student at %d px: held-out cosine to the teacher %.3f -> %.3f", image_size, curve[0], max(curve))
    return record


def _train(
    x: np.ndarray, y: np.ndarray, split: int, initial: dict[str, np.ndarray], *, epochs: int, seed: int
) -> tuple[dict[str, np.ndarray], list[float]]:
    """The student head (initialised from the teacher's image head) trained on rows ``:split``;
    the best epoch by the held-out rows' mean cosine (clean view) and that cosine per epoch."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = image_head_from(initial)
    optimizer = torch.optim.AdamW(head.parameters(), lr=LEARNING_RATE, weight_decay=0.01)
    inputs = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(x)), dim=2)
    targets = torch.from_numpy(np.ascontiguousarray(y))

    def held_out() -> float:
        with torch.no_grad():
            out = torch.nn.functional.normalize(head(inputs[0, split:]), dim=1)
            return float((out * targets[0, split:]).sum(1).mean())

    curve, best, stale = [held_out()], export_image_head(head), 0
    for _ in range(epochs):
        order = rng.permutation(split)
        views = rng.integers(0, x.shape[0], size=split)
        for start in range(0, split, BATCH):
            batch = order[start : start + BATCH]
            view = torch.from_numpy(views[batch])
            index = torch.from_numpy(batch)
            out = torch.nn.functional.normalize(head(inputs[view, index]), dim=1)
            loss = ((out - targets[view, index]) ** 2).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        curve.append(held_out())
        if curve[-1] > max(curve[:-1]):
            best, stale = export_image_head(head), 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    return best, curve

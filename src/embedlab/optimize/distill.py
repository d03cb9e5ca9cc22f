"""Distilled variants of a transformer: a static model and a smaller transformer student.

- ``static``: model2vec's distillation (Tulkens & van Dongen 2024) of the user's model, the same
  builder as the packaged ``minilm-model2vec`` (:func:`embedlab.encoders.static.distill_static`):
  every vocabulary token through the transformer, PCA to min(256, hidden) dimensions, SIF
  weighting.  ``static_vocabulary=N`` adds the N most frequent words of the user's corpus as
  whole tokens (a word the tokenizer would split gets one vector of its own).  The folder holds
  model2vec's files and ``embedlab_model.json`` (kind ``static``), so it loads by path through
  the packaged model's loader.
- ``student``: a copy of the teacher keeping some of its layers (default: every other one,
  ending with the last: 1, 3, 5 of 6), trained to reproduce the teacher's embeddings of the
  user's corpus passages and queries, MSE, no labels (Reimers & Gurevych 2020,
  arXiv:2004.09813), through the shared epoch loop (:func:`embedlab.train.fit.fit`).  Why the
  odd layers: MiniLM cut to layers 1, 3, 5 starts closer to its teacher than 0, 2, 4 (before
  any training, 64 SciFact passages: MSE 0.0034 vs 0.0040, mean cosine 0.35 vs 0.24).  Why a
  learning rate of 5e-4 (AdamW, 10% warmup, batch 32): MiniLM's student on 500 SciFact passages
  + 125 queries reached a mean cosine to the teacher of 0.819 / 0.855 / 0.864 on 200 held-out
  passages after epochs 1 / 2 / 3, against 0.775 / 0.813 / 0.822 with 1e-4 (0.363 untrained).  The
  student is a plain sentence-transformers folder (``SentenceTransformer(folder)`` loads it)
  with ``distill.json`` beside it: layers, settings, the MSE to the teacher before and after
  training.  The queries it copies the teacher on come from the dataset (their text only, never
  their judgments), like int8-static's calibration sample.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from embedlab.atomic import atomic_dir, atomic_write_text
from embedlab.checksum import file_sha256
from embedlab.encoders.onnx_folder import FolderManifest, read_manifest, write_manifest
from embedlab.encoders.resolve import locate_model, resolve_model
from embedlab.errors import EmbedlabError

STATIC_DIMS = 256  # model2vec's default PCA size, and the packaged minilm-model2vec's
RECORD = "distill.json"  # beside the student's sentence-transformers files
_WORD = re.compile(r"\w{2,}")


@dataclass(frozen=True)
class DistillOptions:
    static_vocabulary: int = 0  # 0: the model's own tokens only; N: plus the corpus' N most frequent words
    student_layers: tuple[int, ...] | None = None  # None: every other layer, ending with the last
    student_epochs: int = 1
    student_batch_size: int = 32
    # plus up to a quarter as many queries; all-MiniLM-L6-v2's 3-layer student on SciFact kept 0.925
    # of its NDCG@10 after 1,000 passages and 0.979 after 4,000 (benchmarks/bench_shrink_scifact.py)
    student_max_passages: int = 4000
    learning_rate: float = 5e-4  # see the module docstring
    # an aligned image-text folder's student (embedlab.optimize.image_distill): resolution, views, max epochs
    student_image_size: int = 128
    student_image_views: int = 3
    student_image_epochs: int = 60

    def check(self) -> None:
        for name in (
            "student_epochs",
            "student_batch_size",
            "student_max_passages",
            "student_image_size",
            "student_image_views",
            "student_image_epochs",
        ):
            if getattr(self, name) < 1:
                raise EmbedlabError(f"--{name.replace('_', '-')} must be >= 1", found=str(getattr(self, name)))
        if self.static_vocabulary < 0:
            raise EmbedlabError("--static-vocabulary must be >= 0", found=str(self.static_vocabulary))


@dataclass(frozen=True)
class _Text:
    """One text the student copies its teacher on; ``row``: its teacher embedding."""

    text: str
    row: int

    def texts(self) -> tuple[str, ...]:
        return (self.text,)


def _config(model: str) -> dict[str, Any]:
    path = locate_model(model).folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = None
    if not isinstance(config, dict):
        raise EmbedlabError("the model folder has no readable config.json", path=path, expected="a transformer folder")
    return config


def teacher_layers(model: str) -> int:
    """The number of transformer layers of ``model`` (``num_hidden_layers`` in its config.json)."""
    layers = _config(model).get("num_hidden_layers")
    if not isinstance(layers, int) or layers < 1:
        raise EmbedlabError(
            f"cannot make a student of {model!r}: its config.json has no layer count",
            found=f"num_hidden_layers = {layers!r}",
            expected="a transformer folder (e.g. BERT) with num_hidden_layers",
        )
    return layers


def student_layers(total: int, asked: tuple[int, ...] | None) -> tuple[int, ...]:
    """The teacher layers the student keeps, in order; checked before any work."""
    if asked is None:
        return tuple(range((total - 1) % 2, total, 2))
    wrong = [i for i in asked if not 0 <= i < total]
    if wrong or not asked or len(set(asked)) != len(asked):
        raise EmbedlabError(
            f"--student-layers {','.join(map(str, asked))} does not fit a {total}-layer teacher",
            found=f"out of range: {', '.join(map(str, wrong))}" if wrong else "an index given twice (or none)",
            expected=f"distinct layer indices from 0 to {total - 1}",
        )
    return tuple(sorted(asked))


def corpus_vocabulary(texts: Iterable[str], size: int) -> list[str]:
    """The ``size`` most frequent words (2+ word characters) of ``texts``; ties by the word, so
    the same corpus always gives the same vocabulary."""
    counts = Counter(word for text in texts for word in _WORD.findall(text.lower()))
    return [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]]


def build_static_variant(model: str, target: Path, *, label: str, vocabulary: list[str]) -> FolderManifest:
    """Write the model2vec distillation of the transformer ``model`` at ``target`` (atomically)."""
    from embedlab.encoders.static import distill_static

    base = resolve_model(model)
    hidden = _config(model).get("hidden_size")
    dims = min(STATIC_DIMS, hidden) if isinstance(hidden, int) else STATIC_DIMS
    with atomic_dir(target) as work:
        tokens = distill_static(base.path, work, pca_dims=dims, what="the static variant", vocabulary=vocabulary)
        dim = int(json.loads((work / "config.json").read_text(encoding="utf-8"))["hidden_dim"])
        manifest = FolderManifest(
            kind="static",
            name=f"{label}:static",
            base_model=model,
            base_weights_sha256=base.weights_sha256,
            file="model.safetensors",
            sha256=file_sha256(work / "model.safetensors"),
            pooling="mean",
            normalize=True,
            max_length=512,  # model2vec's default truncation, in tokens
            dim=dim,
            made_with={
                "method": "model2vec distill (token vectors through the model, PCA, SIF weighting 1e-4)",
                "pca_dims": dims,
                "tokens": tokens,
                "corpus_words_added_asked": len(vocabulary),
                "vectors_on_disk": "float16",
            },
        )
        write_manifest(work, manifest)
    return read_manifest(target) or manifest


def build_student_variant(
    model: str, target: Path, *, texts: list[str], options: DistillOptions, seed: int, show_progress: bool = False
) -> dict[str, Any]:
    """Train and write (atomically) the student of the transformer ``model``; its ``distill.json``."""
    import torch

    from embedlab.train.fit import Schedule, fit, seed_everything
    from embedlab.train.loop import embed
    from embedlab.train.losses import mse
    from embedlab.train.run import _load_model

    total = teacher_layers(model)
    keep = student_layers(total, options.student_layers)
    if not texts:
        raise EmbedlabError("the student has no text to learn from", expected="a corpus with passages or queries")
    seed_everything(seed)
    teacher = _load_model(model)
    device = str(teacher.device)
    targets = teacher.encode(texts, batch_size=options.student_batch_size, convert_to_tensor=True)
    student = copy.deepcopy(teacher)
    del teacher
    _keep_layers(student, model, total, keep)
    before = _mse(student, texts, targets, options.student_batch_size)
    examples = [_Text(text, row) for row, text in enumerate(texts)]

    def step(batch: list[_Text]) -> float:
        loss = mse(embed(student, [e.text for e in batch], device), targets[[e.row for e in batch]])
        loss.backward()
        return float(loss.detach())

    schedule = Schedule(
        options.student_epochs,
        options.student_batch_size,
        options.learning_rate,
        warmup_ratio=0.1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        patience=options.student_epochs,
        seed=seed,
    )
    fitted = fit(student, examples, schedule=schedule, step=step, dev_score=lambda: None, show_progress=show_progress)
    after = _mse(student, texts, targets, options.student_batch_size)
    record = {
        "teacher": model,
        "teacher_weights_sha256": resolve_model(model).weights_sha256,
        "teacher_layers": total,
        "layers_kept": list(keep),
        "method": "MSE to the teacher's embeddings, no labels (Reimers & Gurevych 2020)",
        "texts": len(texts),
        "options": {**asdict(options), "student_layers": list(keep), "seed": seed},
        "steps": fitted.steps,
        "train_loss": [p.train_loss for p in fitted.curve if p.train_loss is not None],
        "mse_to_teacher_before": before,
        "mse_to_teacher_after": after,
        "seconds": round(fitted.seconds, 2),
        "device": device,
        "torch_threads": torch.get_num_threads(),
    }
    with atomic_dir(target) as work:
        student.save(str(work), create_model_card=False)
        atomic_write_text(work / RECORD, json.dumps(record, indent=2) + "\n")
    return record


def read_record(folder: Path) -> dict[str, Any] | None:
    """A student folder's ``distill.json``, or None when there is none."""
    path = folder / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _keep_layers(student: Any, model: str, total: int, keep: tuple[int, ...]) -> None:
    """Cut the student's transformer to the layers ``keep``: the one ModuleList of ``total``
    layers in its first module is replaced, and the config says the new count."""
    import torch

    transformer = student[0].auto_model
    found = [
        (name, module)
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == total
    ]
    if len(found) != 1:
        raise EmbedlabError(
            f"cannot cut the layers of {model!r}: {type(transformer).__name__} has "
            f"{len(found)} layer lists of length {total}",
            expected="a transformer with one list of num_hidden_layers layers (BERT, MPNet, ...)",
        )
    name, layers = found[0]
    parent = transformer.get_submodule(name.rsplit(".", 1)[0]) if "." in name else transformer
    setattr(parent, name.rsplit(".", 1)[-1], torch.nn.ModuleList([layers[i] for i in keep]))
    transformer.config.num_hidden_layers = len(keep)


def _mse(student: Any, texts: list[str], targets: Any, batch_size: int) -> float:
    """The student's MSE to the teacher over ``texts`` (eval mode: no dropout)."""
    from embedlab.train.losses import mse

    student.eval()
    vectors = student.encode(texts, batch_size=batch_size, convert_to_tensor=True)
    return float(mse(vectors, targets))

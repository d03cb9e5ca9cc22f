"""``embedlab finetune --kind image-text``: align a frozen image backbone with a text tower.

Same steps as the other kinds (:mod:`embedlab.train.run`: output folder free, data read and
checked, leakage, dev split, best checkpoint, verdict through the eval core, card):

1. ``--train``: one or more BEIR image tasks (comma-separated), their ``--train-split`` pairs;
   ``--test``: one or more tasks, each judged on ``--test-split`` (the first is the headline
   verdict, the CLI's exit status follows it);
2. leakage: an item (image file or text) of a test query that also appears in a training pair
   stops the run (``--drop-leaked`` drops those pairs, ``--allow-leakage`` trains anyway);
3. dev: the tasks' own ``dev`` split when every training task has one, else ``--dev-ratio`` of
   the training queries (seeded); ranked against each task's whole corpus every epoch;
4. features computed once (:mod:`embedlab.train.image_text_data`), heads trained
   (:mod:`embedlab.train.align`), the best epoch's heads written as an aligned folder
   (:mod:`embedlab.encoders.aligned`), the untrained heads as ``untrained/`` inside it;
5. verdicts through the eval core (:func:`embedlab.train.verdict.compare_on_test`): against the
   raw backbone for an image -> image task, against the untrained heads (chance level: the same
   towers before training) for a task with text on one side.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedlab import settings
from embedlab.atomic import atomic_dir, atomic_write_text
from embedlab.cache.store import EmbeddingCache
from embedlab.encoders.aligned import HEADS, MANIFEST, AlignedManifest, file_sha256
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.train.align import AlignResult, align, output_dim
from embedlab.train.image_text_data import Features, Item, TaskSplit, has_split, read_task, task_names
from embedlab.train.leakage import LeakageReport, Overlap
from embedlab.train.loop import TrainResult
from embedlab.train.mining import MiningAudit
from embedlab.train.run import FinetuneResult
from embedlab.train.verdict import Verdict, compare_on_test

if TYPE_CHECKING:
    from embedlab.train.run import FinetuneSpec, _Timer

log = logging.getLogger(__name__)
IMAGE_TEXT_METRICS = ("ndcg@10", "recall@1", "recall@10", "mrr@10")
UNTRAINED = "untrained"
HEADS_UNTRAINED = "the best dev checkpoint is epoch 0: the heads are the untrained ones"
NO_MINING = MiningAudit(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class ImageTextResult(FinetuneResult):
    verdicts: tuple[Verdict, ...] = ()  # one per --test task; verdicts[0] is ``verdict``
    baselines: tuple[str, ...] = ()  # what each verdict's base is, in words
    alignment: dict[str, object] = field(default_factory=dict)  # logit scale, pairs, features


def run_image_text_finetune(spec: FinetuneSpec, *, timer: _Timer) -> ImageTextResult:
    from embedlab.train.guardrails import check_curve

    config, t = spec.align, spec.training
    config.check()
    t.check()
    tests = task_names(spec.test)
    train_tasks = [read_task(name, spec.train_split) for name in task_names(spec.train)]
    test_tasks = [read_task(name, spec.test_split) for name in tests]
    pairs = [p for task in train_tasks for p in task.pairs()]
    if not any(a.kind == "image" or b.kind == "image" for a, b in pairs):
        raise EmbedlabError(
            f"no (image, text) or (image, image) pair in the {spec.train_split!r} split of {spec.train!r}",
            hint="check the qrels split (--train-split) and the tasks named by --train",
        )
    pairs, leakage = _leakage(spec, pairs, test_tasks)
    dev = _dev(spec, train_tasks)
    dev_queries = {q for _, ids in dev for q in ids}
    pairs = [p for task in train_tasks for p in _pairs_without(task, dev_queries if not _own_dev(spec) else set())]
    pairs = _drop_leaked(pairs, leakage) if spec.drop_leaked else pairs
    timer.lap("read")
    cache = EmbeddingCache(spec.cache_dir or settings.cache_dir()) if spec.use_cache else None
    try:
        image_tower = load_encoder(ModelSpec(model=spec.base))
        text_tower = load_encoder(ModelSpec(model=config.text_model))
        _check_towers(spec.base, image_tower.modalities, config.text_model, text_tower.modalities)
        output_dim(config, text_tower.dim)  # a bad --dim stops before any encoding
        features = Features(image_tower, text_tower, views=config.views, seed=t.seed)
        items = [i for p in pairs for i in p]
        features.add(items, augment=config.views > 1, cache=cache, show_progress=spec.show_progress)
        dev_items = [i for task, ids in dev for i in [*(task.queries[q] for q in ids), *task.corpus.values()]]
        features.add(dev_items, augment=False, cache=cache, show_progress=spec.show_progress)
    finally:
        if cache is not None:
            cache.close()
    timer.lap("features")
    result = align(
        pairs,
        features,
        dev,
        config=config,
        epochs=t.epochs,
        batch_size=t.batch_size,
        learning_rate=t.learning_rate,
        warmup_ratio=t.warmup_ratio,
        weight_decay=t.weight_decay,
        patience=t.patience,
        seed=t.seed,
    )
    timer.lap("training")
    name = spec.out.name
    with atomic_dir(spec.out) as work:
        _write_folder(work, name, spec, result.heads, image_tower, text_tower, made_with=_made_with(spec, result))
        _write_folder(work / UNTRAINED, f"{name}:{UNTRAINED}", spec, result.initial, image_tower, text_tower)
    del features, image_tower, text_tower
    verdicts, baselines = [], []
    for task in tests:
        base, words = _baseline(spec, task)
        verdict = compare_on_test(
            task,
            base=base,
            tuned=ModelSpec(model=str(spec.out.resolve()), label=name),
            split=spec.test_split,
            alpha=spec.alpha,
            cache_dir=spec.cache_dir,
            use_cache=spec.use_cache,
            latency_queries=spec.latency_queries,
            seed=t.seed,
            show_progress=spec.show_progress,
            metrics=IMAGE_TEXT_METRICS,
        )
        if result.best_epoch == 0:
            verdict = replace(verdict, note=HEADS_UNTRAINED)
        verdicts.append(verdict)
        baselines.append(words)
    timer.lap("verdict")
    return _finish(spec, result, pairs, dev, leakage, tuple(verdicts), tuple(baselines), timer, check_curve)


def _check_towers(image: str, image_modalities: frozenset[str], text: str, text_modalities: frozenset[str]) -> None:
    if "image" not in image_modalities:
        raise EmbedlabError(
            f"--base {image!r} cannot encode images",
            hint="--base of --kind image-text is an image backbone: efficientnet-lite0, vit-s14-focus",
        )
    if "text" not in text_modalities:
        raise EmbedlabError(f"--text-model {text!r} cannot encode text", hint="e.g. --text-model all-MiniLM-L6-v2")


def _own_dev(spec: FinetuneSpec) -> bool:
    return spec.train_split != "dev" and all(has_split(name, "dev") for name in task_names(spec.train))


def _dev(spec: FinetuneSpec, train_tasks: list[TaskSplit]) -> list[tuple[TaskSplit, list[str]]]:
    """(task, dev query ids) per training task: its own dev split, or a seeded share of train."""
    if _own_dev(spec):
        out = []
        for task in train_tasks:
            dev = read_task(task.name, "dev")
            out.append((dev, sorted(q for q in dev.qrels.judgments if q in dev.queries)))
        return out
    if not 0 <= spec.dev_ratio < 1:
        raise EmbedlabError("--dev-ratio must be in [0, 1)", found=str(spec.dev_ratio))
    out = []
    for task in train_tasks:
        ids = sorted(q for q in task.qrels.judgments if q in task.queries)
        count = round(len(ids) * spec.dev_ratio)
        chosen = sorted(random.Random(spec.training.seed).sample(ids, count)) if 0 < count < len(ids) else []
        out.append((task, chosen))
    return out


def _pairs_without(task: TaskSplit, queries: set[str]) -> list[tuple[Item, Item]]:
    if not queries:
        return task.pairs()
    kept = {q: g for q, g in task.qrels.judgments.items() if q not in queries}
    from embedlab.data.types import Qrels

    return TaskSplit(task.name, task.queries, Qrels(kept), task.corpus).pairs()


def _leakage(
    spec: FinetuneSpec, pairs: list[tuple[Item, Item]], tests: list[TaskSplit]
) -> tuple[list[tuple[Item, Item]], LeakageReport]:
    """An item of a judged test query that is also in a training pair (the same image file or text)."""
    train_items = {i for p in pairs for i in p}
    overlaps = []
    for task in tests:
        for q in sorted(task.qrels.judgments):
            item = task.queries.get(q)
            if item is not None and item in train_items:
                overlaps.append(
                    Overlap("exact", f"{item.kind}:{Path(item.value).name}", q, item.value, item.value, 1.0)
                )
    report = LeakageReport(len(pairs), sum(len(t.qrels) for t in tests), 1.0, True, tuple(overlaps))
    if not report.clean and not spec.drop_leaked and not spec.allow_leakage:
        raise EmbedlabError(
            f"leakage: {report.summary()}",
            hint="pass --drop-leaked to train without these pairs, or --allow-leakage to train anyway",
        )
    return pairs, report


def _drop_leaked(pairs: list[tuple[Item, Item]], leakage: LeakageReport) -> list[tuple[Item, Item]]:
    leaked = {o.train_text for o in leakage.overlaps}
    kept = [p for p in pairs if p[0].value not in leaked and p[1].value not in leaked]
    if not kept:
        raise EmbedlabError(f"leakage: every training pair holds a test item: {leakage.summary()}")
    return kept


def _baseline(spec: FinetuneSpec, task: str) -> tuple[ModelSpec, str]:
    from embedlab.data.beir import load_dataset

    modalities = load_dataset(task, split=spec.test_split).modalities()
    if modalities["queries"] == {"image"} and modalities["documents"] == {"image"}:
        return ModelSpec(model=spec.base), f"raw `{spec.base}` features (no head)"
    folder = spec.out.resolve() / UNTRAINED
    return (
        ModelSpec(model=str(folder), label=f"{spec.out.name}:{UNTRAINED}"),
        "the same towers with the untrained (randomly initialised) heads: chance level",
    )


def _write_folder(folder, name, spec, heads, image_tower, text_tower, *, made_with=None) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / HEADS, "wb") as handle:
        np.savez(handle, **heads)
    config = spec.align
    manifest = AlignedManifest(
        name=name,
        image_model=_portable(spec.base),
        image_weights_sha256=image_tower.fingerprint.weights,
        text_model=_portable(config.text_model),
        text_weights_sha256=text_tower.fingerprint.weights,
        dim=int(heads["image.w"].shape[0]),
        image_hidden=config.image_hidden,
        text_projection=config.text_projection,
        heads_sha256=file_sha256(folder / HEADS),
        made_with=made_with or {},
    )
    atomic_write_text(folder / MANIFEST, manifest.model_dump_json(indent=2) + "\n")


def _portable(name: str) -> str:
    """A local folder as an absolute path (the aligned folder is loaded from anywhere), else the name."""
    return str(Path(name).expanduser().resolve()) if Path(name).expanduser().is_dir() else name


def _made_with(spec: FinetuneSpec, result: AlignResult) -> dict[str, object]:
    return {
        "train": spec.train,
        "train_split": spec.train_split,
        "best_epoch": result.best_epoch,
        "logit_scale": round(result.logit_scale, 4),
        "views": spec.align.views,
        "seed": spec.training.seed,
    }


def _finish(spec, result, pairs, dev, leakage, verdicts, baselines, timer, check_curve) -> ImageTextResult:
    from embedlab import __version__
    from embedlab.eval.measure import hardware, library_versions
    from embedlab.train.image_text_card import render_image_text_card, result_json

    kinds: dict[str, int] = {}
    for a, b in pairs:
        key = f"{a.kind}->{b.kind}"
        kinds[key] = kinds.get(key, 0) + 1
    training = TrainResult(
        result.curve,
        result.best_epoch,
        result.steps,
        result.seconds,
        "cpu",
        result.stopped_early,
        result.batches_per_epoch,
        {"views": spec.align.views, "logit_scale": result.logit_scale},
    )
    outcome = ImageTextResult(
        spec=spec,
        out=spec.out,
        data={"format": "beir", "source": spec.train, "examples": len(pairs), "pairs_by_kind": kinds},
        leakage=leakage,
        audit=NO_MINING,
        training=training,
        verdict=verdicts[0],
        dev_queries=sum(len(ids) for _, ids in dev),
        seconds=timer.laps,
        environment={
            "embedlab": __version__,
            "libraries": library_versions(),
            "hardware": hardware(),
            "seed": spec.training.seed,
        },
        warnings=tuple(check_curve(result.curve, best_epoch=result.best_epoch)),
        verdicts=verdicts,
        baselines=baselines,
        alignment={"logit_scale": result.logit_scale, "own_dev_split": _own_dev(spec)},
    )
    atomic_write_text(spec.out / "README.md", render_image_text_card(outcome))
    atomic_write_text(spec.out / "finetune.json", result_json(outcome))
    return outcome

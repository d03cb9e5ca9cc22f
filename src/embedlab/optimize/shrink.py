"""``embedlab shrink``: build every variant of a model, evaluate each as a select candidate
against the original, and write select's trade-off table, Pareto fronts and recommendation.

The flow: check everything that can be checked (model, datasets, variant names and
dimensions, calibration sample, output folder) before any work; build each model variant as
a folder under ``--out`` (atomically: a folder there is always complete); then hand the
original, the model folders (by path) and the index variants (``MODEL:index=KIND``) to
:func:`embedlab.select.run.run_selection` with the original as the reference, so retained
quality, the significance tests and the recommendation are select's own.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from embedlab.atomic import atomic_write_text
from embedlab.data.beir import Dataset, load_dataset
from embedlab.encoders.image_models import EFFICIENTNET_LITE0, EFFICIENTNET_LITE0_MULTISCALE, VIT_S14_FOCUS
from embedlab.encoders.onnx_folder import read_manifest
from embedlab.encoders.registry import check_model_exists, entry_for, load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.eval.runner import EvalReport
from embedlab.optimize.distill import (
    DistillOptions,
    build_static_variant,
    build_student_variant,
    corpus_vocabulary,
    read_record,
    student_layers,
    teacher_layers,
)
from embedlab.optimize.image_distill import build_image_student, check_teacher
from embedlab.optimize.image_quantize import IMAGE_VARIANTS, TOWER, build_image_variant
from embedlab.optimize.quantize import MIN_CALIBRATION, ONNX_VARIANTS, build_onnx_variant
from embedlab.optimize.variants import Variant, parse_variants
from embedlab.select.analysis import Constraints, Selection
from embedlab.select.run import SelectSpec, run_selection

log = logging.getLogger(__name__)
T = TypeVar("T")
ORIGINAL = "original"
QUERY_SHARE = 4  # calibration: up to size / 4 queries beside the passages (the model encodes both)


@dataclass(frozen=True)
class ShrinkSpec:
    model: ModelSpec
    datasets: tuple[str, ...]
    out: Path
    variants: tuple[str, ...] | None = None  # None: every applicable default variant
    constraints: Constraints = field(default_factory=Constraints)
    calibration_size: int = 200
    split: str = "test"
    cache_dir: Path | None = None
    use_cache: bool = True
    latency_queries: int = 100
    seed: int = 0
    show_progress: bool = False
    distill: DistillOptions = field(default_factory=DistillOptions)  # the static and student variants


@dataclass(frozen=True)
class ShrinkResult:
    report: EvalReport
    selection: Selection
    artefacts: dict[str, str]  # variant -> its folder, or the model spec that names it
    skipped: dict[str, str]  # variant -> why it does not apply
    files: list[Path]


def _transformer_folder(spec: ModelSpec) -> bool:
    """Whether the model is a transformer the ONNX and distillation variants can start from."""
    if entry_for(spec) is not None:
        return False
    folder = Path(spec.model).expanduser()
    return not (folder.is_dir() and read_manifest(folder) is not None)


def _what_it_is(spec: ModelSpec) -> str:
    """What the model is, for a variant that needs a transformer folder and did not get one."""
    entry = entry_for(spec)
    if entry is not None:
        kind = f"{entry.about.kind} " if entry.about is not None else ""
        return f"{spec.model!r} is a registered {kind}model, not a folder"
    manifest = read_manifest(Path(spec.model).expanduser())
    if manifest is not None:
        return f"{spec.model!r} is an embedlab {manifest.kind} model folder ({manifest.name})"
    return f"{spec.model!r} is not one"


def _model_dim(spec: ModelSpec, transformer: bool) -> int:
    if transformer:
        from embedlab.encoders.resolve import locate_model

        config = locate_model(spec.model).folder / "config.json"
        if config.is_file():
            return int(json.loads(config.read_text(encoding="utf-8"))["hidden_size"])
    return int(load_encoder(spec).dim)


def reservoir(items: Iterable[T], size: int, rng: random.Random) -> list[T]:
    """A uniform sample of up to ``size`` of a stream read once (Vitter's algorithm R)."""
    kept: list[T] = []
    for seen, item in enumerate(items, start=1):
        if len(kept) < size:
            kept.append(item)
        elif (slot := rng.randrange(seen)) < size:
            kept[slot] = item
    return kept


def calibration_sample(datasets: list[Dataset], size: int, *, seed: int) -> list[str]:
    """A seeded sample of up to ``size`` passages (reservoir sampling over the streamed corpora)
    plus up to ``size / 4`` queries; a corpus without text is an error."""
    rng = random.Random(seed)
    for dataset in datasets:
        if not any(d.content for d in dataset.iter_documents()):
            raise EmbedlabError(
                "the corpus has no text", path=dataset.corpus_path, expected="documents with a title or text"
            )
    texts = (d.content for dataset in datasets for d in dataset.iter_documents() if d.content)
    passages = reservoir(texts, size, rng)
    queries = [q for d in datasets for q in d.queries.values() if q.strip()]
    return passages + rng.sample(queries, min(len(queries), max(1, size // QUERY_SHARE)))


def _check_out(out: Path, variants: tuple[Variant, ...]) -> None:
    from embedlab.output import check_output_folder

    check_output_folder(out)
    taken = [v.name for v in variants if v.family == "model" and (out / v.name).exists()]
    if taken:
        raise EmbedlabError(
            f"--out already holds a {taken[0]!r} variant",
            path=out / taken[0],
            hint="choose another --out folder, or remove the old variants",
        )


def plan(spec: ShrinkSpec) -> tuple[list[Dataset], tuple[Variant, ...], dict[str, str], list[str] | list[Path]]:
    """Everything checked before any work: datasets, variants, the calibration sample (texts, or
    images for an image model), --out."""
    check_model_exists(spec.model)
    datasets = [load_dataset(name, split=spec.split) for name in spec.datasets]
    image = image_model(spec.model)
    aligned = image and image_backbone(spec.model) != spec.model.model
    two_tower = _two_tower_folder(spec.model)
    transformer = not image and not two_tower and _transformer_folder(spec.model)
    variants = parse_variants(
        list(spec.variants) if spec.variants else None, model_dim=_model_dim(spec.model, transformer)
    )
    skipped: dict[str, str] = {}
    kept = []
    for variant in variants:
        why = None
        if variant.family == "model" and image and variant.name not in (*IMAGE_VARIANTS, "student"):
            why = f"an image model: of the model variants only {', '.join(IMAGE_VARIANTS)} and student apply"
        elif variant.name == "student" and image and not aligned:
            why = "an image student is distilled from an aligned image-text folder (finetune --kind image-text)"
        elif (
            variant.name == "int8-dynamic"
            and image
            and image_backbone(spec.model) in (EFFICIENTNET_LITE0.name, EFFICIENTNET_LITE0_MULTISCALE.name)
        ):
            why = (
                "efficientnet-lite0 is all convolutions, and onnxruntime's dynamic int8 covers MatMul only "
                "(a dynamically quantized Conv has no fast CPU kernel): use int8-static"
            )
        elif variant.family == "model" and two_tower:
            why = (
                "a CLIP/SigLIP two-tower folder: int8 image towers are built for efficientnet-lite0, "
                "vit-s14-focus and aligned image-text folders"
            )
        elif variant.family == "model" and not image and not transformer:
            why = f"needs a transformer folder (a sentence-transformers model); {_what_it_is(spec.model)}"
        if why is None:
            kept.append(variant)
        elif spec.variants is not None:  # asked for by name: an error, not a silent skip
            raise EmbedlabError(f"variant {variant.name!r} does not apply: {why}")
        else:
            skipped[variant.name] = why
    if spec.calibration_size < MIN_CALIBRATION:
        raise EmbedlabError(
            f"--calibration-size {spec.calibration_size} is too small", expected=f"at least {MIN_CALIBRATION} texts"
        )
    spec.distill.check()
    if any(v.name == "student" for v in kept) and image:
        check_teacher(spec.model.model, spec.distill.student_image_size)
    elif any(v.name == "student" for v in kept):
        student_layers(teacher_layers(spec.model.model), spec.distill.student_layers)
    if image:
        samples: list[str] | list[Path] = image_sample(datasets, spec.calibration_size, seed=spec.seed)
    else:
        samples = calibration_sample(datasets, spec.calibration_size, seed=spec.seed)
    _check_out(spec.out, tuple(kept))
    return datasets, tuple(kept), skipped, samples


def _two_tower_folder(spec: ModelSpec) -> bool:
    from embedlab.encoders.resolve import folder_kind

    folder = Path(spec.model).expanduser()
    return folder.is_dir() and folder_kind(folder) == "two-tower"


def image_backbone(spec: ModelSpec) -> str:
    """The packaged backbone under an image model: the model itself, or an aligned folder's image
    tower (through a tower folder that ``shrink`` wrote, to the backbone it was made from)."""
    from embedlab.encoders.aligned import read_aligned_manifest

    folder = Path(spec.model).expanduser()
    aligned = read_aligned_manifest(folder) if folder.is_dir() else None
    if aligned is None:
        return spec.model
    tower = read_manifest(folder / aligned.image_model) if (folder / aligned.image_model).is_dir() else None
    return tower.base_model if tower is not None else aligned.image_model


def image_model(spec: ModelSpec) -> bool:
    """A packaged image backbone or an aligned two-tower folder: its image tower can be quantized."""
    from embedlab.encoders.aligned import read_aligned_manifest

    folder = Path(spec.model).expanduser()
    if folder.is_dir() and read_aligned_manifest(folder) is not None:
        return True
    return spec.model in (EFFICIENTNET_LITE0.name, EFFICIENTNET_LITE0_MULTISCALE.name, VIT_S14_FOCUS.name)


def image_sample(datasets: list[Dataset], size: int, *, seed: int) -> list[Path]:
    """A seeded sample of up to ``size`` corpus images; a corpus without images is an error."""
    paths = (Path(d.image) for dataset in datasets for d in dataset.iter_documents() if d.image is not None)
    images = reservoir(paths, size, random.Random(seed))
    if not images:
        raise EmbedlabError(
            "the corpus has no images to calibrate an image model on",
            path=datasets[0].corpus_path,
            expected='documents with an "image" path (an image task such as emoji/image2image)',
        )
    return images


def run_shrink(spec: ShrinkSpec) -> ShrinkResult:
    datasets, variants, skipped, samples = plan(spec)
    image = image_model(spec.model)
    label = spec.model.label or spec.model.model.rstrip("/").split("/")[-1]
    candidates: list[ModelSpec] = [spec.model.model_copy(update={"label": ORIGINAL})]
    artefacts: dict[str, str] = {}
    for variant in variants:
        if variant.family == "model":
            folder = spec.out / variant.name
            if image and variant.name == "student":
                build_image_student(
                    spec.model.model,
                    folder,
                    tasks=spec.datasets,
                    image_size=spec.distill.student_image_size,
                    views=spec.distill.student_image_views,
                    epochs=spec.distill.student_image_epochs,
                    seed=spec.seed,
                    label=label,
                    cache_dir=spec.cache_dir if spec.use_cache else None,
                )
            elif image:
                images = [p for p in samples if isinstance(p, Path)]
                build_image_variant(variant.name, spec.model.model, folder, images=images, label=label)
            else:
                texts = [t for t in samples if isinstance(t, str)]
                _build(variant.name, spec, folder, datasets=datasets, texts=texts, label=label)
            candidates.append(ModelSpec(model=str(folder), label=variant.name))
            artefacts[variant.name] = str(folder)
        else:
            options = {**spec.model.index_options, **variant.index_options}
            index_spec = spec.model.model_copy(update={"index": variant.index, "index_options": options})
            candidates.append(index_spec.model_copy(update={"label": variant.name}))
            artefacts[variant.name] = spec_text(index_spec)
    report, selection = run_selection(
        SelectSpec(
            datasets=spec.datasets,
            candidates=tuple(candidates),
            constraints=spec.constraints,
            split=spec.split,
            cache_dir=spec.cache_dir,
            use_cache=spec.use_cache,
            latency_queries=spec.latency_queries,
            seed=spec.seed,
            show_progress=spec.show_progress,
            reference=ORIGINAL,
        )
    )
    from embedlab.select.report import write_selection

    files = write_selection(selection, report, spec.out / "report")
    summary = {
        "model": spec.model.model,
        "variants": {
            v.name: {
                "family": v.family,
                "about": v.about,
                "artefact": artefacts[v.name],
                **_made_with(artefacts[v.name]),
            }
            for v in variants
        },
        "skipped": skipped,
        "recommended": selection.recommended,
        ("calibration_images" if image else "calibration_texts"): len(samples),
    }
    atomic_write_text(spec.out / "shrink.json", json.dumps(summary, indent=2) + "\n")
    return ShrinkResult(report, selection, artefacts, skipped, [*files, spec.out / "shrink.json"])


def _build(name: str, spec: ShrinkSpec, folder: Path, *, datasets: list[Dataset], texts: list[str], label: str) -> None:
    """Write the model variant ``name`` at ``folder``."""
    model = spec.model.model
    if name in ONNX_VARIANTS:
        build_onnx_variant(name, model, folder, texts=texts, label=label)
    elif name == "static":
        size = spec.distill.static_vocabulary
        words = corpus_vocabulary((d.content for s in datasets for d in s.iter_documents()), size) if size else []
        build_static_variant(model, folder, label=label, vocabulary=words)
    elif name == "student":
        sample = calibration_sample(datasets, spec.distill.student_max_passages, seed=spec.seed)
        build_student_variant(
            model, folder, texts=sample, options=spec.distill, seed=spec.seed, show_progress=spec.show_progress
        )
    else:  # pragma: no cover - parse_variants gives model variants from the registry only
        raise ValueError(name)


def spec_text(spec: ModelSpec) -> str:
    """The model spec as a user writes it on a command line (``PATH:index=pca,index_dim=192``)."""
    from embedlab.encoders.spec import option_text

    options = {k: v for k, v in spec.flat().items() if k not in ("model", "label")}
    return spec.model + (":" + ",".join(f"{k}={option_text(v)}" for k, v in options.items()) if options else "")


def _made_with(artefact: str) -> dict[str, object]:
    folder = Path(artefact)
    if (folder / TOWER).is_dir():  # a shrunk aligned folder: what its quantized image tower is
        folder = folder / TOWER
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is None:
        record = read_record(folder) if folder.is_dir() else None
        return {} if record is None else {"made_with": record}
    return {"precision": manifest.precision, "made_with": manifest.made_with}

"""``embedlab shrink``: quantized and compact variants of a model, measured against it."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from embedlab.optimize.variants import DEFAULT_VARIANTS, VARIANTS

    p = sub.add_parser(
        "shrink",
        help="build quantized / compact variants of a model and show what each saving costs in quality",
        description="Build each variant into --out, evaluate it against the original, recommend one.  An image "
        "model (efficientnet-lite0, vit-s14-focus, or an aligned image-text folder) gets int8 ONNX image towers, "
        "calibrated on the corpus images.",
        epilog=examples(
            "embedlab shrink --model all-MiniLM-L6-v2 -d scifact --out models/minilm-small",
            "embedlab shrink --model models/scifact-ft -d scifact -d npl --out models/ft-small --min-retained 0.97",
            "embedlab shrink --model models/scifact-ft -d scifact --out models/ft-distilled --variants static,student "
            "--student-epochs 2 --static-vocabulary 20000",
            "embedlab shrink --model models/emoji-aligned -d emoji/image2image --out models/emoji-int8 "
            "--variants int8-dynamic,int8-static",
        ),
    )
    p.add_argument("--model", "-m", required=True, help="model NAME[:key=value,...] or folder (e.g. a finetune output)")
    p.add_argument("--dataset", "-d", action="append", required=True, help="dataset folder or name (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="folder for the variants and the report")
    p.add_argument(
        "--variants",
        action="append",
        help=f"comma-separated, from {', '.join(VARIANTS.names())} (pca-N, matryoshka-N: N dimensions); "
        f"default: {','.join(DEFAULT_VARIANTS)} where they apply",
    )
    p.add_argument("--max-p95-ms", type=float, help="latency budget: worst p95 over the datasets")
    p.add_argument("--max-size-mb", type=float, help="model size budget (weights on disk)")
    p.add_argument("--max-index-mb-per-1m", type=float, help="index budget, projected to 1M documents")
    p.add_argument("--min-retained", type=float, help="quality floor: nDCG@10 as a fraction of the original's")
    p.add_argument("--price-per-hour", type=float, help="machine price; enables cost per 1k queries / 1M docs")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level for ties (default 0.05)")
    p.add_argument(
        "--calibration-size",
        type=int,
        default=200,
        help="corpus passages (images, for an image model) for int8-static (default 200)",
    )
    p.add_argument(
        "--static-vocabulary",
        type=int,
        default=0,
        help="static: add the corpus' N most frequent words as tokens (default 0: the model's own tokens)",
    )
    p.add_argument(
        "--student-layers",
        type=_layers,
        help="student: teacher layers to keep, e.g. 0,2,4 (default: every other one ending with the last: 1,3,5 of 6)",
    )
    p.add_argument("--student-epochs", type=int, default=1, help="student: training epochs (default 1)")
    p.add_argument("--student-batch-size", type=int, default=32, help="student: texts per step (default 32)")
    p.add_argument(
        "--student-max-passages",
        type=int,
        default=4000,  # DistillOptions' default (tests/test_shrink_distill.py checks they agree)
        help="student: corpus passages it copies the teacher on, plus up to 1/4 as many queries (default 4000)",
    )
    p.add_argument(
        "--student-image-size",
        type=int,
        default=128,
        help="student of an aligned image-text folder: query images at N px, (N/224)^2 of the compute (default 128)",
    )
    p.add_argument(
        "--student-image-views", type=int, default=3, help="image student: views per image, clean + augmented (3)"
    )
    p.add_argument(
        "--student-image-epochs", type=int, default=60, help="image student: most epochs, held-out early stop (60)"
    )
    p.add_argument("--split", default="test", help="qrels split evaluated")
    p.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--latency-queries", type=int, default=100, help="queries timed one by one for p50/p95")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of calibration samples, student training and statistical tests"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    p.set_defaults(handler=run_shrink_command)


def _layers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer indices like 0,2,4, got {text!r}") from None


def run_shrink_command(args: argparse.Namespace) -> int:
    from embedlab.encoders.spec import parse_model_spec
    from embedlab.optimize.distill import DistillOptions
    from embedlab.optimize.shrink import ShrinkSpec, run_shrink
    from embedlab.select.analysis import Constraints
    from embedlab.select.report import print_selection

    if not 0 < args.alpha < 1:
        raise EmbedlabError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.min_retained is not None and not 0 < args.min_retained <= 1:
        raise EmbedlabError(f"--min-retained must be in (0, 1], got {args.min_retained}")
    result = run_shrink(
        ShrinkSpec(
            model=parse_model_spec(args.model),
            datasets=tuple(args.dataset),
            out=args.out,
            variants=tuple(args.variants) if args.variants else None,
            constraints=Constraints(
                max_p95_ms=args.max_p95_ms,
                max_size_mb=args.max_size_mb,
                max_index_mb_per_1m=args.max_index_mb_per_1m,
                min_retained=args.min_retained,
                price_per_hour=args.price_per_hour,
                alpha=args.alpha,
            ),
            calibration_size=args.calibration_size,
            split=args.split,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            latency_queries=args.latency_queries,
            seed=args.seed,
            show_progress=not args.no_progress,
            distill=DistillOptions(
                static_vocabulary=args.static_vocabulary,
                student_layers=args.student_layers,
                student_epochs=args.student_epochs,
                student_batch_size=args.student_batch_size,
                student_max_passages=args.student_max_passages,
                student_image_size=args.student_image_size,
                student_image_views=args.student_image_views,
                student_image_epochs=args.student_image_epochs,
            ),
        )
    )
    print_selection(result.selection, result.report)
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    for name, artefact in result.artefacts.items():
        print(f"{name}: {artefact}")
    print(f"results: {args.out}/report/ (selection.md, selection.html, selection.json) and {args.out}/shrink.json")
    return 0 if result.selection.recommended is not None else 1

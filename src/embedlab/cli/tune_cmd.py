"""``embedlab tune fusion|depth``: pipeline settings chosen on dev queries, reported on the others."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError


def _numbers(text: str, *, option: str, kind: type = float) -> tuple:
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise EmbedlabError(
            f"cannot read {option} {text!r}", expected="comma-separated numbers, e.g. 10,20,50"
        ) from None
    if not values:
        raise EmbedlabError(f"empty {option}", expected="comma-separated numbers")
    return values


def add_parser(sub: argparse._SubParsersAction) -> None:
    from embedlab.search.fusion import METHODS
    from embedlab.tune.depth import DEPTHS, FUSE_WEIGHTS
    from embedlab.tune.fusion import ALPHA_STEP, RRF_KS, WEIGHT_VALUES

    p = sub.add_parser(
        "tune",
        help="tune a pipeline on dev queries: hybrid fusion settings, re-rank depth under a latency budget",
        description="Choose pipeline settings on labelled dev queries (the train split, or a seeded part of the "
        "test queries that is then left out) and report them on the other queries.",
    )
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--pipeline", "-m", required=True, help="the pipeline to tune (a pipeline spec string)")
    common.add_argument("--dataset", "-d", required=True, help="dataset folder or name")
    common.add_argument(
        "--dev",
        choices=("auto", "train", "part"),
        default="auto",
        help="dev queries: the train split (train), a seeded part of the test queries excluded from the "
        "reported figures (part), or train when the dataset has qrels/train.tsv (auto)",
    )
    common.add_argument(
        "--dev-fraction", type=float, default=0.3, help="share of test queries used as dev (--dev part)"
    )
    common.add_argument("--metric", default="ndcg@10", help="the metric tuned")
    common.add_argument("--out", type=Path, required=True, help="folder for the JSON and Markdown (and HTML) reports")
    common.add_argument("--seed", type=int, default=0, help="seed of the dev split and of the statistics")
    common.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    common.add_argument("--no-cache", action="store_true", help="read and write no embedding cache")
    common.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")

    f = modes.add_parser(
        "fusion",
        parents=[common],
        help="search hybrid fusion settings (RRF k and weights; min-max / z-score convex combinations)",
        description="Retrieve once per model, fuse every setting of the grid from the cached lists, pick the "
        "best on the dev queries, and compare it with the default RRF on the reported queries "
        "(paired randomization test).  Prints the tuned pipeline spec for eval, select, search and serve.",
        epilog=examples(
            'embedlab tune fusion -m "bm25 + all-MiniLM-L6-v2" -d scifact --out results/tune-hybrid',
            'embedlab tune fusion -m "bm25 + models/ft" -d scifact --dev part --methods rrf,minmax --out results/t',
        ),
    )
    f.add_argument("--methods", default=",".join(METHODS), help=f"fusion methods searched, from {', '.join(METHODS)}")
    f.add_argument("--rrf-k", default=",".join(f"{k:g}" for k in RRF_KS), help="RRF constants searched")
    f.add_argument(
        "--weights",
        default=",".join(f"{w:g}" for w in WEIGHT_VALUES),
        help="RRF weights searched for each model after the first (whose weight is 1)",
    )
    f.add_argument("--alpha-step", type=float, default=ALPHA_STEP, help="grid step of min-max / z-score weights")
    f.add_argument("--json", action="store_true", help="print tune-fusion.json to stdout (the files are still written)")
    f.set_defaults(handler=run_fusion)

    d = modes.add_parser(
        "depth",
        parents=[common],
        help="the smallest re-rank depth not significantly below the best, within a p95 budget",
        description="Measure quality and p95 latency of the pipeline's last re-rank stage at each depth (with "
        "each depth's best stage-fusion weight on dev, --fuse-weights); choose the smallest depth whose metric "
        "is not significantly below the best (paired test, Holm) and whose p95 is within --max-p95-ms.  Exit 2 "
        "when no depth is within the budget.",
        epilog=examples(
            'embedlab tune depth -m "all-MiniLM-L6-v2 >> bi:all-mpnet-base-v2" -d scifact --max-p95-ms 250 '
            "--out results/depth",
            'embedlab tune depth -m "bm25 >> models/ce" -d scifact --depths 10,20,50 --out results/depth-ce',
        ),
    )
    d.add_argument("--depths", default=",".join(map(str, DEPTHS)), help="re-rank depths measured")
    d.add_argument("--max-p95-ms", type=float, help="latency budget per query (p95, ms); none: no budget")
    d.add_argument("--alpha", type=float, default=0.05, help="significance level of 'below the best'")
    d.add_argument("--latency-queries", type=int, default=50, help="single queries timed per depth")
    d.add_argument(
        "--fuse-weights",
        default=",".join(f"{w:g}" for w in FUSE_WEIGHTS),
        help="stage-fusion weights tried at each depth (0: the re-ranker's score alone, fuse=last; W: "
        "W * previous + (1 - W) * re-ranker, min-max normalised); 'keep': the pipeline's own setting",
    )
    d.add_argument("--json", action="store_true", help="print tune-depth.json to stdout (the files are still written)")
    d.set_defaults(handler=run_depth)


def _common_values(args: argparse.Namespace) -> dict:
    from embedlab.eval.metrics import MAIN_METRICS, parse_metric, parse_metrics
    from embedlab.output import check_output_folder
    from embedlab.search.pipeline import parse_pipeline

    check_output_folder(args.out)
    return {
        "pipeline": parse_pipeline(args.pipeline),
        "dataset": args.dataset,
        "metric": parse_metric(args.metric),
        "report_metrics": tuple(parse_metrics(list(MAIN_METRICS))),
        "dev": args.dev,
        "dev_fraction": args.dev_fraction,
        "seed": args.seed,
        "use_cache": not args.no_cache,
        "cache_dir": args.cache_dir,
        "show_progress": not args.no_progress,
    }


def _show(args: argparse.Namespace, written: list[Path], markdown: str) -> None:
    """The report as Markdown (or, with --json, the JSON file's bytes) and where the files are."""
    from embedlab.cli.eval_cmd import emit_json_file, results_line

    if args.json:
        emit_json_file(written[0])
    else:
        print(markdown)
    results_line(f"results: {', '.join(map(str, written))}", json_out=args.json)


def run_fusion(args: argparse.Namespace) -> int:
    from embedlab.cli.eval_cmd import results_line
    from embedlab.tune.fusion import FusionTuneSpec, run_tune_fusion
    from embedlab.tune.report import fusion_markdown, write_fusion

    result = run_tune_fusion(
        FusionTuneSpec(
            **_common_values(args),
            methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
            rrf_ks=_numbers(args.rrf_k, option="--rrf-k"),
            weight_values=_numbers(args.weights, option="--weights"),
            alpha_step=args.alpha_step,
        )
    )
    _show(args, write_fusion(result, args.out), fusion_markdown(result))
    results_line(f"tuned pipeline: {result.tuned}", json_out=args.json)
    return 0


def run_depth(args: argparse.Namespace) -> int:
    from embedlab.cli.eval_cmd import results_line
    from embedlab.tune.depth import DepthTuneSpec, check_depths, run_tune_depth
    from embedlab.tune.report import depth_markdown, write_depth

    if not 0 < args.alpha < 1:
        raise EmbedlabError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.latency_queries < 1:
        raise EmbedlabError("invalid --latency-queries", found=str(args.latency_queries), expected=">= 1")
    spec = DepthTuneSpec(
        **_common_values(args),
        depths=_numbers(args.depths, option="--depths", kind=int),
        max_p95_ms=args.max_p95_ms,
        alpha=args.alpha,
        latency_queries=args.latency_queries,
        fuse_weights=(
            () if args.fuse_weights.strip() == "keep" else _numbers(args.fuse_weights, option="--fuse-weights")
        ),
    )
    check_depths(spec)  # one line before any model loads
    result = run_tune_depth(spec)
    _show(args, write_depth(result, args.out), depth_markdown(result))
    if result.pipeline is None:
        fastest = result.fastest
        raise EmbedlabError(
            f"no re-rank depth meets p95 <= {args.max_p95_ms:g} ms: the fastest, depth {fastest.depth}, "
            f"has p95 {fastest.p95_ms:.1f} ms",
            hint="raise --max-p95-ms, try smaller --depths, or a faster re-ranker",
        )
    results_line(f"chosen pipeline: {result.pipeline}", json_out=args.json)
    return 0

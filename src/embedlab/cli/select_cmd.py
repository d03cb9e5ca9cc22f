"""``embedlab select`` and its shortcut ``embedlab pooling``."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.cli.eval_cmd import add_latency_options
from embedlab.errors import EmbedlabError


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "-d", action="append", required=True, help="dataset folder or name (repeatable)")
    p.add_argument("--max-p95-ms", type=float, help="latency budget: worst p95 over the datasets")
    p.add_argument("--max-size-mb", type=float, help="model size budget (weights on disk)")
    p.add_argument("--min-ndcg10", type=float, help="quality floor (mean nDCG@10 over the datasets)")
    p.add_argument("--price-per-hour", type=float, help="machine price; enables cost per 1k queries / 1M docs")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level for ties (default 0.05)")
    p.add_argument("--split", default="test", help="qrels split scored")
    p.add_argument("--out", type=Path, default=Path("results/select"), help="folder for the selection reports")
    p.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    p.add_argument("--no-cache", action="store_true", help="read and write no embedding cache")
    add_latency_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and randomization tests")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument(
        "--json",
        action="store_true",
        help="print selection.json to stdout instead of the tables (the files are still written; logs go to stderr)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="compare candidate models and recommend one under constraints",
        description="The accuracy / latency / size / cost trade-off, and a recommendation.",
        epilog="Examples:\n  embedlab select -d scifact --candidates benchmarks/candidates.toml --max-p95-ms 30\n"
        "  embedlab select -d scifact -m all-MiniLM-L6-v2 -m bm25 --max-size-mb 200",
    )
    _common(p)
    p.add_argument("--candidates", type=Path, help="TOML or YAML candidates file")
    p.add_argument(
        "--model",
        "-m",
        action="append",
        help="extra candidate: a model NAME[:key=value,...] or a pipeline (repeatable)",
    )
    p.set_defaults(handler=run_select)
    q = sub.add_parser(
        "pooling",
        help="compare mean, CLS and max pooling on the same transformer",
        description="Evaluate one transformer with mean, CLS and max pooling on the same datasets and "
        "recommend one, as `embedlab select` does for models (quality with significance tests, latency, size).",
        epilog="Examples:\n  embedlab pooling --model all-MiniLM-L6-v2 -d scifact\n"
        "  embedlab pooling -m all-MiniLM-L6-v2 -d scifact -d cranfield --out results/pooling-minilm",
    )
    _common(q)
    q.add_argument("--model", "-m", required=True, help="transformer model name or folder")
    q.set_defaults(handler=run_pooling, out=Path("results/pooling"))  # not select's folder: no overwrite


def _finish(args: argparse.Namespace, candidates: list, *, candidates_file: Path | None = None) -> int:
    from embedlab.api.selection import select_model
    from embedlab.cli.eval_cmd import emit_json_file, results_line
    from embedlab.select.report import print_selection

    if not 0 < args.alpha < 1:
        raise EmbedlabError(f"--alpha must be between 0 and 1, got {args.alpha}")
    result = select_model(
        candidates,
        args.dataset,
        candidates_file=candidates_file,
        max_p95_ms=args.max_p95_ms,
        max_size_mb=args.max_size_mb,
        min_ndcg10=args.min_ndcg10,
        price_per_hour=args.price_per_hour,
        alpha=args.alpha,
        split=args.split,
        cache=False if args.no_cache else (args.cache_dir or True),
        latency_queries=args.latency_queries,
        latency_repeats=args.repeat,
        latency_wait_quiet_s=args.wait_quiet,
        seed=args.seed,
        out=args.out,  # checked before the work, not after it
        show_progress=not args.no_progress,
    )
    if args.json:
        emit_json_file(args.out / "selection.json")
    else:
        print_selection(result.selection, result.report)
    results_line(
        f"results: {args.out}/ ({len(result.files)} files; selection.md, selection.html, selection.json)",
        json_out=args.json,
    )
    return 0 if result.recommended is not None else 1


def run_select(args: argparse.Namespace) -> int:
    if args.candidates is None and not args.model:
        raise EmbedlabError("no candidates", expected="--candidates FILE and/or --model NAME")
    from embedlab.search.pipeline import parse_retrieval

    return _finish(args, [parse_retrieval(m) for m in args.model or []], candidates_file=args.candidates)


def run_pooling(args: argparse.Namespace) -> int:
    from embedlab.select.run import pooling_candidates

    return _finish(args, list(pooling_candidates(args.model)))

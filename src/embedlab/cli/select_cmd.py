"""``embedlab select`` and its shortcut ``embedlab pooling``."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.search.pipeline import PipelineSpec, parse_retrieval
from embedlab.select.analysis import Constraints
from embedlab.select.run import SelectSpec, pooling_candidates, run_selection


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", "-d", action="append", required=True, help="dataset folder or name (repeatable)")
    p.add_argument("--max-p95-ms", type=float, help="latency budget: worst p95 over the datasets")
    p.add_argument("--max-size-mb", type=float, help="model size budget (weights on disk)")
    p.add_argument("--min-ndcg10", type=float, help="quality floor (mean nDCG@10 over the datasets)")
    p.add_argument("--price-per-hour", type=float, help="machine price; enables cost per 1k queries / 1M docs")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level for ties (default 0.05)")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, default=Path("results/select"))
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--no-cache", action="store_true")
    p.add_argument("--latency-queries", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="compare candidate models and recommend one under constraints",
        description="The accuracy / latency / size / cost trade-off, and a recommendation.",
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
    q = sub.add_parser("pooling", help="compare mean, CLS and max pooling on the same transformer")
    _common(q)
    q.add_argument("--model", "-m", required=True, help="transformer model name or folder")
    q.set_defaults(handler=run_pooling)


def _spec(args: argparse.Namespace, candidates: tuple, price: float | None) -> SelectSpec:
    if not 0 < args.alpha < 1:
        raise EmbedlabError(f"--alpha must be between 0 and 1, got {args.alpha}")
    return SelectSpec(
        datasets=tuple(args.dataset),
        candidates=candidates,
        constraints=Constraints(
            max_p95_ms=args.max_p95_ms,
            max_size_mb=args.max_size_mb,
            min_ndcg10=args.min_ndcg10,
            price_per_hour=price,
            alpha=args.alpha,
        ),
        split=args.split,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        latency_queries=args.latency_queries,
        seed=args.seed,
        show_progress=not args.no_progress,
    )


def _finish(spec: SelectSpec, out: Path) -> int:
    from embedlab.output import check_output_folder
    from embedlab.select.report import print_selection, write_selection

    check_output_folder(out)  # before the work, not after it
    report, selection = run_selection(spec)
    written = write_selection(selection, report, out)
    print_selection(selection, report)
    print(f"results: {out}/ ({len(written)} files; selection.md, selection.html, selection.json)")
    return 0 if selection.recommended is not None else 1


def run_select(args: argparse.Namespace) -> int:
    from embedlab.select.candidates import load_candidates

    specs: list[ModelSpec | PipelineSpec] = []
    price = args.price_per_hour
    if args.candidates is not None:
        specs, machine = load_candidates(args.candidates)
        price = price if price is not None else machine.price_per_hour
    specs += [parse_retrieval(m) for m in args.model or []]
    if not specs:
        raise EmbedlabError("no candidates", expected="--candidates FILE and/or --model NAME")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise EmbedlabError(f"candidate {next(n for n in names if names.count(n) > 1)!r} is listed twice")
    return _finish(_spec(args, tuple(specs), price), args.out)


def run_pooling(args: argparse.Namespace) -> int:
    return _finish(_spec(args, pooling_candidates(args.model), args.price_per_hour), args.out)

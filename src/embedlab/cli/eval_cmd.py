"""``embedlab eval``."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.encoders.spec import parse_model_spec
from embedlab.eval.metrics import DEFAULT_METRICS, MAIN_METRICS, parse_metrics
from embedlab.eval.runner import EvalSpec, run_eval


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="quality, speed and size of models on BEIR-format datasets",
                       description="Evaluate models on datasets: quality (per query and mean), speed, size.")
    p.add_argument("--dataset", "-d", action="append", required=True,
                   help="dataset folder, or a name inside $EMBEDLAB_DATA (repeatable)")
    p.add_argument("--model", "-m", action="append", required=True,
                   help="model: NAME or NAME:key=value,... e.g. all-MiniLM-L6-v2, bm25, "
                        "all-MiniLM-L6-v2:pooling=cls (repeatable)")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument("--metric", action="append", help=f"metric NAME@K (repeatable; default: {' '.join(DEFAULT_METRICS)})")
    p.add_argument("--ignore-identical-ids", action="store_true", help="drop a query's own id from its results")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for JSON, TREC run and reports")
    p.add_argument("--no-cache", action="store_true", help="encode everything, read and write no embedding cache")
    p.add_argument("--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)")
    p.add_argument("--latency-queries", type=int, default=100, help="single queries timed for p50/p95 (default 100)")
    p.add_argument("--compare", type=Path, action="append",
                   help="an MTEB results JSON file to compare every model's scores with (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from embedlab.reports.published import compare_line, read_mteb_file
    from embedlab.reports.results import write_outputs
    from embedlab.reports.table import print_summary

    spec = EvalSpec(
        datasets=tuple(args.dataset),
        models=tuple(parse_model_spec(m) for m in args.model),
        metrics=tuple(parse_metrics(args.metric or DEFAULT_METRICS)),
        split=args.split,
        ignore_identical_ids=args.ignore_identical_ids,
        use_cache=not args.no_cache,
        cache_dir=args.cache_dir,
        latency_queries=args.latency_queries,
        seed=args.seed,
        show_progress=not args.no_progress,
    )
    references = {path: read_mteb_file(path, split=args.split) for path in args.compare or []}  # fail early
    report = run_eval(spec)
    written = write_outputs(report, args.out)
    print_summary(report, main_metrics=MAIN_METRICS)
    for path, reference in references.items():
        print(compare_line(report, reference, path))
    print(f"results: {args.out}/ ({len(written)} files; report.md, report.html, summary.json)")
    return 0 if all(r.ok for r in report.results) else 1


"""``embedlab eval``."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.errors import EmbedlabError
from embedlab.eval.metrics import DEFAULT_METRICS, MAIN_METRICS, parse_metrics


def add_latency_options(p: argparse.ArgumentParser) -> None:
    """How latency is timed: the same options on every command that times models (eval, select)."""
    p.add_argument("--latency-queries", type=int, default=100, help="single queries timed for p50/p95 (default 100)")
    p.add_argument("--repeat", type=int, default=1, help="time latency N times, keep the quietest run (default 1)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before timing latency, wait up to S seconds for a second in which other processes use "
        "<= 25%% of the CPUs (default 0: time at once)",
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="quality, speed and size of models on BEIR-format datasets",
        description="Evaluate models on datasets: quality (per query and mean), speed, size.",
        epilog="Examples:\n  embedlab eval -d scifact -m all-MiniLM-L6-v2 -m bm25\n"
        "  embedlab eval -d scifact --collection scifact-256 --mode dense --mode hybrid",
    )
    p.add_argument(
        "--dataset",
        "-d",
        action="append",
        required=True,
        help="dataset folder, or a name inside $EMBEDLAB_DATA (repeatable)",
    )
    p.add_argument(
        "--model",
        "-m",
        action="append",
        help="model or pipeline: NAME or NAME:key=value,... e.g. all-MiniLM-L6-v2, bm25, "
        "all-MiniLM-L6-v2:pooling=cls; 'bm25 + all-MiniLM-L6-v2' (hybrid, RRF), "
        "'all-MiniLM-L6-v2 >> word-overlap@50' (re-ranked) (repeatable)",
    )
    c = p.add_argument_group("chunk-level evaluation of a collection (instead of --model)")
    c.add_argument(
        "--collection",
        "-c",
        help="a collection built with `embedlab index build --dataset`; a document scores as its best chunk",
    )
    c.add_argument(
        "--mode",
        action="append",
        help="search mode to score: dense, bm25, hybrid (repeatable; "
        "default all three, compared with significance tests)",
    )
    c.add_argument("--chunk-depth", type=int, default=1000, help="chunks retrieved per query (default 1000)")
    c.add_argument("--rrf-k", type=float, default=60.0, help="RRF constant for hybrid (default 60)")
    c.add_argument("--weights", default="1,1", help="hybrid weights DENSE,BM25 (default 1,1)")
    c.add_argument("--rerank", help="re-ranker: a local cross-encoder folder, or word-overlap")
    c.add_argument("--rerank-depth", type=int, default=20, help="first-stage chunks re-ranked (default 20)")
    c.add_argument("--root", type=Path, help="collections folder (default $EMBEDLAB_COLLECTIONS or ./collections)")
    p.add_argument("--split", default="test", help="qrels split (default: test)")
    p.add_argument(
        "--metric", action="append", help=f"metric NAME@K (repeatable; default: {' '.join(DEFAULT_METRICS)})"
    )
    p.add_argument("--ignore-identical-ids", action="store_true", help="drop a query's own id from its results")
    p.add_argument("--out", type=Path, default=Path("results"), help="folder for JSON, TREC run and reports")
    p.add_argument("--no-cache", action="store_true", help="encode everything, read and write no embedding cache")
    p.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    add_latency_options(p)
    p.add_argument(
        "--compare",
        type=Path,
        action="append",
        help="an MTEB results JSON file to compare every model's scores with (repeatable)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and randomization tests")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    p.add_argument(
        "--json",
        action="store_true",
        help="print summary.json to stdout instead of the table (the files are still written; logs go to stderr)",
    )
    p.set_defaults(handler=run)


def emit_json_file(path: Path) -> None:
    """``--json``: the file just written, as the one JSON document on stdout -- the same bytes as the
    file, so scripts and the folder never disagree and there is no second schema to keep in step."""
    import sys

    text = path.read_text(encoding="utf-8")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def results_line(text: str, *, json_out: bool) -> None:
    """Where the results are: stdout for people, stderr under ``--json`` (stdout holds only the JSON)."""
    import sys

    print(text, file=sys.stderr if json_out else sys.stdout)


def run(args: argparse.Namespace) -> int:
    if args.collection is not None:
        if args.model:
            raise EmbedlabError(
                "--model and --collection do not go together",
                hint="a collection is scored with the model it was built with",
            )
        return run_collection(args)
    if not args.model:
        raise EmbedlabError("nothing to evaluate", expected="--model NAME (repeatable) or --collection NAME")
    if args.mode:
        raise EmbedlabError("--mode applies to --collection only")
    from embedlab.api.evaluation import evaluate_all
    from embedlab.output import check_output_folder
    from embedlab.reports.published import compare_line, read_mteb_file
    from embedlab.reports.results import write_outputs
    from embedlab.reports.table import print_summary
    from embedlab.search.pipeline import parse_retrieval

    models = tuple(parse_retrieval(m) for m in args.model)
    metrics = tuple(parse_metrics(args.metric or DEFAULT_METRICS))
    references = {path: read_mteb_file(path, split=args.split) for path in args.compare or []}  # fail early
    check_output_folder(args.out)  # before the work, not after an hour of it
    report = evaluate_all(
        models,
        args.dataset,
        metrics=metrics,
        split=args.split,
        ignore_identical_ids=args.ignore_identical_ids,
        cache=False if args.no_cache else (args.cache_dir or True),
        latency_queries=args.latency_queries,
        latency_repeats=args.repeat,
        latency_wait_quiet_s=args.wait_quiet,
        seed=args.seed,
        show_progress=not args.no_progress,
    ).report
    written = write_outputs(report, args.out)
    if args.json:
        emit_json_file(args.out / "summary.json")
    else:
        print_summary(report, main_metrics=MAIN_METRICS)
    for path, reference in references.items():
        results_line(compare_line(report, reference, path), json_out=args.json)
    results_line(
        f"results: {args.out}/ ({len(written)} files; report.md, report.html, summary.json)", json_out=args.json
    )
    return 0 if all(r.ok for r in report.results) else 1


def run_collection(args: argparse.Namespace) -> int:
    import json

    from embedlab.atomic import atomic_write_text
    from embedlab.cli.index_cmd import parse_weights
    from embedlab.collection.evaluate import evaluate_collection
    from embedlab.collection.search import MAX_K, MODES
    from embedlab.output import check_output_folder, result_set
    from embedlab.reports.results import write_output_files
    from embedlab.reports.table import print_summary
    from embedlab.search.rerank import load_reranker

    if len(args.dataset) != 1:
        raise EmbedlabError("--collection is scored on one dataset", found=f"{len(args.dataset)} datasets")
    modes = tuple(MODES.get(m) for m in (args.mode or ["dense", "bm25", "hybrid"]))
    if not 1 <= args.chunk_depth <= MAX_K:
        raise EmbedlabError("invalid --chunk-depth", found=str(args.chunk_depth), expected=f"1 to {MAX_K}")
    metrics = tuple(parse_metrics(args.metric or DEFAULT_METRICS))
    reranker = load_reranker(args.rerank) if args.rerank else None
    check_output_folder(args.out)
    result = evaluate_collection(
        args.collection,
        args.dataset[0],
        modes=modes,
        metrics=metrics,
        split=args.split,
        root=args.root,
        chunk_depth=args.chunk_depth,
        rrf_k=args.rrf_k,
        weights=parse_weights(args.weights),
        reranker=reranker,
        rerank_depth=args.rerank_depth,
        seed=args.seed,
        show_progress=not args.no_progress,
    )
    comparisons = [vars(c) for c in result.comparisons]
    with result_set(args.out) as stage:  # one set: all of them or, on a failed write, none
        written = write_output_files(result.report, stage)
        atomic_write_text(stage / "comparisons.json", json.dumps(comparisons, indent=2))
    if args.json:
        emit_json_file(args.out / "summary.json")
    else:
        print_summary(result.report, main_metrics=MAIN_METRICS)
    for c in result.comparisons:
        verdict = "significant" if c.p_holm < 0.05 else "not significant"
        results_line(
            f"{c.a} vs {c.b}: {c.metric} {c.mean_a:.4f} vs {c.mean_b:.4f}, diff {c.difference:+.4f} "
            f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}], p={c.p_value:.4f} (Holm {c.p_holm:.4f}, {verdict})",
            json_out=args.json,
        )
    results_line(
        f"results: {args.out}/ ({len(written) + 1} files; report.md, report.html, summary.json, comparisons.json)",
        json_out=args.json,
    )
    return 0

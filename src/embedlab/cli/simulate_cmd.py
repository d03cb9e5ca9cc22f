"""``embedlab simulate``: replay a dataset's queries against a running server, with model clicks."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulated users: replay BEIR queries against a local server, clicks from a click model",
        description="Search a running `embedlab serve` (loopback only) with a BEIR dataset's queries in sessions and "
        "post clicks drawn from a position-based or cascade click model whose attractiveness comes from the qrels; "
        "the events land in feedback.sqlite like real users'. Same seed and rankings: same clicks.",
        epilog=examples(
            "embedlab simulate --stream scifact:1000",
            "embedlab simulate http://127.0.0.1:8080 --stream scifact:1000,npl:500 --seed 3",
            "embedlab simulate --stream scifact:3000 --sessions 1000 --click-model cascade --log sim.jsonl",
        ),
    )
    p.add_argument("url", nargs="?", default="http://127.0.0.1:8000", help="the server (loopback)")
    p.add_argument("--stream", required=True, help="DATASET:QUERIES[,DATASET:QUERIES]: queries replayed in this order")
    p.add_argument("--corpus", help="dataset the collection was built from (default: the first in --stream)")
    p.add_argument("--split", default="test", help="qrels split of the datasets")
    p.add_argument("--sessions", type=int, help="stop after this many sessions (default: the whole stream)")
    p.add_argument("--max-session-queries", type=int, default=3, help="queries per session: uniform 1..this")
    p.add_argument("--concurrency", type=int, default=4, help="sessions running at once")
    p.add_argument("--seed", type=int, default=0, help="seed of the query order, sessions and clicks")
    p.add_argument("--k", type=int, default=10, help="results asked for per search")
    p.add_argument("--mode", choices=("dense", "bm25", "hybrid"), default="dense", help="search mode asked for")
    p.add_argument("--click-model", choices=("pbm", "cascade"), default="pbm", help="position-based or cascade")
    p.add_argument("--eta", type=float, default=1.0, help="pbm examination decay: exam(rank) = 1/rank^eta")
    p.add_argument("--p-relevant", type=float, default=0.9, help="click probability of a relevant result")
    p.add_argument("--p-other", type=float, default=0.05, help="click probability of any other result")
    p.add_argument(
        "--api-key-env", default="EMBEDLAB_API_KEY", help="environment variable holding the server's API key"
    )
    p.add_argument("--session-prefix", help="session ids are PREFIX + number (default sim<seed>-)")
    p.add_argument("--log", type=Path, help="write every search (shown, relevant, clicked) to this JSONL file")
    p.set_defaults(handler=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from embedlab.atomic import atomic_write_text
    from embedlab.monitor.simulate import ClickModel, parse_stream, simulate

    model = ClickModel(kind=args.click_model, eta=args.eta, p_relevant=args.p_relevant, p_other=args.p_other)
    segments = parse_stream(args.stream)
    if args.seed < 0:
        raise EmbedlabError("invalid --seed", found=str(args.seed), expected="0 or more")
    result = simulate(
        args.url,
        segments,
        corpus=args.corpus,
        split=args.split,
        sessions=args.sessions,
        max_session_queries=args.max_session_queries,
        concurrency=args.concurrency,
        seed=args.seed,
        k=args.k,
        mode=args.mode,
        model=model,
        api_key=os.environ.get(args.api_key_env) or None,
        session_prefix=args.session_prefix,
    )
    if args.log is not None:
        atomic_write_text(args.log, "".join(json.dumps(asdict(r)) + "\n" for r in result.records))
    print(json.dumps(result.summary()))
    return 0

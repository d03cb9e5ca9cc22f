"""``embedlab models``: the model names embedlab knows offline, from the registry."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from embedlab.cli.help import examples


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list every model name: kind, dimension, size, licence, where its weights come from, installed",
        description="Every model name embedlab resolves without a network: the registered models and the "
        "transformers carried by packages (names are case-insensitive; a local folder works too).  Nothing is "
        "loaded: installed means the packages are present.",
        epilog=examples("embedlab models", "embedlab models --installed", "embedlab models --json"),
    )
    p.add_argument("--installed", action="store_true", help="only the models whose weights are installed")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=run)


def _mb(size: int | None) -> str:
    return "-" if size is None else f"{size / 1_000_000:.1f}"


def run(args: argparse.Namespace) -> int:
    from embedlab.encoders.catalog import model_rows
    from embedlab.reports.terminal import console, print_table

    rows = [r for r in model_rows() if r.installed or not args.installed]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    out = console()
    print_table(
        "models (dim: vector size; size: installed weights)",
        ["name", "kind", "dim", "MB", "licence", "installed", "weights from"],
        [[r.name, r.kind, r.dim, _mb(r.size_bytes), r.licence, "yes" if r.installed else "no", r.source] for r in rows],
        out=out,
    )
    out.print("transformers: also any local sentence-transformers folder, or a Hugging Face hub id when online")
    return 0

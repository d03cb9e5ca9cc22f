"""Wall time of one ``embedlab search`` from the shell, per mode, against the start-up floor.

What a user waits for when typing one search: a fresh process each time (interpreter start,
imports, opening the collection, loading the model for dense/hybrid, one search, printing).
Each mode runs ``--runs`` times in a subprocess after one unrecorded warm-up run (so the disk
cache is warm, as it is for anyone searching twice); p50/p95 of the wall clock are reported
next to the floor, ``python -c "import embedlab"`` (the interpreter and the package's lazy
``__init__``, nothing else), which no CLI command can beat.  Targets (issue 12): < 1 s BM25,
< 2.5 s dense/hybrid; ``embedlab serve`` is the answer for many queries.

p95 is the nearest-rank 95th percentile (the ceil(0.95 n)-th smallest), which with few runs is
close to the maximum: a conservative figure.

    python benchmarks/bench_cli_search.py --collection lib --root /tmp/coll [--runs 10] [--out FILE.json]

A collection to try it on (six of the shared PDFs, 55 chunks, MiniLM):
    embedlab index build lib /tmp/pdfs --model all-MiniLM-L6-v2 --root /tmp/coll
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODES = ("bm25", "dense", "hybrid")
TARGET_S = {"bm25": 1.0, "dense": 2.5, "hybrid": 2.5}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the ceil(q n)-th smallest value (Hyndman & Fan 1996, definition 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def wall(argv: list[str], *, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-2000:]}")
    return seconds


def measure(argv: list[str], *, runs: int, env: dict[str, str]) -> dict[str, float]:
    wall(argv, env=env)  # warm-up: disk cache, ONNX export cache, .pyc files
    times = [wall(argv, env=env) for _ in range(runs)]
    return {"p50_s": percentile(times, 0.5), "p95_s": percentile(times, 0.95), "min_s": min(times), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", required=True, help="collection name")
    parser.add_argument("--root", required=True, help="collections folder")
    parser.add_argument("--query", default="how do I test research software", help="the query searched")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per mode (after one warm-up)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()

    env = dict(os.environ)
    embedlab = shutil.which("embedlab", path=str(Path(sys.executable).parent)) or "embedlab"
    results: dict[str, object] = {
        "floor_import_embedlab": measure([sys.executable, "-c", "import embedlab"], runs=args.runs, env=env)
    }
    for mode in args.modes.split(","):
        argv = [embedlab, "search", args.collection, args.query, "--mode", mode, "--root", args.root]
        results[mode] = measure(argv, runs=args.runs, env=env)
    floor = results["floor_import_embedlab"]["p50_s"]  # type: ignore[index]
    print(f"{'what':<24} {'p50 s':>7} {'p95 s':>7} {'target':>7}")
    for what, r in results.items():
        target = TARGET_S.get(what)
        mark = "" if target is None else (" ok" if r["p95_s"] < target else " SLOW")  # type: ignore[index]
        print(
            f"{what:<24} {r['p50_s']:7.3f} {r['p95_s']:7.3f} {'' if target is None else f'{target:7.1f}'}{mark}"  # type: ignore[index]
        )
    print(f"(floor: python -c 'import embedlab' p50 {floor:.3f} s; {args.runs} runs per row after a warm-up)")
    if args.out:
        load = os.getloadavg()
        payload = {
            "results": results,
            "collection": args.collection,
            "query": args.query,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": load},
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

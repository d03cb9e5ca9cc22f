"""FAISS HNSW vs Milvus Lite HNSW vs Chroma (embedded) on the same synthetic vectors (issue 16).

The vectors are bench_ann_1m.py's (clustered, unit length, per-dimension scale j^-0.5; its
docstring says why not isotropic noise): 1M x 384 by default, written once to a memory-mapped
``vectors.npy``.  Each backend then runs in its own process (so that its peak resident memory
is its own) through the common index interface (``embedlab.index.build_index``), with each
kind's default build options and its search width tuned at build until recall@10 on a sample of
the indexed vectors reaches 0.95 (the same rule for all three), and reports:

- build seconds (insert + index + tuning), its saved files' bytes (disk), ``memory_bytes`` and
  the process's peak RSS (vectors memory-mapped: the OS pages them in);
- recall@10 against exact search on *held-out* queries from the same distribution (a result
  counts when its exact score reaches the 10th exact score, bench_ann_1m.py's rule);
- p50/p95 of single-query latency (``search_one``, one query at a time, after 20 warm-ups).

    python benchmarks/bench_vector_backends.py                 # 1M rows: run it alone (long)
    python benchmarks/bench_vector_backends.py --rows 20000    # a smoke run

Targets (issue 16): Milvus Lite HNSW recall@10 >= 0.95 at p95 < 10 ms on this CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ann_1m import NOISE, percentiles, synthetic, write_matrix  # a sibling script

KINDS = ("faiss-hnsw", "milvus", "chroma")
WARMUP = 20


def run_backend(kind: str, folder: Path, queries_file: Path, threads: int) -> dict[str, object]:
    """One backend, in this (child) process: build, save, time single queries, score recall."""
    from embedlab.collection.vectors import load_vectors
    from embedlab.eval.measure import peak_rss_bytes
    from embedlab.index import build_index

    if kind in ("faiss-hnsw", "milvus"):  # Milvus Lite searches with FAISS too
        import faiss

        faiss.omp_set_num_threads(threads)
    vectors = load_vectors(folder / "vectors.npy")
    queries = np.load(queries_file)
    exact_scores = np.load(folder / "exact_scores.npy")
    started = time.perf_counter()
    index = build_index(kind, vectors)
    build_s = time.perf_counter() - started
    saved = folder / f"saved-{kind}"
    saved.mkdir()
    info = index.save(saved)
    disk = sum(p.stat().st_size for p in saved.rglob("*") if p.is_file())
    for row in range(min(WARMUP, len(queries))):
        index.search_one(queries[row], 10)
    times, hits = [], 0
    for row in range(len(queries)):
        t = time.perf_counter()
        _, found = index.search_one(queries[row], 10)
        times.append(time.perf_counter() - t)
        scores = np.asarray(vectors[found]) @ queries[row]
        hits += min(10, int((scores >= exact_scores[row, -1] - 1e-5).sum()))
    return {
        "kind": kind,
        "build_seconds": round(build_s, 2),
        "index": info.model_dump(),
        "disk_bytes": disk,
        "memory_bytes": index.memory_bytes,
        "peak_rss_bytes": peak_rss_bytes(),
        "recall_at_10_held_out": round(hits / (10 * len(queries)), 4),
        "single_query": percentiles(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="vectors (default 1,000,000)")
    parser.add_argument("--dim", type=int, default=384, help="dimensions (default 384)")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help=f"backends, comma-separated (default {','.join(KINDS)})"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="results folder")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.child:
        kind, folder, out = args.child
        result = run_backend(kind, Path(folder), Path(folder) / "queries.npy", args.threads)
        Path(out).write_text(json.dumps(result, default=str))
        return

    from embedlab.index.exact import top_k

    results = []
    with tempfile.TemporaryDirectory(prefix="embedlab-backends-") as tmp:
        folder = Path(tmp)
        centres, scale = write_matrix(folder / "vectors.npy", args.rows, args.dim, args.seed)
        queries = synthetic(args.queries, args.dim, np.random.default_rng(args.seed + 1), centres, NOISE * scale)
        np.save(folder / "queries.npy", queries)
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        np.save(folder / "exact_scores.npy", top_k(queries, np.asarray(vectors), 10)[0])
        del vectors
        print(f"generated {args.rows:,} x {args.dim} and the exact top-10 of {args.queries} queries", flush=True)
        path = args.out / f"vector_backends_{args.rows // 1000}k_{time.strftime('%Y%m%d-%H%M')}.json"
        for kind in args.kinds.split(","):
            out = folder / f"{kind}.json"
            child = [sys.executable, __file__, "--threads", str(args.threads), "--child", kind, str(folder), str(out)]
            started = time.perf_counter()
            done = subprocess.run(child, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:  # recorded, and the other backends still run
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                results.append({"kind": kind, "error": f"exit {done.returncode}: {last}"})
                print(f"{kind:>10}: failed ({last})", flush=True)
            else:
                result = json.loads(out.read_text())
                results.append(result)
                latency = result["single_query"]
                print(
                    f"{kind:>10}: build {result['build_seconds']:.1f} s, "
                    f"recall@10 {result['recall_at_10_held_out']:.3f}, "
                    f"p50 {latency['p50_ms']:.2f} ms, p95 {latency['p95_ms']:.2f} ms, "
                    f"disk {result['disk_bytes'] / 1e6:.1f} MB, "
                    f"peak RSS {result['peak_rss_bytes'] / 1e6:.0f} MB ({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
            write_record(path, summary(args, results))  # after each backend: a late failure keeps the others
    print(f"wrote {path}")


def summary(args: argparse.Namespace, results: list[dict[str, object]]) -> dict[str, object]:
    from embedlab.eval.measure import hardware, library_versions

    milvus: Any = next((r for r in results if r["kind"] == "milvus" and "error" not in r), None)
    return {
        "benchmark": "vector_backends",
        "rows": args.rows,
        "dim": args.dim,
        "queries": args.queries,
        "threads": args.threads,
        "data": {"generator": "bench_ann_1m.write_matrix", "noise": NOISE, "seed": args.seed},
        "results": results,
        "target": {"kind": "milvus", "recall_at_10": 0.95, "p95_ms": 10.0},
        "met": None
        if milvus is None
        else bool(milvus["recall_at_10_held_out"] >= 0.95 and milvus["single_query"]["p95_ms"] < 10.0),
        "hardware": hardware(),
        "libraries": library_versions(),
    }


def write_record(path: Path, record: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, indent=2, default=str) + "\n")
    partial.replace(path)


if __name__ == "__main__":
    main()

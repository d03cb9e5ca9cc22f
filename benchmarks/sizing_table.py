"""The README's sizing table for 10M / 100M / 1B passages, derived from measured records (issue 16).

    python benchmarks/sizing_table.py --ray benchmarks/results/ray_encode_STAMP.json \\
        --ann benchmarks/results/ann_1000k_STAMP.json --shrink benchmarks/results/shrink_all-MiniLM-L6-v2_STAMP.json \\
        [--gpu-docs-per-s R] [--node-memory-gib 64] [--node-cores 16] [--qps 1000]

Nothing here is measured: every figure is a projection, printed with the measured figure it comes
from and the assumption that carries it to another size.  The model (all stated in the output):

- **Encoding**: a CPU worker encodes at the measured Ray rate per core (the best actors setting's
  docs/s divided by the cores it used), so a ``--node-cores`` worker does that times its cores;
  workers for a 24-hour re-index = passages / (worker rate x 86,400).  Encoding is embarrassingly
  parallel (Ray Data actors share nothing), so the rate scales linearly until the reader or the
  writer saturates -- an assumption, not a measurement.  A GPU worker is projected only from a
  rate measured on a GPU (``--gpu-docs-per-s``); none was measured here.
- **Index memory**: bytes per vector as measured (float vectors + HNSW graph from the 1M FAISS
  build; int8 and binary+int8-rescore from the shrink record's index sizes), times passages;
  PQ (48 one-byte codes, computed, not measured here).  Nodes = memory / ``--node-memory-gib``.
- **Query nodes for a QPS target**: one HNSW search of a 1M-vector shard took the measured p50 on
  this CPU; a shard of S vectors takes p50 x log(S) / log(1M) (HNSW's logarithmic search); a
  query searches every shard, so CPU-seconds per query = shards x shard time; nodes = max(memory
  nodes, QPS x CPU-seconds per query / node cores).

Writes ``benchmarks/results/sizing_<stamp>.json`` and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

SIZES = {"10M": 10_000_000, "100M": 100_000_000, "1B": 1_000_000_000}
DAY_S = 86_400
PQ_BYTES = 48  # m = 48 sub-quantizers of 8 bits for 384 dimensions (computed: codes only)
GIB = 1024**3


def measured(ray: dict, ann: dict, shrink: dict) -> dict[str, float | str]:
    """The measured inputs, each with where it comes from."""
    best = max((r for r in ray["rows"] if r["engine"] == "ray"), key=lambda r: r["docs_per_s"])
    cores = ray["conditions"]["cpus"]
    per_vector_hnsw = ann["index_file_bytes"] / ann["rows"]
    scifact = shrink["results"]["scifact"]["all"]
    return {
        "ray_docs_per_s": best["docs_per_s"],
        "ray_actors": best["actors"],
        "ray_cores": cores,
        "docs_per_s_per_core": best["docs_per_s"] / cores,
        "hnsw_float_bytes_per_vector": per_vector_hnsw,
        "hnsw_graph_bytes_per_vector": per_vector_hnsw - ann["vectors_bytes"] / ann["rows"],
        "int8_bytes_per_vector": scifact["int8-index"]["index_mb_per_1m"] * 1024**2 / 1e6,
        "binary_bytes_per_vector": scifact["binary-index"]["index_mb_per_1m"] * 1024**2 / 1e6,
        "shard_p50_ms_1m": ann["hnsw_single_query"]["p50_ms"],
        "shard_rows_measured": ann["rows"],
    }


def project(
    m: dict, *, node_memory_gib: float, node_cores: int, qps: float, gpu_docs_per_s: float | None
) -> list[dict]:
    rows = []
    graph = m["hnsw_graph_bytes_per_vector"]
    layouts = {
        "float + HNSW": m["hnsw_float_bytes_per_vector"],
        "int8 + HNSW": m["int8_bytes_per_vector"] + graph,
        "binary (+int8 rescore) + HNSW": m["binary_bytes_per_vector"] + graph,
        "PQ48 (computed) + HNSW": PQ_BYTES + graph,
    }
    for label, n in SIZES.items():
        worker_rate = m["docs_per_s_per_core"] * node_cores
        row: dict = {
            "passages": label,
            "cpu_workers_24h": math.ceil(n / (worker_rate * DAY_S)),
            "gpu_workers_24h": math.ceil(n / (gpu_docs_per_s * DAY_S)) if gpu_docs_per_s else None,
        }
        for name, per_vector in layouts.items():
            total = n * per_vector
            memory_nodes = max(1, math.ceil(total / (node_memory_gib * GIB)))
            shard = n / memory_nodes
            shard_s = m["shard_p50_ms_1m"] / 1000 * math.log(shard) / math.log(m["shard_rows_measured"])
            query_nodes = max(memory_nodes, math.ceil(qps * memory_nodes * shard_s / node_cores))
            row[name] = {"gib": total / GIB, "memory_nodes": memory_nodes, "query_nodes": query_nodes}
        rows.append(row)
    return rows


def markdown(m: dict, rows: list[dict], args: argparse.Namespace) -> str:
    layouts = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    head = "| passages | CPU workers (24 h) | GPU workers (24 h) | " + " | ".join(layouts) + " |"
    lines = [head, "|" + "---|" * (3 + len(layouts))]
    for r in rows:
        gpu = "not measured" if r["gpu_workers_24h"] is None else str(r["gpu_workers_24h"])
        cells = [f"{r[k]['gib']:,.0f} GiB, {r[k]['memory_nodes']} / {r[k]['query_nodes']} nodes" for k in layouts]
        lines.append(f"| {r['passages']} | {r['cpu_workers_24h']:,} | {gpu} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Index cells: memory, then nodes for memory / nodes for {args.qps:g} QPS "
        f"(each node {args.node_memory_gib:g} GiB for the index, {args.node_cores} cores).  "
        f"From: Ray {m['ray_docs_per_s']:.1f} docs/s with "
        f"{m['ray_actors']} actor(s) on {m['ray_cores']} cores ({m['docs_per_s_per_core']:.1f} docs/s per core, "
        f"so {m['docs_per_s_per_core'] * args.node_cores:.0f} per {args.node_cores}-core worker); "
        f"HNSW (M=32) {m['hnsw_float_bytes_per_vector']:.0f} bytes per vector with float vectors, of which "
        f"{m['hnsw_graph_bytes_per_vector']:.0f} graph; int8 {m['int8_bytes_per_vector']:.0f} and binary + int8 "
        f"rescore {m['binary_bytes_per_vector']:.0f} bytes per vector; one 1M-vector HNSW search p50 "
        f"{m['shard_p50_ms_1m']:.2f} ms."
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray", type=Path, required=True, help="a ray_encode_*.json record (full run)")
    parser.add_argument("--ann", type=Path, required=True, help="an ann_1000k_*.json record")
    parser.add_argument("--shrink", type=Path, required=True, help="a shrink_*.json record with SciFact")
    parser.add_argument("--gpu-docs-per-s", type=float, help="a measured GPU worker rate (none measured here)")
    parser.add_argument("--node-memory-gib", type=float, default=64.0, help="index memory per node (default 64)")
    parser.add_argument("--node-cores", type=int, default=16, help="cores per worker / query node (default 16)")
    parser.add_argument("--qps", type=float, default=1000.0, help="query rate to serve (default 1000)")
    args = parser.parse_args()
    records = [json.loads(p.read_text()) for p in (args.ray, args.ann, args.shrink)]
    if records[0].get("limit"):
        parser.error(f"{args.ray} is a smoke run (limit {records[0]['limit']}): give a full run's record")
    m = measured(*records)
    rows = project(
        m,
        node_memory_gib=args.node_memory_gib,
        node_cores=args.node_cores,
        qps=args.qps,
        gpu_docs_per_s=args.gpu_docs_per_s,
    )
    table = markdown(m, rows, args)
    out = Path(__file__).parent / "results" / f"sizing_{time.strftime('%Y%m%d-%H%M')}.json"
    sources = {"ray": str(args.ray), "ann": str(args.ann), "shrink": str(args.shrink)}
    settings = {k: getattr(args, k) for k in ("gpu_docs_per_s", "node_memory_gib", "node_cores", "qps")}
    out.write_text(json.dumps({"measured": m, "sources": sources, "settings": settings, "rows": rows}, indent=2) + "\n")
    print(table)
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

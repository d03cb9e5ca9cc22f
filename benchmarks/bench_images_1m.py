"""A 1M-image catalogue (issue 17): the image towers' measured encode cost, the index at 1M
vectors of the served model's dimension, and what that projects to.

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_images_1m.py \\
        --tower efficientnet-lite0 --tower vit-s14-focus [--tower models/lite0-int8/int8-static] \\
        [--dim-from models/emoji-aligned] [--rows 1000000] [--price-per-hour 0.50]

1. **Encode cost**, per tower, on the emoji corpus images (real PNG files, decoded and
   preprocessed as ``index build --images`` does, no cache): images/s in the tower's batches over
   ``--encode-images`` images, and single query images (file bytes -> vector, what ``search
   --image`` and ``POST /v1/search/image`` do) p50/p95 over ``--query-images``.
2. **The index**: :func:`bench_ann_1m.measure` at ``--rows`` x dim, dim = the served model's
   output (``--dim-from``, e.g. the aligned two-tower folder; else the first tower's): FAISS HNSW
   through the collection's own code, recall@10 against exact search on held-out queries, p50/p95,
   the index file and peak memory.  The vectors are synthetic (clustered, decaying spectrum; that
   script's docstring says why and what they are not): no 1M-image set exists here.
3. **Projections** (stated as such, from the figures above, :mod:`embedlab.select.analysis`'s
   formulas): per tower, the cost of 1,000 queries answered one after another (query encode mean
   + HNSW search mean) and of indexing 1M images (encode at the measured rate, plus the measured
   1M build), at ``--price-per-hour``; the hours a 1M-image index takes on this machine.

Writes ``--out``/images_1m_<stamp>.json and prints a Markdown table.  Run it alone (~15-20 min at
1M rows on 2 cores, most of it the HNSW build).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench_ann_1m import measure, percentiles
from embedlab.data.beir import load_dataset
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.images import encode_image_query
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec
from embedlab.eval.measure import hardware, library_versions
from embedlab.select.analysis import cost_per_1k_queries, cost_per_1m_docs


def encode_cost(model: str, images: list[Path], queries: list[Path]) -> dict[str, object]:
    """Images/s in batches (uncached) and single-image query latency, for one tower."""
    encoder = load_encoder(ModelSpec(model=model))
    encoder.encode_images(images[:8], role="document", cache=None, stats=EncodeStats())  # warm-up
    started = time.perf_counter()
    encoder.encode_images(images, role="document", cache=None, stats=EncodeStats())
    seconds = time.perf_counter() - started
    times = []
    for path in queries:
        data = path.read_bytes()
        t = time.perf_counter()
        encode_image_query(encoder, data, where=path)
        times.append(time.perf_counter() - t)
    size = encoder.size_info()
    return {
        "model": model,
        "name": encoder.fingerprint.model,
        "precision": encoder.fingerprint.precision,
        "dim": encoder.dim,
        "parameters": size.get("parameters"),
        "weights_bytes": size.get("weights_bytes"),
        "batch_size": encoder.batch_size,
        "images": len(images),
        "images_per_second": round(len(images) / seconds, 2),
        "query_image": percentiles(times),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tower", action="append", help="image model (repeatable; default efficientnet-lite0)")
    p.add_argument("--dim-from", help="the served model whose dimension the index has (default: the first tower)")
    p.add_argument("--dataset", default="emoji/image2image", help="where the real images come from")
    p.add_argument("--encode-images", type=int, default=256, help="corpus images encoded in batches per tower")
    p.add_argument("--query-images", type=int, default=50, help="single query images timed per tower")
    p.add_argument("--rows", type=int, default=1_000_000, help="vectors in the index (default 1M)")
    p.add_argument("--queries", type=int, default=1000, help="held-out index queries (recall, latency)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--price-per-hour", type=float, default=0.50, help="machine price, USD (default 0.50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()
    towers = args.tower or ["efficientnet-lite0"]
    dataset = load_dataset(args.dataset)
    files = [Path(d.image) for d in dataset.iter_documents() if d.image is not None]
    query_files = sorted(dataset.query_images.values())  # the other style: images no tower has seen here
    rng = np.random.default_rng(args.seed)
    images = [files[i] for i in rng.permutation(len(files))[: args.encode_images]]
    queries = (query_files or files)[: args.query_images]
    costs = [encode_cost(model, images, queries) for model in towers]
    for c in costs:
        print(f"{c['name']}: {c['images_per_second']} images/s, query image {c['query_image']}", flush=True)
    dim = load_encoder(ModelSpec(model=args.dim_from)).dim if args.dim_from else int(str(costs[0]["dim"]))
    index = measure(
        rows=args.rows, dim=dim, queries=args.queries, exact_queries=20, threads=args.threads, seed=args.seed
    )
    search_ms = index["hnsw_single_query"]["mean_ms"]
    price = args.price_per_hour
    rows = []
    for c in costs:
        rate = float(c["images_per_second"])  # type: ignore[arg-type]
        query_ms = float(c["query_image"]["mean_ms"]) + search_ms  # type: ignore[index]
        encode_hours = args.rows / rate / 3600
        rows.append(
            {
                **c,
                "projected": {
                    "query_ms_mean": round(query_ms, 2),
                    "cost_per_1k_queries_usd": round(cost_per_1k_queries(query_ms, price), 5),
                    "index_hours_for_rows": round(encode_hours + index["build_seconds"] / 3600, 2),
                    "cost_per_1m_images_indexed_usd": round(
                        cost_per_1m_docs(rate, price) + index["build_seconds"] / 3600 * price * 1e6 / args.rows, 3
                    ),
                },
            }
        )
    record = {
        "benchmark": "images_1m",
        "dataset": args.dataset,
        "dim": dim,
        "dim_from": args.dim_from or towers[0],
        "price_per_hour_usd": price,
        "towers": rows,
        "index": index,
        "command": " ".join(sys.argv),
        "hardware": hardware(),
        "libraries": library_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"images_{args.rows // 1000}k_{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(
        f"\nindex: {args.rows:,} x {dim}, HNSW {index['index']['params']}, "
        f"recall@10 {index['hnsw_recall_at_10_held_out']}"
        f", search p50 {index['hnsw_single_query']['p50_ms']} ms / p95 {index['hnsw_single_query']['p95_ms']} ms, "
        f"build {index['build_seconds']} s, index file {index['index_file_bytes'] / 1e9:.2f} GB, "
        f"peak RSS {index['peak_rss_bytes'] / 1e9:.2f} GB\n"
    )
    print("| tower | images/s | query image p50 / p95 ms | $ / 1k queries | hours to index 1M | $ / 1M images |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        q, proj = r["query_image"], r["projected"]
        print(
            f"| {r['name']} ({r['precision']}) | {r['images_per_second']} | {q['p50_ms']} / {q['p95_ms']} | "
            f"{proj['cost_per_1k_queries_usd']} | {proj['index_hours_for_rows']} | "
            f"{proj['cost_per_1m_images_indexed_usd']} |"
        )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Ray encoding of a BEIR corpus against the single-process path (issue 16, benchmark a).

For each engine setting -- ``local`` (one process) and ``ray`` with each ``--actors`` count (an
in-process Ray started by the run, actors with cores / actors threads) -- the corpus is encoded from
scratch (no embedding cache, a fresh output folder) through ``embedlab.distributed.run.encode_corpus``,
the library call behind ``embedlab encode``.  Reported per setting:

- ``seconds``: the engine's time (Ray start, actor start and model load per actor, encoding, shard
  writes) and ``wall_seconds`` (also the corpus read and the driver's model load);
- ``docs_per_s`` = documents / seconds, and ``overhead`` = seconds / local seconds;
- ``max_abs_diff`` against the local vectors (the issue asks for <= 1e-6) and the same ids in order;
- NDCG@10 of exact search with the shards' vectors (full corpus only; the published all-MiniLM-L6-v2
  SciFact figure is 0.64508), ties by score desc then id asc as everywhere in embedlab.

Full run (alone on the machine, about 10 minutes on 2 cores):

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_ray_encode.py

Smoke run (a slice of the corpus; NDCG is not computed on a slice):

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_ray_encode.py --limit 300

Writes ``benchmarks/results/ray_encode_<stamp>.json`` with every figure and the conditions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.data.beir import Dataset, load_dataset
from embedlab.distributed.run import EncodeSpec, encode_corpus
from embedlab.distributed.shards import read_vectors
from embedlab.encoders.registry import load_encoder
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.eval.metrics import ndcg

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact", help="BEIR dataset folder or name (default scifact)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model spec (default all-MiniLM-L6-v2)")
    parser.add_argument("--actors", default="1,2", help="Ray actor counts to run (default 1,2)")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per batch (default 32)")
    parser.add_argument("--shard-rows", type=int, default=1000, help="documents per shard (default 1000)")
    parser.add_argument("--limit", type=int, help="encode only the first N documents (smoke run; no NDCG)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    work = Path(tempfile.mkdtemp(prefix="bench-ray-encode-"))
    try:
        corpus = dataset.corpus_path
        if args.limit:
            corpus = work / "corpus.jsonl"
            opener = gzip.open if dataset.corpus_path.name.endswith(".gz") else open
            with opener(dataset.corpus_path, "rb") as src, corpus.open("wb") as dst:
                for i, line in enumerate(src):
                    if i >= args.limit:
                        break
                    dst.write(line)
        model = parse_model_spec(args.model).model_copy(update={"batch_size": args.batch_size})
        settings: list[tuple[str, int]] = [("local", 1)] + [("ray", int(n)) for n in args.actors.split(",")]
        rows: list[dict[str, Any]] = []
        reference: np.ndarray | None = None
        ref_ids: list[str] = []
        for engine, actors in settings:
            out = work / f"{engine}-{actors}"
            began = time.perf_counter()
            result = encode_corpus(
                EncodeSpec(
                    model=model,
                    corpus=str(corpus),
                    out=out,
                    engine="ray" if engine == "ray" else "local",
                    actors=actors,
                    shard_rows=args.shard_rows,
                    use_cache=False,
                )
            )
            wall = time.perf_counter() - began
            ids, vectors = read_vectors(out)
            if reference is None:
                reference, ref_ids = vectors, ids
            row: dict[str, Any] = {
                "engine": engine,
                "actors": actors,
                "documents": result.documents,
                "shards": result.shards,
                "seconds": round(result.seconds, 3),
                "wall_seconds": round(wall, 3),
                "docs_per_s": round(result.documents / result.seconds, 2),
                "max_abs_diff": float(np.max(np.abs(vectors - reference))) if ids == ref_ids else None,
                "same_ids": ids == ref_ids,
            }
            if not args.limit:
                row["ndcg@10"] = round(_ndcg10(dataset, model, ids, vectors), 5)
            rows.append(row)
            print(json.dumps(row))
        local_seconds = float(rows[0]["seconds"])
        for row in rows:
            row["overhead"] = round(float(row["seconds"]) / local_seconds, 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "benchmark": "ray_encode",
        "dataset": dataset.name,
        "dataset_sha256": dataset.checksum,
        "model": model.name,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "shard_rows": args.shard_rows,
        "rows": rows,
        "conditions": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "ray": _version("ray"),
            "cache": "off (every setting encodes from scratch)",
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M")
    target = args.out / f"ray_encode_{'smoke_' if args.limit else ''}{stamp}.json"
    target.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {target}")


def _ndcg10(dataset: Dataset, model: ModelSpec, ids: list[str], vectors: np.ndarray) -> float:
    encoder = load_encoder(model)
    query_ids = sorted(dataset.queries)
    queries = encoder.encode([dataset.queries[q] for q in query_ids], role="query")
    order_ids = np.array(ids)
    total = 0.0
    for row, query in enumerate(query_ids):
        scores = vectors @ queries[row]
        top = np.lexsort((order_ids, -scores))[:10]  # score desc, then id asc
        total += ndcg([ids[i] for i in top], dict(dataset.qrels.judgments[query]), 10)
    return total / len(query_ids)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()

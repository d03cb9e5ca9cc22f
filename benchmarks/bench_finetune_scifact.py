"""The default ``embedlab finetune`` recipe on SciFact: train split -> test split.

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_finetune_scifact.py [--out /tmp/scifact-ft]

equivalent to

    embedlab finetune --base all-MiniLM-L6-v2 --train scifact --test scifact --out /tmp/scifact-ft --drop-leaked

(SciFact's official train and test splits share 72 near-duplicate claims, 2 of them verbatim;
the leakage check stops a run that would train on them, and ``--drop-leaked`` trains without
them.)  Writes ``benchmarks/results/finetune_scifact_<stamp>.json``: base vs fine-tuned
NDCG@10 / MRR@10 / Recall@100 with intervals and p-values, latency, sizes, training curve,
mining audit, wall time, the conditions, and memory: peak RSS per phase (the run's own
``finetune.json``, :mod:`embedlab.train.memory`) and in total (``ru_maxrss`` of the CLI process,
run as a child: what ``/usr/bin/time -v`` reports).  Run it alone on the machine: it takes most
of an hour on a 2-core CPU.

``--limit N`` (smoke runs): N train and N test queries of the dataset, their positives and a
seeded sample of 4N other passages, written as a BEIR folder and used for both; same recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REFERENCE = {  # the figures (H200, plain sentence-transformers MNRL, all SciFact train pairs)
    "base_ndcg_at_10": 0.6451,
    "mnrl_b32_1_epoch": 0.6650,
    "mnrl_b32_3_epochs": 0.6824,
    "mnrl_b64_10_epochs": 0.7018,
    "mnrl_b32_1_hard_negative_ranks_10_30_3_epochs": 0.6945,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="scifact", help="BEIR dataset name or folder (default scifact)")
    parser.add_argument("--base", default="all-MiniLM-L6-v2", help="base model (default all-MiniLM-L6-v2)")
    parser.add_argument(
        "--out", type=Path, default=Path(f"/tmp/scifact-ft-{time.strftime('%Y%m%d-%H%M%S')}"), help="model folder"
    )
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default $EMBEDLAB_CACHE)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="results folder")
    parser.add_argument("--limit", type=int, help="smoke run on N train and N test queries (default: all)")
    parser.add_argument("--epochs", type=int, help="passed to finetune (default: the recipe's 4)")
    parser.add_argument("--max-memory", type=float, help="passed to finetune as --max-memory GB (default: none)")
    parser.add_argument(
        "--no-gradient-checkpointing", action="store_true", help="passed to finetune (the memory comparison)"
    )
    args = parser.parse_args()

    dataset = args.dataset
    scratch = tempfile.TemporaryDirectory(prefix="bench-ft-")
    if args.limit:
        dataset = str(_slice(args.dataset, args.limit, Path(scratch.name)))
    command = [
        str(Path(sys.executable).parent / "embedlab"),
        "finetune",
        "--base",
        args.base,
        "--train",
        dataset,
        "--test",
        dataset,
        "--out",
        str(args.out),
        "--drop-leaked",
        "--no-progress",
        *(["--cache-dir", str(args.cache_dir)] if args.cache_dir else []),
        *(["--epochs", str(args.epochs)] if args.epochs else []),
        *(["--max-memory", str(args.max_memory)] if args.max_memory else []),
        *(["--no-gradient-checkpointing"] if args.no_gradient_checkpointing else []),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, check=False)
    wall = time.perf_counter() - started
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    if done.returncode not in (0, 1):
        print(f"finetune failed (exit {done.returncode}): {' '.join(command)}", file=sys.stderr)
        return done.returncode
    result = json.loads((args.out / "finetune.json").read_text())
    verdict = result["verdict"]
    figures = {
        m["metric"]: {"base": m["base"], "fine_tuned": m["fine_tuned"], "delta": m["delta"], "p_value": m["p_value"]}
        for m in verdict["metrics"]
    }
    payload = {
        "benchmark": "finetune default recipe, SciFact train -> test"
        + (f" (smoke: --limit {args.limit})" if args.limit else ""),
        "command": " ".join(["embedlab", *command[1:]]),
        "wall_seconds": wall,
        "seconds": result["seconds"],
        "figures": figures,
        "improved": verdict["improved"],
        "reason": verdict["reason"],
        "latency": {"base": verdict["base"]["latency"], "fine_tuned": verdict["fine_tuned"]["latency"]},
        "latency_comparison": verdict.get("latency_comparison"),
        "size": {"base": verdict["base"]["size"], "fine_tuned": verdict["fine_tuned"]["size"]},
        "memory": {
            "peak_rss_bytes_total": child_peak,
            "how_total": "getrusage(RUSAGE_CHILDREN).ru_maxrss of the finetune process (= /usr/bin/time -v)",
            "per_phase": result.get("memory"),
        },
        "training": {k: result["training"][k] for k in ("curve", "best_epoch", "steps", "seconds", "conditions")},
        "mining": result["mining"],
        "leakage": result["leakage"].get("counts"),
        "data": result["data"],
        "spec": result["spec"],
        "environment": result["environment"],
        "reference_h200_sentence_transformers": REFERENCE,
        "model_folder": str(args.out),
    }
    from embedlab.atomic import atomic_write_text

    name = "finetune_scifact_smoke" if args.limit else "finetune_scifact"
    target = args.results / f"{name}_{time.strftime('%Y%m%d-%H%M')}.json"
    atomic_write_text(target, json.dumps(payload, indent=2, default=str) + "\n")
    print(verdict["reason"])
    print(f"peak RSS {child_peak / 1024**3:.2f} GB; wall time {wall / 60:.1f} min; results: {target}")
    scratch.cleanup()
    return 0


def _slice(name: str, limit: int, folder: Path) -> Path:
    """A BEIR folder with ``limit`` train and test queries, their positives and 4 x limit others."""
    from embedlab.data.beir import load_dataset

    train, test = load_dataset(name, split="train"), load_dataset(name, split="test")
    rng = random.Random(0)
    rows: dict[str, list[tuple[str, str, int]]] = {}
    keep: set[str] = set()
    for split, data in (("train", train), ("test", test)):
        chosen = rng.sample(sorted(data.qrels.judgments), min(limit, len(data.qrels.judgments)))
        rows[split] = [(q, d, g) for q in chosen for d, g in data.qrels.judgments[q].items()]
        keep |= {d for _q, d, _g in rows[split]}
    docs = {d.id: {"title": d.title, "text": d.text} for d in test.iter_documents()}
    others = rng.sample(sorted(set(docs) - keep), min(4 * limit, len(docs) - len(keep)))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for doc_id in sorted(keep | set(others)):
            out.write(json.dumps({"_id": doc_id, **docs[doc_id]}) + "\n")
    queries = {**train.queries, **test.queries}
    with (folder / "queries.jsonl").open("w") as out:
        for q in sorted({q for split in rows.values() for q, _d, _g in split}):
            out.write(json.dumps({"_id": q, "text": queries[q]}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    for split, judged in rows.items():
        lines = "".join(f"{q}\t{d}\t{g}\n" for q, d, g in judged)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines)
    return folder


if __name__ == "__main__":
    sys.exit(main())

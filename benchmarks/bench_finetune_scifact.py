"""The default ``embedlab finetune`` recipe on SciFact: train split -> test split.

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_finetune_scifact.py [--out /tmp/scifact-ft]

equivalent to

    embedlab finetune --base all-MiniLM-L6-v2 --train scifact --test scifact --out /tmp/scifact-ft --drop-leaked

(SciFact's official train and test splits share 72 near-duplicate claims, 2 of them verbatim;
the leakage check stops a run that would train on them, and ``--drop-leaked`` trains without
them.)  Writes ``benchmarks/results/finetune_scifact_<stamp>.json``: base vs fine-tuned
NDCG@10 / MRR@10 / Recall@100 with intervals and p-values, latency, sizes, training curve,
mining audit, wall time and the conditions.  Run it alone on the machine: it takes most of an
hour on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
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
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--base", default="all-MiniLM-L6-v2")
    parser.add_argument("--out", type=Path, default=Path(f"/tmp/scifact-ft-{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default $EMBEDLAB_CACHE)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from embedlab.atomic import atomic_write_text
    from embedlab.train.run import FinetuneSpec, run_finetune

    spec = FinetuneSpec(
        base=args.base, train=args.dataset, test=args.dataset, out=args.out, drop_leaked=True, cache_dir=args.cache_dir
    )
    started = time.perf_counter()
    result = run_finetune(spec)
    wall = time.perf_counter() - started
    verdict = result.verdict.as_dict()
    figures = {
        m["metric"]: {"base": m["base"], "fine_tuned": m["fine_tuned"], "delta": m["delta"], "p_value": m["p_value"]}
        for m in verdict["metrics"]
    }  # type: ignore[union-attr]
    payload = {
        "benchmark": "finetune default recipe, SciFact train -> test",
        "command": f"embedlab finetune --base {args.base} --train {args.dataset} --test {args.dataset} "
        f"--out {args.out} --drop-leaked",
        "wall_seconds": wall,
        "seconds": result.seconds,
        "figures": figures,
        "improved": result.verdict.improved,
        "reason": result.verdict.reason(),
        "latency": {"base": result.verdict.base.latency, "fine_tuned": result.verdict.tuned.latency},
        "size": {"base": result.verdict.base.size, "fine_tuned": result.verdict.tuned.size},
        "training": {
            "curve": [p.__dict__ for p in result.training.curve],
            "best_epoch": result.training.best_epoch,
            "steps": result.training.steps,
            "seconds": result.training.seconds,
            "conditions": result.training.conditions,
        },
        "mining": result.audit.as_dict(),
        "leakage": result.leakage.counts(),
        "data": result.data,
        "spec": spec.as_dict(),
        "environment": result.environment,
        "reference_h200_sentence_transformers": REFERENCE,
        "model_folder": str(args.out),
    }
    target = args.results / f"finetune_scifact_{time.strftime('%Y%m%d-%H%M')}.json"
    atomic_write_text(target, json.dumps(payload, indent=2, default=str) + "\n")
    print(result.verdict.reason())
    print(f"wall time {wall / 60:.1f} min; results: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""int8 image towers on emoji/image2image (issue 17): what ``embedlab shrink`` keeps and gains.

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_shrink_images.py \\
        --job vit-s14-focus=int8-dynamic,int8-static --job efficientnet-lite0=int8-static \\
        [--job models/emoji-aligned=int8-static]

Each job is ``embedlab shrink --model MODEL -d emoji/image2image --variants VARIANTS`` (the library
call the CLI makes: int8 ONNX towers calibrated on 200 corpus images, validated against fp32), then
one ``embedlab eval`` of the original and its variants with the image metrics: Recall@1,
Recall@10, NDCG@10, MRR@10 (95% bootstrap intervals over the 373 test queries), each variant
against its original (paired randomization test, Holm within the job), corpus images/s (decode +
preprocess + encode, batches of 32, through a fresh embedding cache) and single image queries
p50/p95 (file bytes -> top 10, uncached).  Writes ``benchmarks/results/shrink_images_<stamp>.json``
and prints a Markdown table.  Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embedlab.encoders.spec import ModelSpec
from embedlab.eval.compare import compare_to_reference, mean_interval
from embedlab.eval.measure import hardware, library_versions
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalSpec, run_eval
from embedlab.optimize.shrink import ORIGINAL, ShrinkSpec, run_shrink

METRICS = ("recall@1", "recall@10", "ndcg@10", "mrr@10")
COMPARED = ("recall_at_1", "ndcg_at_10")


def measured_row(result, seed: int) -> dict:
    """One evaluated model's record: the image metrics (mean, 95% bootstrap interval), corpus
    images/s, single-query latency and whether the machine was busy while it was timed."""
    measured = result.measured()
    scores = {}
    for key in ("recall_at_1", "recall_at_10", "ndcg_at_10", "mrr_at_10"):
        ci = mean_interval(result.evaluation.per_query[key], seed=seed)
        scores[key] = {"mean": round(ci.mean, 4), "ci": [round(ci.low, 4), round(ci.high, 4)]}
    return {
        "scores": scores,
        "images_per_second": measured["corpus"].get("docs_per_second"),
        "latency": {k: measured["latency"].get(k) for k in ("p50_ms", "p95_ms", "samples")},
        "busy": (measured["conditions"].get("machine") or {}).get("busy_because"),
    }


def job(model: str, variants: tuple[str, ...], *, dataset: str, work: Path, latency_queries: int, seed: int) -> dict:
    label = Path(model).name
    shrunk = run_shrink(
        ShrinkSpec(
            model=ModelSpec(model=model),
            datasets=(dataset,),
            out=work / label,
            variants=variants,
            cache_dir=work / "cache",
            latency_queries=2,  # its own table is not the record; the eval below times them
            seed=seed,
        )
    )
    names = [ORIGINAL, *variants]
    specs = [ModelSpec(model=model, label=ORIGINAL), *(ModelSpec(model=shrunk.artefacts[v], label=v) for v in variants)]
    report = run_eval(
        EvalSpec(
            datasets=(dataset,),
            models=tuple(specs),
            metrics=tuple(parse_metrics(list(METRICS))),
            cache_dir=work / "cache",
            latency_queries=latency_queries,
            seed=seed,
        )
    )
    results = {r.model: r for r in report.results if r.ok and r.evaluation is not None}
    failed = {r.model: r.error for r in report.results if not r.ok}
    versus = {
        key: {c.a: c for c in compare_to_reference(
            {n: results[n].evaluation.per_query[key] for n in names if n in results}, ORIGINAL, metric=key, seed=seed
        )}
        for key in COMPARED
    }  # fmt: skip
    rows = []
    for name in names:
        r = results.get(name)
        if r is None:
            rows.append({"variant": name, "error": failed.get(name, "failed")})
            continue
        row: dict = {
            "variant": name,
            "folder": None if name == ORIGINAL else shrunk.artefacts[name],
            "made_with": None if name == ORIGINAL else json.loads((work / label / "shrink.json").read_text())[
                "variants"][name].get("made_with"),
            **measured_row(r, seed),
        }  # fmt: skip
        for key in COMPARED:
            c = versus[key].get(name)
            if c is not None:
                base = results[ORIGINAL].scores[key]
                row[f"versus_original_{key}"] = {
                    "difference": round(c.difference, 4),
                    "ci": [round(c.ci_low, 4), round(c.ci_high, 4)],
                    "p_holm": round(c.p_holm, 4),
                    "retained": round(r.scores[key] / base, 4) if base else None,
                }
        rows.append(row)
    return {"model": model, "variants": list(variants), "rows": rows}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", action="append", required=True, help="MODEL=VARIANT[,VARIANT] (repeatable)")
    p.add_argument("--dataset", default="emoji/image2image")
    p.add_argument("--latency-queries", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args()
    started = time.time()
    jobs = []
    with tempfile.TemporaryDirectory(prefix="shrink-images-") as tmp:
        for text in args.job:
            model, _, variants = text.rpartition("=")
            jobs.append(
                job(
                    model,
                    tuple(v.strip() for v in variants.split(",") if v.strip()),
                    dataset=args.dataset,
                    work=Path(tmp),
                    latency_queries=args.latency_queries,
                    seed=args.seed,
                )
            )
    record = {
        "benchmark": "shrink_images",
        "dataset": args.dataset,
        "jobs": jobs,
        "seconds": round(time.time() - started, 1),
        "command": " ".join(sys.argv),
        "hardware": hardware(),
        "libraries": library_versions(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / f"shrink_images_{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print("| model | variant | Recall@1 | NDCG@10 | vs original R@1 (p Holm) | images/s | query p50 / p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for j in jobs:
        for row in j["rows"]:
            if "error" in row:
                print(f"| {Path(j['model']).name} | {row['variant']} | failed: {row['error']} | | | | |")
                continue
            s, versus = row["scores"], row.get("versus_original_recall_at_1")
            vs = "" if versus is None else f"{versus['difference']:+.4f} ({versus['p_holm']:.4f})"
            print(
                f"| {Path(j['model']).name} | {row['variant']} | "
                f"{s['recall_at_1']['mean']:.4f} {s['recall_at_1']['ci']} "
                f"| {s['ndcg_at_10']['mean']:.4f} | {vs} | {row['images_per_second']:.1f} | "
                f"{row['latency']['p50_ms']:.1f} / {row['latency']['p95_ms']:.1f} |"
            )
    print(f"-> {out} ({record['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

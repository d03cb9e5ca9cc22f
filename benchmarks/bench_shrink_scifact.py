"""``embedlab shrink`` on SciFact and NPL: the issue's "Done when" figures, each with its target.

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_shrink_scifact.py \\
        [--model all-MiniLM-L6-v2 | --model models/scifact-ft] [-d scifact -d npl] [--limit 500]

equivalent, per dataset, to

    embedlab shrink --model all-MiniLM-L6-v2 -d scifact --out OUT/scifact \\
        --variants int8-dynamic,int8-static,fp16,static,student,int8-index,binary-index,pca-192 \\
        [--student-epochs 1 --student-max-passages 4000]

Figures (targets from the issue): corpus docs/s of int8-dynamic / the fp32 ONNX path (>= 1.4)
with nDCG@10 within 0.005 of fp32; retained nDCG@10 of the int8 index (>= 0.99) and of binary +
rescoring (>= 0.95, with the rescore depth used); the distilled 3-layer student: docs/s >= 1.8x
its teacher's and retained nDCG@10 >= 0.90 (trained on the corpus, no labels); the static
model2vec distillation: docs/s >= 100x the teacher's, its retained fraction reported.  The docs/s
of the comparison is the eval's: corpus documents / the time to index them through embedlab
(cache lookups and writes included: fair between transformers, whose model time dominates, but
about 40% of a static model's time).  So the static model's speed-up is also given on the model
calls alone (``model_only``: the original and the static model each encode the whole corpus
once more, no cache).  A fresh
embedding cache under ``--out``, so every docs/s is measured in this run.  ``--limit N`` keeps
the first N documents and the queries judged on them (a smoke run; the figures then say so).  Writes
``benchmarks/results/shrink_<model>_<stamp>.json``.  Run it alone on the machine.
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
# both cores for every variant, the tokenizer's included: a static model is bound by its tokenizer
# (SciFact, model calls alone: 2,100 docs/s on one tokenizer thread, 3,170 on two)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

VARIANTS = "int8-dynamic,int8-static,fp16,static,student,int8-index,binary-index,pca-192"
TARGETS = {
    "int8_dynamic_speedup": 1.4,
    "int8_dynamic_ndcg_drop": 0.005,
    "int8_index": 0.99,
    "binary_index": 0.95,
    "student_speedup": 1.8,
    "student_retained": 0.90,
    "static_speedup": 100.0,
}


def sliced(name: str, limit: int, folder: Path) -> str:
    """The first ``limit`` documents of a dataset and the queries judged on them (BEIR layout)."""
    from embedlab.data.beir import load_dataset

    dataset = load_dataset(name)
    folder.mkdir(parents=True)
    kept = set()
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        for _, doc in zip(range(limit), dataset.iter_documents(), strict=False):
            kept.add(doc.id)
            out.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    rows = [(q, d, g) for q, judged in dataset.qrels.judgments.items() for d, g in judged.items() if d in kept]
    queries = {q for q, _, _ in rows}
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps({"_id": q, "text": dataset.queries[q]}) + "\n" for q in sorted(queries))
    (folder / "qrels").mkdir()
    lines = "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines, encoding="utf-8")
    return str(folder)


def figures(selection, report) -> dict[str, object]:
    cells = {(c.model, c.dataset): c for c in selection.cells}
    out: dict[str, object] = {}
    for dataset in report.datasets:
        base = cells[("original", dataset)]
        row: dict[str, object] = {}
        dyn = cells.get(("int8-dynamic", dataset))
        if dyn is not None and base.docs_per_s and dyn.docs_per_s:
            speedup = dyn.docs_per_s / base.docs_per_s
            drop = base.quality["ndcg_at_10"].mean - dyn.quality["ndcg_at_10"].mean
            row["int8_dynamic"] = {
                "docs_per_s": dyn.docs_per_s,
                "fp32_docs_per_s": base.docs_per_s,
                "speedup": speedup,
                "ndcg_drop": drop,
                "meets": speedup >= TARGETS["int8_dynamic_speedup"] and drop <= TARGETS["int8_dynamic_ndcg_drop"],
            }
        for name, key in (("int8-index", "int8_index"), ("binary-index", "binary_index")):
            cell = cells.get((name, dataset))
            if cell is not None and cell.retained is not None:
                row[key] = {
                    "retained": cell.retained,
                    "target": TARGETS[key],
                    "short_by": max(0.0, TARGETS[key] - cell.retained),
                    "index_bytes_per_vector": cell.index_bytes_per_vector,
                }
        row.update(distilled(cells, dataset, base))
        for cell in selection.cells:
            if cell.dataset == dataset:
                row.setdefault("all", {})[cell.model] = {  # type: ignore[index]
                    "ndcg_at_10": cell.quality["ndcg_at_10"].mean,
                    "retained": cell.retained,
                    "docs_per_s": cell.docs_per_s,
                    "p95_ms": cell.p95_ms,
                    "size_mb": cell.size_mb,
                    "index_mb_per_1m": cell.index_mb_per_1m,
                }
        out[dataset] = row
    return out


def distilled(cells: dict, dataset: str, base) -> dict[str, object]:
    """The student's and the static model's speed (docs/s over the original's) and retained nDCG@10."""
    row: dict[str, object] = {}
    for name, speed_key, kept_key in (
        ("student", "student_speedup", "student_retained"),
        ("static", "static_speedup", None),
    ):
        cell = cells.get((name, dataset))
        if cell is None or not base.docs_per_s or not cell.docs_per_s:
            continue
        speedup = cell.docs_per_s / base.docs_per_s
        meets = speedup >= TARGETS[speed_key] and (kept_key is None or (cell.retained or 0.0) >= TARGETS[kept_key])
        row[name] = {
            "docs_per_s": cell.docs_per_s,
            "teacher_docs_per_s": base.docs_per_s,
            "speedup": speedup,
            "speedup_target": TARGETS[speed_key],
            "retained": cell.retained,
            "retained_target": TARGETS[kept_key] if kept_key else None,
            "short_by": {
                "speedup": max(0.0, TARGETS[speed_key] - speedup),
                "retained": max(0.0, TARGETS[kept_key] - (cell.retained or 0.0)) if kept_key else None,
            },
            "meets": meets,
        }
    return row


def model_only(original: str, static: str, data: str) -> dict[str, object]:
    """docs/s of the model calls alone (no cache), the original and the static model on the whole
    corpus; the static model at its default batch (1024), the original at 32."""
    from embedlab.data.beir import load_dataset
    from embedlab.encoders.registry import load_encoder
    from embedlab.encoders.spec import parse_model_spec

    texts = [doc.content for doc in load_dataset(data).iter_documents()]
    rates = {}
    for label, spec in (("original", original), ("static", static)):
        encoder = load_encoder(parse_model_spec(spec))
        encoder.encode(texts[:64], role="document")  # warm-up: first-call allocations are not the rate
        started = time.perf_counter()
        encoder.encode(texts, role="document")
        rates[label] = len(texts) / (time.perf_counter() - started)
    speedup = rates["static"] / rates["original"]
    return {
        "original_docs_per_s": rates["original"],
        "static_docs_per_s": rates["static"],
        "speedup": speedup,
        "speedup_target": TARGETS["static_speedup"],
        "meets": speedup >= TARGETS["static_speedup"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("-d", "--dataset", action="append")
    parser.add_argument("--variants", default=VARIANTS)
    parser.add_argument("--limit", type=int, help="first N documents only (smoke run)")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--student-epochs", type=int, default=1, help="student training epochs (default 1)")
    parser.add_argument("--student-max-passages", type=int, default=4000, help="student corpus sample (default 4000)")
    parser.add_argument("--out", type=Path, help="folder for the variants (default: a temporary one)")
    args = parser.parse_args()

    from embedlab.encoders.spec import parse_model_spec
    from embedlab.eval.measure import hardware
    from embedlab.optimize.distill import DistillOptions
    from embedlab.optimize.shrink import ShrinkSpec, run_shrink

    work = Path(tempfile.mkdtemp(prefix="bench-shrink-"))
    out = args.out or work / "variants"
    os.environ["EMBEDLAB_CACHE"] = str(work / "cache")  # every rate measured in this run
    results = {}
    started = time.perf_counter()
    for name in args.dataset or ["scifact", "npl"]:
        data = sliced(name, args.limit, work / "data" / name) if args.limit else name
        result = run_shrink(
            ShrinkSpec(
                model=parse_model_spec(args.model),
                datasets=(data,),
                out=out / Path(name).name,
                variants=tuple(args.variants.split(",")),
                latency_queries=args.latency_queries,
                distill=DistillOptions(
                    student_epochs=args.student_epochs, student_max_passages=args.student_max_passages
                ),
            )
        )
        results.update(figures(result.selection, result.report))
        if "static" in result.artefacts:  # one dataset per run_shrink: its figures are results[that name]
            row = results[next(iter(result.report.datasets))]
            row["static_model_only"] = model_only(args.model, result.artefacts["static"], data)  # type: ignore[index]
        print(json.dumps(results, indent=2, default=str))
    record = {
        "model": args.model,
        "variants": args.variants,
        "limit": args.limit,
        "targets": TARGETS,
        "results": results,
        "seconds": time.perf_counter() - started,
        "hardware": hardware(),
        "conditions": "2 threads (the tokenizers' too), batch 32 (static model: 1024), fresh cache; "
        "binary-index rescores max(10 k, 100) int8 candidates "
        "(k = 100 in eval: 1,000); student: every other layer (1,3,5 of 6), "
        f"{args.student_epochs} epoch(s) of MSE on up to {args.student_max_passages} passages + 1/4 as many "
        "queries, lr 5e-4, batch 32",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = Path(args.model).name + (f"_limit{args.limit}" if args.limit else "")
    target = Path(__file__).parent / "results" / f"shrink_{label}_{stamp}.json"
    target.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"written {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""embedlab eval vs sentence-transformers' InformationRetrievalEvaluator, same model, same run.

Measures wall time of a full evaluation (encode corpus + queries, search, score) for both,
prints the ratio, checks the scores agree, then times a second (warm, cached) embedlab run.

    make bench            # or: python benchmarks/bench_eval_vs_sentence_transformers.py --dataset scifact

Run it alone: anything else on the machine halves these figures.  Model preparation
(loading weights; embedlab's one-time ONNX export) is timed apart from the evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def peer(dataset, model_name: str, batch_size: int, threads: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    from embedlab.encoders.resolve import resolve_model

    torch.set_num_threads(threads)
    started = time.perf_counter()
    model = SentenceTransformer(str(resolve_model(model_name).path), device="cpu")
    load_s = time.perf_counter() - started
    corpus = {d.id: d.content for d in dataset.iter_documents()}
    relevant = {q: {d for d, g in docs.items() if g > 0} for q, docs in dataset.qrels.judgments.items()}
    evaluator = InformationRetrievalEvaluator(
        dataset.queries,
        corpus,
        relevant,
        name="peer",
        batch_size=batch_size,
        show_progress_bar=False,
        mrr_at_k=[10],
        ndcg_at_k=[10],
        accuracy_at_k=[10],
        precision_recall_at_k=[10, 100],
        map_at_k=[100],
    )
    started = time.perf_counter()
    scores = evaluator(model)
    wall = time.perf_counter() - started
    pick = {k.split("_", 2)[-1]: v for k, v in scores.items()}
    return {
        "load_seconds": load_s,
        "wall_seconds": wall,
        "ndcg_at_10": pick["ndcg@10"],
        "mrr_at_10": pick["mrr@10"],
        "recall_at_100": pick["recall@100"],
    }


def ours(dataset_path: str, model_name: str, batch_size: int, threads: int, cache_dir: Path) -> dict:
    from embedlab.encoders.spec import parse_model_spec
    from embedlab.eval.metrics import parse_metrics
    from embedlab.eval.runner import EvalSpec, run_eval

    spec = EvalSpec(
        datasets=(dataset_path,),
        models=(parse_model_spec(f"{model_name}:batch_size={batch_size},threads={threads}"),),
        metrics=tuple(parse_metrics(["ndcg@10", "mrr@10", "recall@100", "map@100", "precision@10"])),
        cache_dir=cache_dir,
    )
    started = time.perf_counter()
    report = run_eval(spec)
    wall = time.perf_counter() - started
    result = report.results[0]
    if not result.ok:
        raise SystemExit(f"embedlab failed: {result.error}")
    m = result.measurements
    return {
        "wall_seconds": wall,
        "load_seconds": m["load_seconds"],
        "corpus_seconds": m["corpus"]["seconds"],
        "docs_per_second": m["corpus"]["docs_per_second"],
        "latency": m["latency"],
        **{k: result.scores[k] for k in ("ndcg_at_10", "mrr_at_10", "recall_at_100")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    from embedlab.data.beir import load_dataset, resolve_dataset
    from embedlab.encoders.resolve import resolve_model
    from embedlab.encoders.transformer import fused_onnx
    from embedlab.eval.measure import hardware, library_versions

    path = str(resolve_dataset(args.dataset))
    dataset = load_dataset(path)
    started = time.perf_counter()
    fused_onnx(resolve_model(args.model))  # one-time model preparation, like a download
    export_s = time.perf_counter() - started

    print(f"peer: sentence-transformers InformationRetrievalEvaluator, {args.model}, {dataset.name} ...", flush=True)
    theirs = peer(dataset, args.model, args.batch_size, args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        print("embedlab eval, cold cache ...", flush=True)
        cold = ours(path, args.model, args.batch_size, args.threads, Path(tmp))
        print("embedlab eval, warm cache ...", flush=True)
        warm = ours(path, args.model, args.batch_size, args.threads, Path(tmp))

    record = {
        "dataset": dataset.name,
        "documents": dataset.doc_count,
        "queries": len(dataset.queries),
        "model": args.model,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "hardware": hardware(),
        "libraries": library_versions(),
        "onnx_export_seconds": export_s,
        "peer": theirs,
        "embedlab_cold": cold,
        "embedlab_warm": warm,
        "ratio_cold_to_peer": cold["wall_seconds"] / theirs["wall_seconds"],
        "ratio_warm_to_cold": warm["wall_seconds"] / cold["wall_seconds"],
        "score_differences": {k: cold[k] - theirs[k] for k in ("ndcg_at_10", "mrr_at_10", "recall_at_100")},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(
        f"\n{dataset.name}, {args.model}, batch {args.batch_size}, {args.threads} threads, "
        f"{record['hardware']['cpu']} ({record['hardware']['cpus']} CPUs), {platform.python_version()}"
    )
    print(f"{'':28}{'wall s':>9}{'ndcg@10':>10}{'mrr@10':>10}{'recall@100':>12}")
    for label, r in (("sentence-transformers (peer)", theirs), ("embedlab cold", cold), ("embedlab warm", warm)):
        print(
            f"{label:28}{r['wall_seconds']:9.1f}{r['ndcg_at_10']:10.5f}{r['mrr_at_10']:10.5f}{r['recall_at_100']:12.5f}"
        )
    print(
        f"ratio embedlab cold / peer: {record['ratio_cold_to_peer']:.3f}   "
        f"warm / cold: {record['ratio_warm_to_cold']:.3f}"
    )
    print(f"score differences (embedlab - peer): {record['score_differences']}")
    print(
        f"one-time ONNX export: {export_s:.1f} s (not in the walls above); "
        f"peer model load {theirs['load_seconds']:.1f} s"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"eval_vs_st_{dataset.name}_{time.strftime('%Y%m%d-%H%M')}.json"
    target.write_text(json.dumps(record, indent=2))
    print(f"written: {target}")
    same = abs(record["score_differences"]["ndcg_at_10"]) < 1e-4
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Multi-stage retrieval on SciFact (issue 14): does the second stage earn its latency?

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_multistage_scifact.py \\
        [--finetuned models/scifact-ft] [--cross-encoder models/scifact-ce] [--max-p95-ms 250] \\
        [--limit-queries 20 --limit-dev 20]       # a smoke run on a slice

One table of pipelines on the test queries: BM25; MiniLM; the fine-tuned MiniLM (``--finetuned``);
the tuned hybrid of each with BM25 (``embedlab tune fusion``, tuned on the train split); each of
those + the trained cross-encoder at the depth and stage fusion (the re-ranker's score alone, or
weighted with the first stage's) that ``embedlab tune depth`` chooses under ``--max-p95-ms``
(``--cross-encoder``); MiniLM re-scored by all-mpnet-base-v2 (a ``bi:`` stage, depth and fusion
tuned the same way over ``--mpnet-depths``).  Columns: NDCG@10 / MRR@10 / Recall@100 with 95% bootstrap intervals, the
paired randomization test of each pipeline against the best single stage (Holm over the
family), and single-query p50/p95 latency (encode + search + re-rank, uncached, this machine's
cores).  The tuned hybrid of the fine-tuned model is also compared with its default RRF (the
tune report).  Every step is the library call the CLI makes (eval runner, tune), so the figures
are those of ``embedlab eval -m PIPELINE``.

Tuning (fusion settings, re-rank depth and stage fusion) uses ``--dev part`` by default: a seeded
``--dev-fraction`` (0.3) of the test queries, which the table then leaves out, so every row is
scored on the same other test queries, never used for a choice.  Not the train split: the
fine-tuned model and the cross-encoder were trained on it, so on its queries they look far
better than on unseen ones (a smoke run scored the cross-encoder's dev NDCG@10 at 1.0 there) and
every setting chosen there over-trusts them.  ``--dev train`` (``--limit-dev`` of its queries,
seeded) is still there for models that did not see it.
``--limit-queries N`` keeps a seeded N of the test queries, ``--limit-docs N`` the judged documents plus N
others (a smoke run; the output says so).
Writes ``--out``/multistage.json and multistage.md (+ the eval and tune reports).  Run it alone.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embedlab.atomic import atomic_write_text
from embedlab.data.beir import resolve_dataset
from embedlab.eval.compare import compare_to_reference, mean_interval
from embedlab.eval.metrics import parse_metric, parse_metrics
from embedlab.eval.runner import EvalSpec, run_eval
from embedlab.reports.markdown import markdown_table
from embedlab.reports.results import write_outputs
from embedlab.search.pipeline import parse_pipeline, parse_retrieval
from embedlab.tune.depth import FUSE_WEIGHTS, DepthTuneSpec, run_tune_depth
from embedlab.tune.fusion import FusionTuneSpec, run_tune_fusion
from embedlab.tune.report import fuse_label, write_depth, write_fusion
from embedlab.tune.splits import split_queries

METRICS = ("ndcg@10", "mrr@10", "recall@100")
MINILM, MPNET = "all-MiniLM-L6-v2", "all-mpnet-base-v2"


def sliced(dataset: str, *, queries: int | None, dev: int | None, docs: int | None, seed: int, folder: Path) -> str:
    """The dataset, or a copy whose test/train qrels keep a seeded ``queries`` / ``dev`` of their queries
    and (``docs``) whose corpus keeps the judged documents of those plus the first ``docs`` others
    (queries linked, not copied)."""
    source = resolve_dataset(dataset)
    if queries is None and dev is None and docs is None:
        return str(source)
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").symlink_to(source / "queries.jsonl")
    judged: set[str] = set()
    for split, limit in (("test", queries), ("train", dev)):
        path = source / "qrels" / f"{split}.tsv"
        if not path.is_file():
            continue
        header, *rows = path.read_text(encoding="utf-8").splitlines()
        ids = sorted({r.split("\t")[0] for r in rows})
        kept = set(random.Random(seed).sample(ids, min(limit, len(ids)))) if limit else set(ids)
        lines = [header, *(r for r in rows if r.split("\t")[0] in kept)]
        judged |= {r.split("\t")[1] for r in lines[1:]}
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus,) = source.glob("corpus.jsonl*")
    if docs is None:
        (folder / corpus.name).symlink_to(corpus)
        return str(folder)
    with (gzip.open if corpus.suffix == ".gz" else open)(corpus, "rt", encoding="utf-8") as lines_in:
        rows = [line for line in lines_in if line.strip()]
    ids = [json.loads(line)["_id"] for line in rows]
    others = [i for i, doc_id in enumerate(ids) if doc_id not in judged][:docs]
    keep = sorted({i for i, doc_id in enumerate(ids) if doc_id in judged} | set(others))
    (folder / "corpus.jsonl").write_text("".join(rows[i] for i in keep), encoding="utf-8")
    return str(folder)


def reported_only(dataset: str, *, dev: str, fraction: float, seed: int, folder: Path) -> str:
    """The dataset the table is scored on: with ``dev`` part, a copy whose test qrels leave out the
    queries the settings were tuned on (the same seeded split as ``tune``); else the dataset."""
    if dev != "part":
        return dataset
    split = split_queries(dataset, dev="part", fraction=fraction, seed=seed)
    source, target = Path(dataset), folder / "reported"
    (target / "qrels").mkdir(parents=True)
    for item in source.iterdir():
        if item.name != "qrels":
            (target / item.name).symlink_to(item.resolve())
    header, *rows = (source / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    kept = [r for r in rows if r.split("\t")[0] in split.reported]
    (target / "qrels" / "test.tsv").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    return str(target)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="scifact", help="dataset name or folder (default scifact)")
    p.add_argument("--finetuned", help="a fine-tuned MiniLM folder (embedlab finetune); its rows are left out without")
    p.add_argument(
        "--cross-encoder", help="a cross-encoder folder (finetune --kind cross-encoder); rows left out without"
    )
    p.add_argument("--max-p95-ms", type=float, default=250.0, help="latency budget for the re-rank depth (default 250)")
    p.add_argument("--depths", default="10,20,50,100,200", help="re-rank depths measured (default 10,20,50,100,200)")
    p.add_argument(
        "--mpnet-depths", default="20,50,100", help="MiniLM candidates re-scored by mpnet, tuned (default 20,50,100)"
    )
    p.add_argument("--limit-queries", type=int, help="a seeded slice of the test queries (smoke run)")
    p.add_argument(
        "--dev",
        choices=("part", "train"),
        default="part",
        help="tuning queries: a seeded part of the test queries, left out of the table (part, default), or the "
        "train split (train; biased toward models trained on it)",
    )
    p.add_argument("--dev-fraction", type=float, default=0.3, help="share of test queries tuned on (--dev part)")
    p.add_argument("--limit-dev", type=int, default=300, help="train queries used for tuning with --dev train")
    p.add_argument("--limit-docs", type=int, help="corpus: the judged documents + N others (smoke run)")
    p.add_argument("--latency-queries", type=int, default=100, help="single queries timed per pipeline (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the slices, the tests and the latency sample")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/multistage-scifact"), help="output folder")
    args = p.parse_args()
    started = time.time()
    metric, report_metrics = parse_metric("ndcg@10"), tuple(parse_metrics(list(METRICS)))
    depths = tuple(int(d) for d in args.depths.split(","))
    with tempfile.TemporaryDirectory(prefix="multistage-") as tmp:
        dataset = sliced(
            args.dataset,
            queries=args.limit_queries,
            dev=args.limit_dev,
            docs=args.limit_docs,
            seed=args.seed,
            folder=Path(tmp) / "data",
        )
        singles = ["bm25", MINILM, *([args.finetuned] if args.finetuned else [])]
        pipelines: list[str] = list(singles)
        notes: dict[str, str] = {}
        tuned: dict[str, str] = {}
        on = {  # what every tuning shares: the data, the metric and the dev queries
            "dataset": dataset,
            "metric": metric,
            "report_metrics": report_metrics,
            "dev": args.dev,
            "dev_fraction": args.dev_fraction,
            "seed": args.seed,
        }
        for dense in singles[1:]:
            result = run_tune_fusion(FusionTuneSpec(pipeline=parse_pipeline(f"bm25 + {dense}"), **on))
            write_fusion(result, args.out / f"tune-fusion-{Path(dense).name}")
            tuned[dense] = str(result.tuned)
            pipelines.append(str(result.tuned))
            c = result.comparison
            notes[str(result.tuned)] = (
                f"tuned vs default RRF: {c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p = {c.p_value:.4f}"
            )
        scores: dict = {}  # each re-ranker's (query, passage) scores, shared by every first stage
        tunings: list[str] = []

        def staged(first: str, reranker: str, label: str, stage_depths: tuple[int, ...]) -> None:
            """Depth and stage fusion tuned on the dev queries under the budget; the chosen pipeline is a row."""
            chosen = run_tune_depth(
                DepthTuneSpec(
                    pipeline=parse_pipeline(f"{first} >> {reranker}"),
                    depths=stage_depths,
                    max_p95_ms=args.max_p95_ms,
                    latency_queries=min(args.latency_queries, 50),
                    fuse_weights=FUSE_WEIGHTS,
                    **on,
                ),
                memo=scores,
            )
            tunings.append(f"{first} >> {label}")  # one folder per tuning, whether or not it gives a row
            write_depth(chosen, args.out / f"tune-depth-{len(tunings)}")
            curve = "; ".join(
                f"@{p.depth} fuse={fuse_label(p.fuse)} dev {p.dev_mean:.4f} p95 {p.p95_ms:.0f} ms"
                for p in chosen.points
            )
            if chosen.pipeline is None:
                fastest = chosen.fastest
                notes[f"{first} >> {label}"] = (
                    f"no depth within p95 <= {args.max_p95_ms:g} ms (fastest: @{fastest.depth}, "
                    f"{fastest.p95_ms:.0f} ms); {curve}"
                )
            else:
                pipelines.append(str(chosen.pipeline))
                notes[str(chosen.pipeline)] = f"depth chosen: {chosen.note}; {curve}"

        if args.cross_encoder:
            for first in [*singles, *tuned.values()]:
                staged(first, args.cross_encoder, "CE", depths)
        staged(MINILM, f"bi:{MPNET}", "mpnet", tuple(int(d) for d in args.mpnet_depths.split(",")))
        specs = tuple(parse_retrieval(text) for text in pipelines)
        reported = reported_only(dataset, dev=args.dev, fraction=args.dev_fraction, seed=args.seed, folder=Path(tmp))
        report = run_eval(
            EvalSpec(
                datasets=(reported,),
                models=specs,
                metrics=report_metrics,
                latency_queries=args.latency_queries,
                seed=args.seed,
            )
        )
        write_outputs(report, args.out / "eval")
    rows, record = table(report, specs, singles, notes, args.seed)
    record |= {
        "smoke_run": args.limit_queries is not None or args.limit_docs is not None,
        "limit_queries": args.limit_queries,
        "limit_dev": args.limit_dev,
        "dev": args.dev,
        "dev_fraction": args.dev_fraction,
        "limit_docs": args.limit_docs,
        "max_p95_ms": args.max_p95_ms,
        "seconds": round(time.time() - started, 1),
        "hardware": report.environment["hardware"],
        "command": " ".join(sys.argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "multistage.json", json.dumps(record, indent=2, default=str) + "\n")
    text = markdown_table(rows, list(rows[0]))
    smoke = (
        f" (smoke run: {record['queries']} test queries, --limit-docs {args.limit_docs})" if record["smoke_run"] else ""
    )
    atomic_write_text(args.out / "multistage.md", f"# Multi-stage retrieval, {args.dataset}{smoke}\n\n{text}\n")
    print(text)
    for name, note in notes.items():
        print(f"- {name}: {note}")
    print(f"-> {args.out}/multistage.md, multistage.json ({record['seconds']} s)")
    return 0


def table(report, specs, singles, notes, seed):
    """Rows with intervals, each pipeline against the best single stage (Holm), and latency."""
    results = {r.model: r for r in report.results if r.ok and r.evaluation is not None}
    names = [s.name for s in specs]
    single_names = [parse_retrieval(s).name for s in singles]
    best = max((n for n in single_names if n in results), key=lambda n: results[n].scores["ndcg_at_10"])
    per_query = {n: results[n].evaluation.per_query["ndcg_at_10"] for n in names if n in results}
    versus = {c.a: c for c in compare_to_reference(per_query, best, metric="ndcg_at_10", seed=seed)}
    rows, records = [], []
    for name in names:
        r = results.get(name)
        if r is None:
            failed = next((x.error for x in report.results if x.model == name), "failed")
            rows.append({"pipeline": f"`{name}`".replace("|", "\\|"), "NDCG@10": f"failed: {failed}"})
            continue
        row = {"pipeline": f"`{name}`".replace("|", "\\|")}
        for key, label in (("ndcg_at_10", "NDCG@10"), ("mrr_at_10", "MRR@10"), ("recall_at_100", "R@100")):
            ci = mean_interval(r.evaluation.per_query[key], seed=seed)
            row[label] = f"{ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}]"
        c = versus.get(name)
        row[f"vs {best}"] = "best single" if c is None else f"{c.difference:+.4f} [{c.ci_low:+.4f}, {c.ci_high:+.4f}]"
        row["p (Holm)"] = "" if c is None else f"{c.p_holm:.4f}"
        latency = r.measured()["latency"]
        row["p50 ms"], row["p95 ms"] = f"{latency.get('p50_ms', 0):.1f}", f"{latency.get('p95_ms', 0):.1f}"
        rows.append(row)
        records.append(
            {
                "pipeline": name,
                "scores": r.scores,
                "versus_best_single": None if c is None else vars(c),
                "latency": {k: latency.get(k) for k in ("p50_ms", "p95_ms", "samples")},
                "note": notes.get(name),
            }
        )
    return rows, {"best_single": best, "rows": records, "notes": notes, "queries": len(per_query[best])}


if __name__ == "__main__":
    raise SystemExit(main())

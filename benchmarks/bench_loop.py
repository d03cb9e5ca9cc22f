"""The loop, measured: base model -> simulated clicks -> `monitor retrain` -> gate -> interleaved -> promoted.

Everything goes through the real server (``embedlab serve`` in a subprocess on 127.0.0.1, one per phase,
each with its own feedback file, started by ``bench_ab_drift.server``), the simulator
(:mod:`embedlab.monitor.simulate`: position-based clicks from the qrels) and the real CLI:

1. **train traffic**: ``--train-queries`` queries of ``--dataset``'s ``--train-split`` against the base
   collection (one arm, ``live = "base"``);
2. **retrain**: ``embedlab monitor retrain`` on that feedback (held-out share ``--holdout`` of the
   sessions, and ``--test-dataset`` as the labelled gate unless ``--no-labelled-gate``); exit 1 = the gate
   failed, recorded and the run stops there (a failed candidate is never promoted);
3. **interleaved**: the staged candidate interleaved with the base over ``--ab-queries`` queries of the
   ``--measure-split``; ``monitor ab``'s verdict (sign test) is recorded;
4. **promoted**: ``embedlab monitor promote`` (unless the interleaving said the base wins: then the run
   records it and stops);
5. **before / after**: the same ``--measure-queries`` queries, sessions and click seed against the base
   alone (before) and the promoted arm alone (after).  Per session: CTR (share of searches with a
   click) and MRR of the first click (0 without one); the difference after - before, paired by session,
   with the 95% bootstrap interval and the paired randomization test of ``embedlab.eval.compare``.

SciFact: the train split's queries feed the fine-tune, the test split's measure it (disjoint queries);
the labelled gate is SciFact's test split too (a pass/fail gate, not a reported figure).

Full run (alone on the machine; the base collection is built once under ``--root``):

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_loop.py --root /tmp/looproot

Smoke run (Cranfield, 1,400 documents, the bundled all-MiniLM-L6-v2, one split for everything, minutes):

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_loop.py --root /tmp/looproot-smoke --smoke

Whole-loop smoke (every phase in a minute: the tiny transformer and synthetic dataset of
``tests/retrain_fixtures.py``, written to /tmp/tiny by ``write_loop_dataset`` and
``make_tiny_sentence_transformer(..., words=...)``):

    python benchmarks/bench_loop.py --root /tmp/tinyroot --dataset /tmp/tiny/loopdata --model /tmp/tiny/model \
        --train-split test --measure-split test --no-labelled-gate --train-queries 240 --ab-queries 240 \
        --measure-queries 240 --learning-rate 1e-2 --epochs 2 --dev-ratio 0 --eta 0 --p-other 0 --holdout 0.25

Writes ``benchmarks/results/loop_<stamp>.json`` with every figure, the seeds and the conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench_ab_drift import CLI, build_if_missing, server
from embedlab.eval.compare import compare_pair
from embedlab.monitor.ab import compare_arms
from embedlab.monitor.events import Search, load_searches
from embedlab.monitor.simulate import ClickModel, parse_stream, simulate


def traffic(url: str, dataset: str, split: str, queries: int, *, seed: int, prefix: str, clicks: ClickModel) -> dict:
    result = simulate(
        url,
        parse_stream(f"{dataset}:{queries}"),
        split=split,
        seed=seed,
        model=clicks,
        session_prefix=prefix,
        concurrency=4,
    )
    return {"sessions": result.sessions, "searches": result.searches, "clicks": result.clicks}


def per_session(searches: list[Search]) -> dict[str, dict[str, float]]:
    """session -> CTR and MRR of the first click, over the session's searches."""
    groups: dict[str, list[Search]] = {}
    for s in searches:
        groups.setdefault(s.session or s.search_id, []).append(s)
    out: dict[str, dict[str, float]] = {"ctr": {}, "mrr": {}}
    for session, items in groups.items():
        out["ctr"][session] = sum(1.0 for s in items if s.click_ranks) / len(items)
        out["mrr"][session] = sum(1.0 / min(s.click_ranks) if s.click_ranks else 0.0 for s in items) / len(items)
    return out


def cli(*args: str) -> subprocess.CompletedProcess:
    print("$ embedlab " + " ".join(args), flush=True)
    done = subprocess.run([*CLI, *args], capture_output=True, text=True)
    print(done.stdout + done.stderr, flush=True)
    return done


def run(args: argparse.Namespace) -> dict:
    root, work = args.root, args.work
    work.mkdir(parents=True, exist_ok=True)
    build_if_missing(root, args.collection, args.model, args.dataset)
    arms = work / "arms.toml"
    arms.write_text('kind = "split"\nlive = "base"\n[arms.base]\n')
    report: dict = {"conditions": vars(args) | {"root": str(root), "work": str(work), "out": str(args.out)}}
    clicks = ClickModel(eta=args.eta, p_other=args.p_other)
    measure = dict(split=args.measure_split, queries=args.measure_queries, seed=args.seed + 1, clicks=clicks)

    db = work / "train.sqlite"
    with server(root, args.collection, db, arms) as url:
        report["train_traffic"] = traffic(
            url, args.dataset, args.train_split, args.train_queries, seed=args.seed, prefix="train-", clicks=clicks
        )
    with server(root, args.collection, work / "before.sqlite", arms) as url:
        report["before_traffic"] = traffic(url, args.dataset, prefix="m-", **measure)  # type: ignore[arg-type]

    started = time.perf_counter()
    retrain = [
        "monitor",
        "retrain",
        args.collection,
        "--root",
        str(root),
        "--arms",
        str(arms),
        "--feedback-db",
        str(db),
    ]
    retrain += ["--holdout", str(args.holdout), "--seed", str(args.seed), "--out", str(work / "model")]
    retrain += ["--candidate", args.candidate, "--epochs", str(args.epochs), "--min-clicks", str(args.min_clicks)]
    retrain += ["--min-holdout", str(args.min_holdout), "--dev-ratio", str(args.dev_ratio)]
    retrain += ["--learning-rate", str(args.learning_rate), "--batch-size", str(args.batch_size)]
    retrain += ["--propensity-eta", str(args.propensity_eta)]
    if not args.no_labelled_gate:
        retrain += ["--test-dataset", args.test_dataset or args.dataset]
    done = cli(*retrain)
    report["retrain"] = {"exit": done.returncode, "seconds": time.perf_counter() - started, "output": done.stdout}
    record_path = root / args.collection / "candidates" / f"{args.candidate}.json"
    if record_path.is_file():
        report["retrain"]["record"] = json.loads(record_path.read_text())
    if done.returncode != 0:
        report["stopped"] = "the gate failed: nothing staged, nothing promoted"
        return report

    with server(root, args.collection, work / "ab.sqlite", arms) as url:
        report["ab_traffic"] = traffic(
            url, args.dataset, args.measure_split, args.ab_queries, seed=args.seed + 2, prefix="ab-", clicks=clicks
        )
    outcome = compare_arms(load_searches(work / "ab.sqlite", collection=args.collection), seed=args.seed)
    report["interleaving"] = outcome.to_dict()
    if outcome.winner == "base" and not args.promote_anyway:
        report["stopped"] = "interleaving prefers the base: not promoted"
        return report
    done = cli("monitor", "promote", args.collection, "--root", str(root), "--arms", str(arms),
               "--arm", args.candidate, "--why", f"bench_loop: interleaving verdict {outcome.verdict}")  # fmt: skip
    report["promote"] = {"exit": done.returncode, "output": done.stdout}

    with server(root, args.collection, work / "after.sqlite", arms) as url:
        report["after_traffic"] = traffic(url, args.dataset, prefix="m-", **measure)  # type: ignore[arg-type]
    before = per_session(load_searches(work / "before.sqlite", collection=args.collection))
    after = per_session(load_searches(work / "after.sqlite", collection=args.collection))
    report["live_arm"] = {}
    for metric in ("ctr", "mrr"):
        pair = compare_pair(after[metric], before[metric], a="after", b="before", metric=metric, seed=args.seed)
        report["live_arm"][metric] = {
            "before": sum(before[metric].values()) / len(before[metric]),
            "after": sum(after[metric].values()) / len(after[metric]),
            "difference": pair.difference,
            "ci_low": pair.ci_low,
            "ci_high": pair.ci_high,
            "p_value": pair.p_value,
            "sessions": pair.queries,
            "test": pair.test,
        }
        m = report["live_arm"][metric]
        print(
            f"live arm {metric}: before {m['before']:.4f} -> after {m['after']:.4f} "
            f"({m['difference']:+.4f} [{m['ci_low']:+.4f}, {m['ci_high']:+.4f}], p={m['p_value']:.3g}, "
            f"{m['sessions']} sessions)",
            flush=True,
        )
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="collections folder (the base is built there once)")
    parser.add_argument("--work", type=Path, help="feedback files, arms file, model (default <root>/loop-<stamp>)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="the base model")
    parser.add_argument("--dataset", default="scifact", help="corpus and queries of the simulated users")
    parser.add_argument("--collection", help="the base collection's name (default loop-<dataset>)")
    parser.add_argument("--train-split", default="train", help="queries whose clicks train the candidate")
    parser.add_argument("--measure-split", default="test", help="queries of the A/B and before/after phases")
    parser.add_argument("--test-dataset", help="the labelled gate (default: --dataset, its test split)")
    parser.add_argument("--no-labelled-gate", action="store_true", help="gate on the held-out clicks only")
    parser.add_argument("--train-queries", type=int, default=1618, help="train-traffic queries (809 x 2)")
    parser.add_argument("--ab-queries", type=int, default=2000, help="interleaved queries")
    parser.add_argument("--measure-queries", type=int, default=900, help="queries before and after (300 x 3)")
    parser.add_argument("--holdout", type=float, default=0.2, help="sessions held out for the gate")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="fine-tuning learning rate")
    parser.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch size")
    parser.add_argument("--dev-ratio", type=float, default=0.1, help="retrain's --dev-ratio (0: keep the last epoch)")
    parser.add_argument("--eta", type=float, default=1.0, help="click model: examination 1/rank^eta")
    parser.add_argument(
        "--propensity-eta",
        type=float,
        default=1.0,
        help="retrain's --propensity-eta: the gate's examination assumption (the operator's, not --eta)",
    )
    parser.add_argument("--p-other", type=float, default=0.05, help="click model: click probability of others")
    parser.add_argument("--min-clicks", type=int, default=50, help="retrain's --min-clicks")
    parser.add_argument("--min-holdout", type=int, default=10, help="retrain's --min-holdout")
    parser.add_argument("--seed", type=int, default=0, help="seed of the traffic, the split and the fine-tune")
    parser.add_argument("--promote-anyway", action="store_true", help="promote even when interleaving prefers base")
    parser.add_argument("--smoke", action="store_true", help="Cranfield, one split, 225 queries a phase")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="results folder")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.smoke:
        # Cranfield (1,400 documents, 225 queries): one pass of its queries for each phase; its only split
        # is both trained and measured on, so no labelled gate (it would be the training queries)
        args.dataset, args.train_split, args.measure_split = "cranfield", "test", "test"
        args.train_queries, args.ab_queries, args.measure_queries = 225, 225, 225
        args.min_clicks, args.min_holdout, args.epochs, args.no_labelled_gate = 20, 5, 1, True
    name = Path(args.dataset).name
    args.collection = args.collection or f"loop-{name}"
    args.candidate = f"{args.collection}-{stamp}"
    args.work = args.work or args.root / f"loop-{stamp}"
    started = time.perf_counter()
    report = run(args)
    report["seconds"] = time.perf_counter() - started
    report["machine"] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"loop_{name}{'_smoke' if args.smoke else ''}_{stamp}.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    print(f"-> {path}" + (f" (stopped: {report['stopped']})" if "stopped" in report else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

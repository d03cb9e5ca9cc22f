"""Watching a served model with simulated users: drift detection, false alarms, interleaving and split A/B.

Everything goes through the real server (``embedlab serve`` in a subprocess on 127.0.0.1, one per
experiment, each with its own feedback file) and the simulator (``embedlab.monitor.simulate``:
SciFact test queries with clicks from the position-based model, attractiveness from the qrels):

- **drift** (per seed): ``R`` reference queries and ``--pre`` more SciFact queries, then NPL queries;
  after every ``--step`` NPL queries the ``query_drift`` rule (MMD, permutation p-value) is evaluated on
  the last ``--window`` searches against the first ``R``: the delay is the number of NPL queries
  until the first alert (the issue asks for <= 200);
- **false alarms** (per seed): ``R`` + ``--fa-queries`` SciFact queries, the same rule on consecutive
  windows of ``--window`` searches; a seed with any alert is a false alarm (also reported: the final
  window alone, and the per-check rate);
- **interleave**: team-draft interleaving of the ``--tuned-model`` collection (A = base live, B = tuned)
  over ``--sessions`` sessions; the first checkpoint (every ``--session-step`` sessions) where the
  sign test gives p < 0.05 for the tuned arm;
- **aa**: the base model interleaved with itself over ``--aa-sessions`` sessions per seed: the share of
  seeds declaring "no difference yet";
- **split**: the same two arms on a 1:1 traffic split, up to ``--split-max-sessions`` sessions: sessions
  until p < 0.05 for the tuned arm, against interleaving's.

Full run (alone on the machine; the collections are built once under ``--root``):

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_ab_drift.py --root /tmp/abroot \\
        --tuned-model /tmp/scifact-ft

Smoke run (hashing models, a few hundred queries, a minute):

    EMBEDLAB_PLUGINS=embedlab.encoders.fake EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_ab_drift.py \\
        --root /tmp/abroot-smoke --model hashing:dim=16 --tuned-model hashing:dim=256 --smoke

Writes ``benchmarks/results/ab_drift_<stamp>.json`` with every figure, the seeds and the conditions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from embedlab.errors import EmbedlabError
from embedlab.monitor.ab import compare_arms
from embedlab.monitor.check import collection_context, evaluate
from embedlab.monitor.events import Search, load_searches
from embedlab.monitor.rules import MonitorFile
from embedlab.monitor.simulate import parse_stream, simulate

CLI = [sys.executable, "-c", "import sys; from embedlab.cli.main import main; sys.exit(main())"]


def build_if_missing(root: Path, name: str, model: str, dataset: str) -> None:
    from embedlab.collection import build
    from embedlab.collection.corpus import corpus_folder
    from embedlab.collection.layout import CollectionDir
    from embedlab.data.beir import load_dataset
    from embedlab.encoders.spec import parse_model_spec

    try:
        CollectionDir(name, root=root).live()
        return
    except Exception:
        pass
    started = time.perf_counter()
    build(corpus_folder(load_dataset(dataset)), name, model_spec=parse_model_spec(model), root=root, show_progress=True)
    print(f"built {name} ({model}) in {time.perf_counter() - started:.0f} s", flush=True)


@contextlib.contextmanager
def server(root: Path, collection: str, db: Path, arms: Path | None = None) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [*CLI, "serve", collection, "--root", str(root), "--port", str(port), "--feedback-db", str(db)]
    if arms is not None:
        command += ["--arms", str(arms)]
    proc = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start ({' '.join(command)})") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def in_stream_order(searches: list[Search], prefix: str) -> list[Search]:
    """This run's searches in the order the simulator sent them (session number, then time)."""
    mine = [s for s in searches if (s.session or "").startswith(prefix)]
    return sorted(mine, key=lambda s: (s.session, s.ts))


def drift_rule(reference: int, window: int, p_value: float) -> MonitorFile:
    rule = {"metric": "query_drift", "window": "3650d", "p_value": p_value, "min_volume": min(50, window)}
    return MonitorFile.model_validate({"reference": {"first": reference}, "rule": [rule]})


def check(searches: list[Search], reference: int, live: list[Search], config: MonitorFile, context, seed: int):
    verdict = evaluate(searches[:reference] + live, config, context=lambda: context, seed=seed)[0]
    return verdict.status == "alert", verdict.p_value


def memo_context(collection: str, root: Path):
    """The collection's drift context, its query embeddings memoised (each query is embedded once)."""
    import numpy as np

    context = collection_context(collection, root=root, queries_file=None)
    embed, seen = context.embed, {}

    def cached(texts: list[str]):
        todo = [t for t in dict.fromkeys(texts) if t not in seen]
        if todo:
            seen.update(zip(todo, embed(todo), strict=True))
        return np.stack([seen[t] for t in texts])

    context.embed = cached
    return context


def run_drift(args, root: Path, work: Path) -> dict:
    context = memo_context("ab-base", root)
    config = drift_rule(args.reference, args.window, args.p_value)
    db = work / "drift.sqlite"
    delays, fa_any, fa_final, checks, alerts = [], [], [], 0, 0
    with server(root, "ab-base", db) as url:
        for seed in range(args.seeds):
            prefix = f"drift{seed}-"
            stream = f"scifact:{args.reference + args.pre},npl:{args.post}"
            simulate(url, parse_stream(stream), seed=seed, concurrency=2, session_prefix=prefix, corpus="scifact")
            searches = in_stream_order(load_searches(db, collection="ab-base"), prefix)
            switch = args.reference + args.pre
            delay = None
            for n in range(args.step, args.post + 1, args.step):
                alert, _ = check(
                    searches, args.reference, searches[switch + n - args.window : switch + n], config, context, seed
                )
                if alert:
                    delay = n
                    break
            delays.append(delay)
            prefix = f"fa{seed}-"
            simulate(
                url,
                parse_stream(f"scifact:{args.reference + args.fa_queries}"),
                seed=1000 + seed,
                concurrency=2,
                session_prefix=prefix,
            )
            searches = in_stream_order(load_searches(db, collection="ab-base"), prefix)
            seed_alerts = []
            for end in range(args.reference + args.window, len(searches) + 1, args.window):
                alert, _ = check(searches, args.reference, searches[end - args.window : end], config, context, seed)
                seed_alerts.append(alert)
            checks += len(seed_alerts)
            alerts += sum(seed_alerts)
            fa_any.append(any(seed_alerts))
            fa_final.append(bool(seed_alerts and seed_alerts[-1]))
            print(
                f"drift seed {seed}: delay {delay}, false-alarm checks {sum(seed_alerts)}/{len(seed_alerts)}",
                flush=True,
            )
    detected = [d for d in delays if d is not None]
    return {
        "delay_after_switch": delays,
        "detected_within_200": sum(d <= 200 for d in detected),
        "seeds": args.seeds,
        "false_alarm_seeds_any_check": sum(fa_any),
        "false_alarm_rate_any_check": sum(fa_any) / max(1, len(fa_any)),
        "false_alarm_rate_final_window": sum(fa_final) / max(1, len(fa_final)),
        "false_alarm_rate_per_check": alerts / max(1, checks),
        "checks_per_seed": checks / max(1, args.seeds),
    }


def arms_file(work: Path, name: str, kind: str, a: str, b: str, *, seed: int = 0) -> Path:
    ca, cb = ("ab-base", "ab-base") if kind == "aa" else ("ab-base", "ab-tuned")
    path = work / f"{name}.toml"
    kind_text = "split" if kind == "split" else "interleave"
    path.write_text(
        f'kind = "{kind_text}"\nlive = "{a}"\nseed = {seed}\n[arms.{a}]\ncollection = "{ca}"\n'
        f'[arms.{b}]\ncollection = "{cb}"\n'
    )
    return path


def first_win(searches: list[Search], step: int, limit: int, winner: str, seed: int) -> tuple[int | None, dict]:
    """Sessions until the comparison first names ``winner`` with p < 0.05 (checked every ``step``)."""
    order = list(dict.fromkeys(s.session for s in searches))
    last: dict = {}
    for n in range(step, min(limit, len(order)) + 1, step):
        chosen = set(order[:n])
        try:
            outcome = compare_arms([s for s in searches if s.session in chosen], seed=seed)
        except EmbedlabError:  # too few sessions of one arm yet
            continue
        last = outcome.to_dict()
        if outcome.winner == winner:
            return n, last
    return None, last


def run_ab(args, root: Path, work: Path, kind: str, sessions: int, seeds: int, step: int) -> dict:
    a, b = ("a", "b") if kind == "aa" else ("base", "tuned")
    db = work / f"{kind}.sqlite"
    results = []
    with server(root, "ab-base", db, arms_file(work, kind, kind, a, b)) as url:
        for seed in range(seeds):
            prefix = f"{kind}{seed}-"
            # the arms' seed fixes the session hash and the coins; one file per run: rewrite it (re-read on change)
            arms_file(work, kind, kind, a, b, seed=seed)
            time.sleep(1.2)
            simulate(
                url,
                parse_stream(f"scifact:{3 * sessions}"),
                seed=seed,
                sessions=sessions,
                concurrency=4,
                session_prefix=prefix,
            )
            searches = in_stream_order(load_searches(db, collection="ab-base"), prefix)
            if kind == "aa":
                outcome = compare_arms(searches, seed=seed).to_dict()
                results.append({"seed": seed, "verdict": outcome["verdict"], "p_value": outcome["p_value"]})
            else:
                found, outcome = first_win(searches, step, sessions, "tuned", seed)
                results.append({"seed": seed, "sessions_to_win": found, "final": outcome})
            print(f"{kind} seed {seed}: {results[-1]}", flush=True)
    out: dict = {"sessions": sessions, "runs": results}
    if kind == "aa":
        out["no_difference_share"] = sum(r["verdict"] == "no difference yet" for r in results) / max(1, len(results))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="collections folder (built there when missing)")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="the base model")
    parser.add_argument("--tuned-model", help="the fine-tuned model (interleave/split parts need it)")
    parser.add_argument("--parts", default="drift,interleave,aa,split", help="which experiments to run")
    parser.add_argument("--seeds", type=int, default=20, help="seeds of the drift / false-alarm / A/A runs")
    parser.add_argument("--reference", type=int, default=500, help="reference queries (the first logged)")
    parser.add_argument("--pre", type=int, default=300, help="SciFact queries after the reference, before NPL")
    parser.add_argument("--post", type=int, default=400, help="NPL queries after the switch")
    parser.add_argument("--step", type=int, default=25, help="NPL queries between drift checks")
    parser.add_argument("--window", type=int, default=200, help="searches in a drift check's live window")
    parser.add_argument("--p-value", type=float, default=0.01, help="the drift rule's p-value")
    parser.add_argument("--fa-queries", type=int, default=2000, help="unchanged SciFact queries after the reference")
    parser.add_argument("--sessions", type=int, default=1000, help="interleaving sessions")
    parser.add_argument("--session-step", type=int, default=50, help="sessions between A/B checkpoints")
    parser.add_argument("--aa-sessions", type=int, default=1000, help="sessions per A/A seed")
    parser.add_argument("--split-max-sessions", type=int, default=8000, help="traffic-split sessions at most")
    parser.add_argument("--smoke", action="store_true", help="a tiny slice of everything (2 seeds, ~100s of queries)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="results folder")
    args = parser.parse_args()
    if args.smoke:
        args.seeds, args.reference, args.pre, args.post, args.step, args.window = 2, 60, 40, 80, 20, 40
        args.fa_queries, args.sessions, args.session_step, args.aa_sessions = 120, 60, 20, 40
        args.split_max_sessions = 120
    parts = set(args.parts.split(","))
    started = time.perf_counter()
    build_if_missing(args.root, "ab-base", args.model, "scifact")
    if args.tuned_model and parts & {"interleave", "split"}:
        build_if_missing(args.root, "ab-tuned", args.tuned_model, "scifact")
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="ab-drift-") as tmp:
        work = Path(tmp)
        if "drift" in parts:
            figures["drift"] = run_drift(args, args.root, work)
        if "aa" in parts:
            figures["aa"] = run_ab(args, args.root, work, "aa", args.aa_sessions, args.seeds, args.session_step)
        if args.tuned_model and "interleave" in parts:
            figures["interleave"] = run_ab(args, args.root, work, "interleave", args.sessions, 1, args.session_step)
        if args.tuned_model and "split" in parts:
            step = max(args.session_step, args.split_max_sessions // 40)
            figures["split"] = run_ab(args, args.root, work, "split", args.split_max_sessions, 1, step)
    if "interleave" in figures and "split" in figures:
        i, s = figures["interleave"]["runs"][0]["sessions_to_win"], figures["split"]["runs"][0]["sessions_to_win"]
        figures["split_vs_interleave_sessions"] = None if not (i and s) else s / i
    stamp = time.strftime("%Y%m%d-%H%M")
    result = {
        "benchmark": "monitor: drift alert, false alarms, interleaving and split A/B with simulated users",
        "command": " ".join(sys.argv),
        "wall_seconds": time.perf_counter() - started,
        "models": {"base": args.model, "tuned": args.tuned_model},
        "click_model": "pbm, exam(r) = 1/r, p_relevant 0.9, p_other 0.05",
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "figures": figures,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"ab_drift_{'smoke_' if args.smoke else ''}{stamp}.json"
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(figures, indent=1))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

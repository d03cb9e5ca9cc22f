"""``embedlab monitor report|check``: online metrics and drift alerts of a served collection."""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime
from pathlib import Path

from embedlab.cli import monitor_loop_cmd
from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "monitor",
        help="watch a served collection: online metrics, drift alerts",
        description="Turn the searches and feedback `embedlab serve` logged into decisions.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("collection", help="collection name")
    common.add_argument("--root", type=Path, help="collections folder (default $EMBEDLAB_COLLECTIONS or ./collections)")
    common.add_argument("--feedback-db", type=Path, help="feedback SQLite file (default <collection>/feedback.sqlite)")
    common.add_argument(
        "--since", help="only searches from then on: an ISO time (2025-01-31T12:00) or a duration ago (2h)"
    )
    common.add_argument(
        "--reformulation-s", type=float, default=60.0, help="a new query within this many seconds re-formulates"
    )
    common.add_argument("--price-per-hour", type=float, default=0.0, help="machine price, for cost per 1,000 queries")

    r = verbs.add_parser(
        "report",
        parents=[common],
        help="online metrics per window and arm: table, JSON, HTML",
        description="Online metrics per time window and arm from the logged searches and feedback: a table, "
        "monitor.json and a self-contained dashboard.html.",
        epilog=examples("embedlab monitor report lib", "embedlab monitor report lib --since 24h --window 15m"),
    )
    r.add_argument("--window", default="1h", help="window length: 30s, 15m, 1h, 1d")
    r.add_argument("--out", type=Path, help="folder for monitor.json and dashboard.html (default reports/monitor-NAME)")
    r.set_defaults(handler=run_report)

    c = verbs.add_parser(
        "check",
        parents=[common],
        help="evaluate monitor.toml alert rules; exit 1 on an alert (for cron/CI)",
        description="Evaluate the alert rules of monitor.toml (metric, window, threshold or p-value, minimum "
        "volume) on the logged traffic. Exit 0: no alert; 1: an alert fired; 2: bad input.",
        epilog=examples(
            "embedlab monitor check lib", "embedlab monitor check lib --rules ops/monitor.toml --json out.json"
        ),
    )
    c.add_argument("--rules", type=Path, default=Path("monitor.toml"), help="alert rules file")
    c.add_argument("--seed", type=int, default=0, help="seed of the permutation tests")
    c.add_argument("--json", type=Path, help="also write the verdicts to this file")
    c.set_defaults(handler=run_check)

    ab = verbs.add_parser(
        "ab",
        parents=[common],
        help="A/B verdict: per-arm metrics, interleaving preference (sign test) or split comparison",
        description="Compare two arms served with `embedlab serve --arms`: per-arm online metrics, then for "
        "interleaved searches the sessions each arm won (clicks credited to the arm that showed the result), the "
        "preference with a bootstrap interval and a two-sided sign test; for a traffic split the per-session MRR "
        "difference with a bootstrap interval and Welch's test; the sessions needed for the observed effect and a "
        "verdict: A wins, B wins or no difference yet.",
        epilog=examples(
            "embedlab monitor ab scifact --since 2h", "embedlab monitor ab lib --arms base,tuned --json ab.json"
        ),
    )
    ab.add_argument("--arms", help="the two arms to compare, A,B (default: the interleaved pair or the two split arms)")
    ab.add_argument(
        "--kind", choices=("interleave", "split"), help="which searches to compare (default: interleave if any)"
    )
    ab.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict (default 0.05)")
    ab.add_argument("--power", type=float, default=0.8, help="power for the sessions-needed estimate (default 0.8)")
    ab.add_argument("--seed", type=int, default=0, help="seed of the bootstrap interval (default 0)")
    ab.add_argument("--json", type=Path, help="also write the outcome and per-arm metrics to this file")
    ab.set_defaults(handler=run_ab)
    monitor_loop_cmd.add_verbs(verbs)  # retrain, promote, rollback


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    from embedlab.monitor.online import parse_duration

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        pass
    try:
        return time.time() - parse_duration(text, option="--since")
    except EmbedlabError:
        raise EmbedlabError("invalid --since", found=repr(text), expected="an ISO time or a duration like 2h") from None


def _searches(args: argparse.Namespace):
    from embedlab.monitor.events import database_path, load_searches

    path = database_path(args.collection, root=args.root, db=args.feedback_db)
    return path, load_searches(path, collection=args.collection, since=_since(args.since))


def _options(args: argparse.Namespace):
    from embedlab.monitor.online import Options

    if args.reformulation_s <= 0 or args.price_per_hour < 0:
        raise EmbedlabError("invalid options", expected="--reformulation-s > 0 and --price-per-hour >= 0")
    return Options(reformulation_s=args.reformulation_s, price_per_hour=args.price_per_hour)


def run_report(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from embedlab.monitor.online import parse_duration
    from embedlab.monitor.report import build_report, render_dashboard, table_rows
    from embedlab.output import result_set

    window_s = parse_duration(args.window)
    options = _options(args)
    out = args.out or Path("reports") / f"monitor-{args.collection}"
    _, searches = _searches(args)
    if not searches:
        raise EmbedlabError("no searches in this period", hint="widen --since, or serve some traffic first")
    report = build_report(searches, collection=args.collection, window_s=window_s, options=options)
    with result_set(out) as stage:
        (stage / "monitor.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        (stage / "dashboard.html").write_text(render_dashboard(report), encoding="utf-8")
    header, rows = table_rows(report)
    table = Table(title=f"{args.collection}: {len(searches)} searches")
    for name in header:
        table.add_column(name, justify="right")
    for row in rows[:60]:
        table.add_row(*row)
    Console().print(table)
    print(f"-> {out / 'monitor.json'}, {out / 'dashboard.html'}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from embedlab.atomic import atomic_write_text
    from embedlab.monitor.check import STATE_FILE, collection_context, evaluate
    from embedlab.monitor.rules import load_rules

    config = load_rules(args.rules)  # before any data is read: a bad file changes nothing
    options = _options(args)
    if all(rule.metric == "corpus_drift" for rule in config.rule) and args.feedback_db is None:
        from embedlab.collection.layout import CollectionDir
        from embedlab.monitor.events import FILE

        cdir = CollectionDir(args.collection, root=args.root)  # corpus rules read the manifest, not the searches
        if not cdir.exists():
            raise cdir.unknown()
        path, searches = cdir.path / FILE, []
    else:
        path, searches = _searches(args)
    queries_file = None
    if config.reference.queries is not None:
        queries_file = (args.rules.parent / config.reference.queries).resolve()
    verdicts = evaluate(
        searches,
        config,
        context=lambda: collection_context(args.collection, root=args.root, queries_file=queries_file),
        options=options,
        seed=args.seed,
    )
    body = json.dumps({"checked": time.time(), "verdicts": [v.to_dict() for v in verdicts]}, indent=1)
    atomic_write_text(path.parent / STATE_FILE, body)
    if args.json is not None:
        atomic_write_text(args.json, body)
    for v in verdicts:
        value = "-" if v.value is None else f"{v.value:.4g}"
        p = "" if v.p_value is None else f" p={v.p_value:.4g}"
        over, unit = ("the last update", "added chunks") if v.metric == "corpus_drift" else (v.window, "searches")
        print(f"{v.status.upper():10} {v.rule}: {v.metric} over {over} = {value}{p} ({v.limit}; {v.volume} {unit})")
    triggers = config.retrain_triggers([v.rule for v in verdicts if v.status == "alert"])
    if triggers:
        _retrain_on_alert(args, config, triggers)
    return 1 if any(v.status == "alert" for v in verdicts) else 0


def _retrain_on_alert(args: argparse.Namespace, config, triggers: list[str]) -> None:
    """``[retrain]`` in monitor.toml: the alert starts ``monitor retrain`` (the gate decides; a passing
    candidate is staged, never promoted).  Its outcome is printed; the exit status stays the alert's."""
    from embedlab.monitor.retrain import RetrainSpec, retrain

    options = config.retrain
    print(f"retrain: started by {', '.join(triggers)}")
    outcome = retrain(
        RetrainSpec(
            collection=args.collection,
            root=args.root,
            feedback_db=args.feedback_db,
            seed=args.seed,
            models_dir=Path(options.out_dir),
            why=f"alert: {', '.join(triggers)}",
            **options.model_dump(exclude={"on", "out_dir"}),  # the rest are monitor retrain's own options
        )
    )
    for line in outcome.lines:
        print(line)


def run_ab(args: argparse.Namespace) -> int:
    from embedlab.atomic import atomic_write_text
    from embedlab.monitor.ab import arm_metrics, compare_arms

    arms = None
    if args.arms is not None:
        parts = [p.strip() for p in args.arms.split(",")]
        if len(parts) != 2 or not all(parts):
            raise EmbedlabError("invalid --arms", found=repr(args.arms), expected="two arm names: A,B")
        arms = (parts[0], parts[1])
    options = _options(args)
    _, searches = _searches(args)
    outcome = compare_arms(searches, arms=arms, kind=args.kind, alpha=args.alpha, power=args.power, seed=args.seed)
    per_arm = arm_metrics(searches, options=options)
    for arm, values in per_arm.items():
        shown = ", ".join(
            f"{k} {values[k]:.3f}" for k in ("queries", "ctr", "mrr", "ctr_at_1") if values[k] is not None
        )
        print(f"{arm}: {shown}")
    o = outcome
    interval = "" if o.low is None else f" [{o.low:+.3f}, {o.high:+.3f}]"
    if o.kind == "interleave":
        print(
            f"interleaving {o.arm_a} (A) vs {o.arm_b} (B): {o.sessions} sessions, A won {o.wins_a}, "
            f"B won {o.wins_b}, {o.ties} ties; preference {o.delta:+.3f}{interval}; sign test p={o.p_value:.4g}"
        )
    else:
        print(
            f"split {o.arm_a} (A, {o.wins_a} sessions) vs {o.arm_b} (B, {o.wins_b} sessions): "
            f"session MRR difference {o.delta:+.4f}{interval}; Welch p={o.p_value:.4g}"
        )
    unit = "sessions" if o.kind == "interleave" else "sessions per arm"
    needed = "no effect seen" if o.needed_sessions is None else f"~{math.ceil(o.needed_sessions)} {unit}"
    print(f"sessions needed for this effect (power {args.power}): {needed}")
    print(f"verdict: {o.verdict}" + (f" ({o.winner})" if o.winner else ""))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps({"outcome": o.to_dict(), "arms": per_arm}, indent=1))
    return 0

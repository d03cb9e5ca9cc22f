"""``embedlab monitor retrain|promote|rollback``: close the loop from logged clicks to the live arm."""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.cli.help import examples


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """Register the three verbs under ``embedlab monitor``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("collection", help="the served collection's name")
    common.add_argument("--root", type=Path, help="collections folder (default $EMBEDLAB_COLLECTIONS or ./collections)")
    common.add_argument("--arms", type=Path, help="the arms file it is served with (default <collection>/arms.toml)")

    r = verbs.add_parser(
        "retrain",
        parents=[common],
        help="fine-tune the live arm's model on logged clicks; stage it if it passes the gate",
        description="Export the feedback as a click log, hold out a seeded share of the sessions as a test "
        "set (clicked chunks = relevant, weighted by the inverse of their rank's examination probability), "
        "fine-tune the live arm's model on the rest and require a significant "
        "NDCG@10 gain on the held-out set, or with --test-dataset a gain there (the held-out figures are then "
        "reported; --click-gate). A passed gate builds "
        "a candidate collection with the new model over the same library and stages it in the arms file; a "
        "failed one stages nothing. Exit 0: staged; 1: the gate failed; 2: bad input.",
        epilog=examples(
            "embedlab monitor retrain scifact --arms arms.toml",
            "embedlab monitor retrain lib --test-dataset scifact --holdout 0.3 --stage shadow --out models/lib-r1",
        ),
    )
    r.add_argument("--feedback-db", type=Path, help="feedback SQLite file (default <collection>/feedback.sqlite)")
    r.add_argument("--test-dataset", help="also gate on this labelled BEIR dataset's test split (default: none)")
    r.add_argument("--holdout", type=float, default=0.2, help="share of the sessions held out for the gate")
    r.add_argument("--seed", type=int, default=0, help="seed of the session split and the fine-tune")
    r.add_argument("--out", type=Path, help="folder for the new model (default models/<candidate>)")
    r.add_argument(
        "--stage",
        choices=("interleave", "shadow"),
        default="interleave",
        help="how a passing candidate is staged: the interleaved B arm, or a shadow arm with share 0",
    )
    r.add_argument("--candidate", help="name of the candidate arm and collection (default <collection>-rN)")
    r.add_argument("--min-clicks", type=int, default=50, help="training pages with clicks needed")
    r.add_argument("--min-holdout", type=int, default=10, help="held-out queries with clicks needed")
    r.add_argument("--max-corpus", type=int, default=50_000, help="chunks in the held-out corpus at most")
    r.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs")
    r.add_argument("--learning-rate", type=float, default=5e-5, help="fine-tuning learning rate")
    r.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch size")
    r.add_argument(
        "--dev-ratio",
        type=float,
        default=0.1,
        help="share of the training queries for choosing the best epoch (0: keep the last epoch)",
    )
    r.add_argument("--alpha", type=float, default=0.05, help="significance level of the gate")
    r.add_argument(
        "--click-gate",
        choices=("auto", "improve", "no-regression", "report"),
        default="auto",
        help="what the held-out clicks must show: auto (default) = an improvement without --test-dataset, "
        "reported only with it (clicks logged by the live model favour it: see the README)",
    )
    r.add_argument(
        "--propensity-eta",
        type=float,
        default=1.0,
        help="held-out clicks weigh rank^eta, the inverse of a position-based examination model "
        "(default 1; 0: every click counts once, which favours the model that logged them)",
    )
    r.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    r.add_argument("--why", default="retrained on logged clicks", help="reason kept in the audit log")
    r.set_defaults(handler=run_retrain)

    p = verbs.add_parser(
        "promote",
        parents=[common],
        help="make a staged arm the live arm (it must have passed the retrain gate)",
        description="Switch the live arm by an atomic rewrite of the arms file (the server re-reads it, no "
        "restart): all traffic to the arm, the others kept with share 0. An arm whose candidate record has no "
        "passed gate is refused. Each switch is appended to <collection>/audit.jsonl (time, who = "
        "$EMBEDLAB_OPERATOR or the OS user, from, to, why, gate).",
        epilog=examples('embedlab monitor promote scifact --arm scifact-r1 --why "won the interleaving test"'),
    )
    p.add_argument("--arm", required=True, help="the arm to make live")
    p.add_argument("--why", required=True, help="reason kept in the audit log")
    p.set_defaults(handler=run_promote)

    b = verbs.add_parser(
        "rollback",
        parents=[common],
        help="return to the arm that was live before the last promotion",
        description="Switch back to the previous live arm, read from the audit log; the switch is audited too.",
        epilog=examples('embedlab monitor rollback scifact --why "CTR fell after the promotion"'),
    )
    b.add_argument("--why", required=True, help="reason kept in the audit log")
    b.set_defaults(handler=run_rollback)


def run_retrain(args: argparse.Namespace) -> int:
    from embedlab.monitor.retrain import RetrainSpec, retrain

    outcome = retrain(
        RetrainSpec(
            collection=args.collection,
            root=args.root,
            arms=args.arms,
            feedback_db=args.feedback_db,
            test_dataset=args.test_dataset,
            holdout=args.holdout,
            seed=args.seed,
            out=args.out,
            stage=args.stage,
            candidate=args.candidate,
            min_clicks=args.min_clicks,
            min_holdout=args.min_holdout,
            max_corpus=args.max_corpus,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            dev_ratio=args.dev_ratio,
            alpha=args.alpha,
            propensity_eta=args.propensity_eta,
            click_gate=args.click_gate,
            use_cache=not args.no_cache,
            why=args.why,
        )
    )
    for line in outcome.lines:
        print(line)
    return 0 if outcome.passed else 1


def run_promote(args: argparse.Namespace) -> int:
    from embedlab.monitor.promotion import promote

    print(promote(args.collection, arm=args.arm, why=args.why, root=args.root, arms=args.arms).line())
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    from embedlab.monitor.promotion import rollback

    print(rollback(args.collection, why=args.why, root=args.root, arms=args.arms).line())
    return 0

"""``embedlab finetune``: contrastive fine-tuning with mined hard negatives and a before/after verdict.

Exit codes: 0 done; 1 ``--require-improvement`` and the fine-tune is not significantly better
(a CI regression gate); 2 a user error (bad data, leakage, unknown model...).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from embedlab.cli.help import examples
from embedlab.errors import EmbedlabError


def _window(text: str) -> tuple[int, int]:
    low, _sep, high = text.partition("-")
    try:
        return int(low), int(high)
    except ValueError:
        raise EmbedlabError(f"cannot read rank window {text!r}", expected="FROM-TO such as 10-30") from None


def _dims(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.split(",") if d.strip())
    except ValueError:
        raise EmbedlabError(f"cannot read Matryoshka dimensions {text!r}", expected="e.g. 384,256,128,64") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune an embedding model and prove on held-out data that it helped",
        description="Contrastive fine-tuning with mined hard negatives, then a before/after "
        "verdict on a held-out test split.",
        epilog=examples(
            "embedlab finetune --base all-MiniLM-L6-v2 --train scifact --test scifact --out models/scifact-ft "
            "--drop-leaked",
            "embedlab finetune --base all-MiniLM-L6-v2 --train clicks.jsonl --test scifact --out models/ft-clicks",
            "embedlab finetune --kind cross-encoder --base all-MiniLM-L6-v2 --first bm25 --train scifact "
            "--test scifact --out models/scifact-ce --drop-leaked",
            "embedlab finetune --kind image-text --base efficientnet-lite0 "
            "--train emoji/text2image,emoji/image2text,emoji/image2image --test emoji/image2image,emoji/text2image "
            "--out models/emoji-aligned",
        ),
    )
    p.add_argument("--base", required=True, help="base model name or folder (e.g. all-MiniLM-L6-v2)")
    p.add_argument(
        "--kind",
        default="bi-encoder",
        choices=["bi-encoder", "cross-encoder", "image-text"],
        help="bi-encoder (embeddings), cross-encoder (a re-ranker for --first; new 1-label head on --base) or "
        "image-text (a head on the frozen image backbone --base aligned with --text-model; --train/--test: "
        "comma-separated BEIR image tasks); default bi-encoder",
    )
    p.add_argument(
        "--first",
        help="cross-encoder: the first stage that mines negatives and is re-ranked (a pipeline; default bm25)",
    )
    p.add_argument(
        "--rerank-depth",
        type=int,
        default=100,
        help="cross-encoder: first-stage candidates re-ranked in dev and verdict (default 100)",
    )
    p.add_argument(
        "--train",
        required=True,
        help="training data: a BEIR dataset (its train split), or pairs / triplets / click-log JSONL",
    )
    p.add_argument(
        "--train-format",
        default="auto",
        choices=["auto", "beir", "pairs", "triplets", "clicks"],
        help="how to read --train (auto: a folder is BEIR; a JSONL file by its fields)",
    )
    p.add_argument("--train-split", default="train", help="qrels split of a BEIR training dataset (default train)")
    p.add_argument("--test", required=True, help="held-out BEIR dataset folder or name for the verdict")
    p.add_argument("--test-split", default="test", help="qrels split of --test used for the verdict")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist or be empty)")
    t = p.add_argument_group("training")
    t.add_argument(
        "--loss",
        choices=["mnrl", "cached-mnrl", "triplet", "bce", "listwise"],
        help="bi-encoder: mnrl (default), cached-mnrl, triplet; cross-encoder: listwise (default), bce",
    )
    t.add_argument("--matryoshka", type=_dims, default=(), metavar="DIMS", help="e.g. 384,256,128,64")
    t.add_argument(
        "--epochs", type=int, help="passes over the training examples, best dev epoch kept (default 4; image-text 60)"
    )
    t.add_argument(
        "--batch-size", type=int, help="examples per step, in-batch negatives for mnrl (default 32; image-text 128)"
    )
    t.add_argument("--mini-batch-size", type=int, default=16, help="cached-mnrl: texts per forward pass")
    t.add_argument("--lr", type=float, help="peak learning rate (default 5e-5; image-text 1e-3)")
    t.add_argument("--warmup", type=float, default=0.1, help="share of steps with linear warmup (default 0.1)")
    t.add_argument("--max-length", type=int, help="max tokens per text (default: the model's own)")
    t.add_argument(
        "--max-memory",
        type=float,
        metavar="GB",
        help="bound the training step's memory (GB = 2^30 bytes): picks the texts per forward pass, switching "
        "to cached-mnrl mini-batches when the batch does not fit (rule: README 'Fine-tuning memory'; default: none)",
    )
    t.add_argument(
        "--no-gradient-checkpointing",
        action="store_true",
        help="keep every layer's activations (faster, ~3.5x the memory; same result); default: checkpointing on",
    )
    t.add_argument("--dev-ratio", type=float, default=0.1, help="share of train queries held out as dev (default 0.1)")
    t.add_argument("--patience", type=int, default=2, help="epochs without dev gain before stopping (default 2)")
    t.add_argument("--seed", type=int, default=0, help="seed of the dev split, shuffling and initialisation")
    m = p.add_argument_group("hard-negative mining")
    m.add_argument("--hard-negatives", type=int, default=1, help="negatives per example (0: none; default 1)")
    m.add_argument(
        "--mine-ranks", type=_window, default=(10, 30), metavar="FROM-TO", help="rank window (default 10-30)"
    )
    m.add_argument(
        "--mine-margin",
        type=float,
        default=0.95,
        help="skip candidates scoring above MARGIN x the positive's score (default 0.95)",
    )
    m.add_argument("--cross-encoder", help="re-ranker filter: a local cross-encoder folder or 'word-overlap'")
    a = p.add_argument_group("image-text alignment (--kind image-text)")
    a.add_argument("--text-model", default="all-MiniLM-L6-v2", help="the text tower (default all-MiniLM-L6-v2)")
    a.add_argument(
        "--views",
        type=int,
        default=4,
        help="views per training image: the clean one plus seeded crop/colour-jitter views, cached (default 4)",
    )
    a.add_argument(
        "--text-projection",
        action="store_true",
        help="also train a linear text projection (default: the text tower is locked as in LiT, no projection)",
    )
    a.add_argument("--dim", type=int, help="shared space size with --text-projection (default: the text tower's)")
    a.add_argument(
        "--image-hidden", type=int, default=0, help="hidden width of a 2-layer image head (default 0: a linear head)"
    )
    g = p.add_argument_group("checks")
    g.add_argument("--allow-leakage", action="store_true", help="train even when train and test queries overlap")
    g.add_argument(
        "--drop-leaked", action="store_true", help="drop the training queries that overlap test queries, then train"
    )
    g.add_argument(
        "--require-improvement",
        action="store_true",
        help="exit 1 unless the fine-tune is significantly better (NDCG@10, p < alpha)",
    )
    g.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict's paired test")
    p.add_argument(
        "--cache-dir", type=Path, help="embedding cache folder (default $EMBEDLAB_CACHE or ~/.cache/embedlab)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.add_argument("--latency-queries", type=int, default=100, help="queries timed one by one for p50/p95")
    p.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    p.add_argument(
        "--json",
        action="store_true",
        help="print finetune.json to stdout instead of the table (the files are still written; logs go to stderr)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from embedlab.api.training import finetune

    result = finetune(
        args.base,
        args.train,
        args.test,
        args.out,
        train_format=args.train_format,
        train_split=args.train_split,
        test_split=args.test_split,
        loss=args.loss,
        matryoshka=args.matryoshka,
        epochs=args.epochs,
        batch_size=args.batch_size,
        mini_batch_size=args.mini_batch_size,
        learning_rate=args.lr,
        warmup=args.warmup,
        max_length=args.max_length,
        max_memory_gb=args.max_memory,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        dev_ratio=args.dev_ratio,
        patience=args.patience,
        seed=args.seed,
        hard_negatives=args.hard_negatives,
        mine_ranks=args.mine_ranks,
        mine_margin=args.mine_margin,
        cross_encoder=args.cross_encoder,
        allow_leakage=args.allow_leakage,
        drop_leaked=args.drop_leaked,
        alpha=args.alpha,
        cache=False if args.no_cache else (args.cache_dir or True),
        latency_queries=args.latency_queries,
        show_progress=not args.no_progress,
        kind=args.kind,
        first=args.first,
        rerank_depth=args.rerank_depth,
        text_model=args.text_model,
        views=args.views,
        text_projection=args.text_projection,
        dim=args.dim,
        image_hidden=args.image_hidden,
    )
    if result is None:  # another torchrun process: rank 0 reports
        return 0
    from embedlab.cli.eval_cmd import emit_json_file, results_line
    from embedlab.reports.markdown import markdown_table
    from embedlab.train.card import COLUMNS, before_after_rows

    if args.json:
        emit_json_file(result.out / "finetune.json")
    else:
        for verdict in getattr(result, "verdicts", ()) or (result.verdict,):  # image-text: one per --test task
            if verdict is not result.verdict:
                print(f"\n{verdict.dataset}: {verdict.reason()}")
            print(markdown_table(before_after_rows(verdict), COLUMNS))
        if result.memory:
            from embedlab.train.memory import MEMORY_COLUMNS, memory_rows

            print(markdown_table(memory_rows(result.memory), MEMORY_COLUMNS))
    results_line(result.verdict.reason(), json_out=args.json)
    results_line(
        f"model: {result.out}/ (README.md model card, finetune.json"
        f"{', report.html' if (result.out / 'report.html').is_file() else ''}); "
        f"wall time {result.seconds['total'] / 60:.1f} min",
        json_out=args.json,
    )
    if args.require_improvement and not result.verdict.improved:
        results_line(f"embedlab: --require-improvement: {result.verdict.reason()}", json_out=args.json)
        return 1
    return 0

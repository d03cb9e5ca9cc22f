"""CLIP-style alignment on the emoji data: ``embedlab finetune --kind image-text``, then the test figures.

    EMBEDLAB_DATA=../shared/datasets python benchmarks/bench_image_text_emoji.py [--limit 40]

equivalent to

    embedlab finetune --kind image-text --base efficientnet-lite0 \\
        --train emoji/text2image,emoji/image2text,emoji/image2image \\
        --test emoji/image2image,emoji/text2image,emoji/image2text --out /tmp/emoji-aligned

plus one baseline the finetune verdict cannot run itself: **BM25 on the OpenMoji tags** for
text -> image (a catalogue whose images carry keywords, searched lexically; the tags are
``items.jsonl``'s CLDR keywords, the caption is not among the indexed fields), compared per
query with the aligned model on the same test queries (paired randomization test and bootstrap
interval of the difference, :func:`embedlab.eval.compare.compare_pair`).

Writes ``benchmarks/results/image_text_emoji_<stamp>.json``: per test task the aligned model
against its verdict baseline (raw backbone features for image -> image, the untrained heads =
chance for the text tasks), Recall@1/10, NDCG@10, MRR@10 with 95% bootstrap intervals and
p-values; the BM25-on-tags comparison; the training curve and the wall time per phase.

``--limit N`` (smoke runs): the first N items of each split (train, dev, test), with a corpus of
those items only, written as BEIR folders next to a link to the real images; same recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = ("text2image", "image2text", "image2image")
METRICS = ("ndcg@10", "recall@1", "recall@10", "mrr@10")
TARGET_IMAGE2IMAGE_RECALL_AT_1 = 0.60  # issue 17, "Done when"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="emoji", help="the emoji dataset folder or name (default emoji)")
    parser.add_argument("--base", default="efficientnet-lite0", help="image backbone (default efficientnet-lite0)")
    parser.add_argument("--text-model", default="all-MiniLM-L6-v2", help="text tower (default all-MiniLM-L6-v2)")
    parser.add_argument("--views", type=int, default=4, help="views per training image (default 4)")
    parser.add_argument("--epochs", type=int, default=60, help="epochs (default 60, best dev epoch kept)")
    parser.add_argument("--image-hidden", type=int, default=0, help="hidden width of the image head (default 0)")
    parser.add_argument("--text-projection", action="store_true", help="train a text projection too (default off)")
    parser.add_argument("--dim", type=int, help="shared space size with --text-projection (default: the text's)")
    parser.add_argument("--patience", type=int, default=5, help="epochs without dev gain before stopping (default 5)")
    parser.add_argument("--out", type=Path, help="model folder (default a new /tmp folder)")
    parser.add_argument("--cache-dir", type=Path, help="embedding cache (default $EMBEDLAB_CACHE)")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results", help="results folder")
    parser.add_argument("--limit", type=int, help="smoke run on the first N items of each split (default: all)")
    args = parser.parse_args()

    from embedlab.api.training import finetune
    from embedlab.atomic import atomic_write_text
    from embedlab.data.beir import resolve_dataset

    root = resolve_dataset(args.data)
    work = Path(tempfile.mkdtemp(prefix="emoji-bench-"))
    if args.limit:
        root = _subset(root, work / "emoji", args.limit)
    tags = _tags_task(root, work / "text2image-tags")
    out = args.out or work / "emoji-aligned"
    started = time.perf_counter()
    result = finetune(
        args.base,
        ",".join(str(root / t) for t in TASKS),
        ",".join(str(root / t) for t in ("image2image", "text2image", "image2text")),
        out,
        kind="image-text",
        text_model=args.text_model,
        views=args.views,
        epochs=args.epochs,
        image_hidden=args.image_hidden,
        text_projection=args.text_projection,
        dim=args.dim,
        patience=args.patience,
        cache=args.cache_dir or True,
        latency_queries=20,
    )
    from embedlab.train.image_text_run import ImageTextResult

    assert isinstance(result, ImageTextResult)
    bm25 = _bm25_on_tags(tags, root / "text2image", out, args.cache_dir)
    wall = time.perf_counter() - started
    verdicts = [{"baseline": b, **v.as_dict()} for v, b in zip(result.verdicts, result.baselines, strict=True)]
    image2image = next(v for v in result.verdicts if v.dataset == "image2image")
    recall1 = image2image.metric("recall_at_1").tuned.mean
    payload = {
        "command": "python benchmarks/bench_image_text_emoji.py " + " ".join(sys.argv[1:]),
        "recipe": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "model_folder": str(out),
        "verdicts": verdicts,
        "text2image_vs_bm25_on_tags": bm25,
        "image2image_recall_at_1_target": TARGET_IMAGE2IMAGE_RECALL_AT_1,
        "image2image_recall_at_1_target_met": recall1 >= TARGET_IMAGE2IMAGE_RECALL_AT_1,
        "training": json.loads((out / "finetune.json").read_text())["training"],
        "seconds": {**result.seconds, "bench_total": wall},
        "environment": result.environment,
        "limit": args.limit,
    }
    name = "image_text_emoji" + (f"_limit{args.limit}" if args.limit else "")
    target = args.results / f"{name}_{time.strftime('%Y%m%d-%H%M')}.json"
    atomic_write_text(target, json.dumps(payload, indent=2, default=str) + "\n")
    for verdict, baseline in zip(result.verdicts, result.baselines, strict=True):
        cells = ", ".join(
            f"{m.metric} {m.base.mean:.3f} -> {m.tuned.mean:.3f} (p={m.p_value:.3g})" for m in verdict.metrics
        )
        print(f"{verdict.dataset} (base: {baseline}): {cells}")
    print(
        "text2image vs BM25 on tags: "
        + ", ".join(f"{k} {c['bm25']:.3f} vs {c['aligned']:.3f} (p={c['p']:.3g})" for k, c in bm25.items())
    )
    print(
        f"image2image Recall@1 {recall1:.3f} (target {TARGET_IMAGE2IMAGE_RECALL_AT_1}); "
        f"wall {wall / 60:.1f} min; {target}"
    )
    if not args.out:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _eval(dataset: Path, models: list, cache_dir: Path | None):
    from embedlab.eval.metrics import parse_metrics
    from embedlab.eval.runner import EvalSpec, run_eval

    spec = EvalSpec(
        datasets=(str(dataset),),
        models=tuple(models),
        metrics=tuple(parse_metrics(METRICS)),
        use_cache=True,
        cache_dir=cache_dir,
        latency_queries=0,
    )
    return run_eval(spec).results


def _bm25_on_tags(tags: Path, text2image: Path, model: Path, cache_dir: Path | None) -> dict[str, dict[str, Any]]:
    """BM25 over the tags against the aligned model on the same test queries, per metric."""
    from embedlab.encoders.spec import ModelSpec
    from embedlab.eval.compare import compare_pair, mean_interval
    from embedlab.search.pipeline import parse_pipeline

    (bm25,) = _eval(tags, [parse_pipeline("bm25")], cache_dir)
    (aligned,) = _eval(text2image, [ModelSpec(model=str(model))], cache_dir)
    out = {}
    for metric in ("ndcg_at_10", "recall_at_1", "recall_at_10", "mrr_at_10"):
        a, b = aligned.evaluation.per_query[metric], bm25.evaluation.per_query[metric]
        pair = compare_pair(a, b, a="aligned", b="bm25-tags", metric=metric)
        ia, ib = mean_interval(a), mean_interval(b)
        out[metric] = {
            "aligned": ia.mean,
            "aligned_interval": [ia.low, ia.high],
            "bm25": ib.mean,
            "bm25_interval": [ib.low, ib.high],
            "difference": pair.difference_interval.mean,
            "difference_interval": [pair.difference_interval.low, pair.difference_interval.high],
            "p": pair.p_value,
        }
    return out


def _tags_task(root: Path, folder: Path) -> Path:
    """text2image with each OpenMoji image replaced by its tags (a text document): BM25's corpus."""
    items = [json.loads(line) for line in (root / "items.jsonl").read_text(encoding="utf-8").splitlines() if line]
    folder.mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for item in items:
            corpus.write(json.dumps({"_id": item["_id"], "title": "", "text": " ".join(item["tags"])}) + "\n")
    shutil.copyfile(root / "text2image" / "queries.jsonl", folder / "queries.jsonl")
    shutil.copytree(root / "text2image" / "qrels", folder / "qrels")
    return folder


def _subset(root: Path, target: Path, limit: int) -> Path:
    """The first ``limit`` items of each split as a smaller emoji dataset (images linked)."""
    items = [json.loads(line) for line in (root / "items.jsonl").read_text(encoding="utf-8").splitlines() if line]
    kept: list[dict] = []
    for split in ("train", "dev", "test"):
        kept += [i for i in items if i["split"] == split][:limit]
    ids = {i["_id"] for i in kept}
    target.mkdir(parents=True)
    (target / "images").symlink_to((root / "images").resolve())
    (target / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in kept), encoding="utf-8")
    for task in TASKS:
        (target / task / "qrels").mkdir(parents=True)
        for name in ("corpus.jsonl", "queries.jsonl"):
            lines = (root / task / name).read_text(encoding="utf-8").splitlines()
            wanted = [x for x in lines if json.loads(x)["_id"].removeprefix("q-") in ids]
            (target / task / name).write_text("\n".join(wanted) + "\n", encoding="utf-8")
        for split in ("train", "dev", "test"):
            rows = (root / task / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
            kept_rows = [rows[0]] + [r for r in rows[1:] if r.split("\t")[1] in ids]
            (target / task / "qrels" / f"{split}.tsv").write_text("\n".join(kept_rows) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":
    raise SystemExit(main())

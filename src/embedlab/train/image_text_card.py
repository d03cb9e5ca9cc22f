"""The model card (``README.md``) and ``finetune.json`` of an aligned image-text folder.

Same layout as the other kinds' card (:mod:`embedlab.train.card`: front matter, verdict,
before/after table with its note, training curve, conditions), with one before/after table per
``--test`` task and its baseline said in words.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from embedlab.reports.markdown import markdown_table
from embedlab.train.card import COLUMNS, CURVE_COLUMNS, TABLE_NOTE, before_after_rows, curve_rows

if TYPE_CHECKING:
    from embedlab.train.image_text_run import ImageTextResult


def render_image_text_card(result: ImageTextResult) -> str:
    spec, t, a = result.spec, result.spec.training, result.spec.align
    curve = curve_rows(result.training.curve, minutes_digits=2)
    text = "locked (LiT), identity" if not a.text_projection else "locked, with a trained linear projection"
    head = "linear" if not a.image_hidden else f"Linear -> GELU -> Linear (hidden {a.image_hidden})"
    hw = result.environment["hardware"]
    by_kind = result.data.get("pairs_by_kind")
    pairs = ", ".join(f"{k} {v}" for k, v in by_kind.items()) if isinstance(by_kind, dict) else ""
    scale = result.alignment.get("logit_scale")
    dev = "the tasks' own dev split" if result.alignment.get("own_dev_split") else f"{spec.dev_ratio:.0%} of train"
    lines = [
        "---",
        "library_name: embedlab",
        f"base_model: {spec.base}",
        "pipeline_tag: zero-shot-image-classification",
        "tags:",
        "- embedlab",
        "- image-text",
        "- clip-style",
        "---",
        "",
        f"# {spec.out.name}",
        "",
        f"A two-tower image-text model: `{spec.base}` (frozen) with a trained {head} image head, and "
        f"`{a.text_model}` as the text tower ({text}), aligned by `embedlab finetune --kind image-text` "
        f"(CLIP's symmetric InfoNCE, learned temperature) on `{spec.train}` split `{spec.train_split}` "
        f"({result.data['examples']} pairs: {pairs}); {result.dev_queries} dev queries ({dev}).",
        "",
    ]
    for verdict, baseline in zip(result.verdicts, result.baselines, strict=True):
        lines += [
            f"## `{verdict.dataset}` split `{verdict.split}` ({verdict.queries} queries)",
            "",
            f"Base: {baseline}.  **Verdict:** {verdict.reason()}.",
            "",
            markdown_table(before_after_rows(verdict), COLUMNS),
            "",
        ]
    lines += [
        TABLE_NOTE,
        "",
        *([f"**Warning:** {w}." for w in result.warnings] + ([""] if result.warnings else [])),
        "## Training",
        "",
        f"{a.views} view(s) per training image (view 0 clean, the others seeded random resized crops and colour "
        f"jitter, backbone features computed once and cached); epochs {t.epochs}, batch size {t.batch_size}, "
        f"learning rate {t.learning_rate} (AdamW, warmup {t.warmup_ratio}, cosine), weight decay {t.weight_decay}, "
        f"patience {t.patience}, seed {t.seed}; {result.training.steps} steps in {result.training.seconds / 60:.1f} "
        f"min; best checkpoint: epoch {result.training.best_epoch}"
        f"{' (early stop)' if result.training.stopped_early else ''}; learned logit scale "
        + (f"{scale:.1f}." if isinstance(scale, float) else "n/a."),
        "",
        markdown_table(curve, CURVE_COLUMNS),
        "",
        "Dev NDCG@10 ranks each dev query against its task's whole corpus (mean over the tasks): it only picks "
        "the checkpoint.",
        "",
        "## Leakage check",
        "",
        result.leakage.summary() + ".",
        "",
        "## Use",
        "",
        f"`embedlab eval --model {spec.out} --dataset {spec.test.split(',')[0]}`; the folder encodes texts and "
        f"images (the heads in `heads.npz`, the towers loaded by name); `{spec.out}/untrained` is the baseline.",
        "",
        "## Conditions",
        "",
        f"embedlab {result.environment['embedlab']}; {hw['cpu']} ({hw['cpus']} CPUs); wall time "
        f"{result.seconds['total'] / 60:.1f} min "
        f"({', '.join(f'{k} {s / 60:.1f}' for k, s in result.seconds.items() if k != 'total')} min).",
        "",
    ]
    return "\n".join(lines)


def result_json(result: ImageTextResult) -> str:
    payload = {
        "spec": result.spec.as_dict(),
        "data": result.data,
        "leakage": result.leakage.as_dict(),
        "training": {**result.training.__dict__, "curve": [p.__dict__ for p in result.training.curve]},
        "alignment": result.alignment,
        "dev_queries": result.dev_queries,
        "warnings": list(result.warnings),
        "verdict": result.verdict.as_dict(),
        "verdicts": [{"baseline": b, **v.as_dict()} for v, b in zip(result.verdicts, result.baselines, strict=True)],
        "seconds": result.seconds,
        "environment": result.environment,
    }
    return json.dumps(payload, indent=2, default=str) + "\n"

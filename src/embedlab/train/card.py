"""The model card (``README.md`` of the output folder) and ``finetune.json``.

The card follows the Hugging Face model-card layout (YAML front matter, then Markdown) so
hubs and sentence-transformers tooling read it; it says what the model was trained from,
on what, with which settings, what mining did, and how it compares with its base.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from embedlab.reports.markdown import markdown_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from embedlab.train.fit import EpochPoint
    from embedlab.train.run import FinetuneResult, FinetuneSpec
    from embedlab.train.verdict import Verdict

LABELS = {
    "ndcg_at_10": "NDCG@10",
    "mrr_at_10": "MRR@10",
    "recall_at_100": "Recall@100",
    "recall_at_1": "Recall@1",
    "recall_at_10": "Recall@10",
}


def before_after_rows(verdict: Verdict) -> list[dict[str, str]]:
    """One row per metric plus latency and size: base, fine-tuned, change."""
    rows = []
    for m in verdict.metrics:
        rows.append(
            {
                "": LABELS.get(m.metric, m.metric),
                "base": f"{m.base.mean:.4f} [{m.base.low:.4f}, {m.base.high:.4f}]",
                "fine-tuned": f"{m.tuned.mean:.4f} [{m.tuned.low:.4f}, {m.tuned.high:.4f}]",
                "change": f"{m.delta.mean:+.4f} [{m.delta.low:+.4f}, {m.delta.high:+.4f}]",
                "p": f"{m.p_value:.4g}",
            }
        )
    paired = verdict.latency
    for key, label in (("p50_ms", "latency p50 (ms)"), ("p95_ms", "latency p95 (ms)")):
        b, t = verdict.base.latency.get(key), verdict.tuned.latency.get(key)
        if isinstance(b, float) and isinstance(t, float):
            change = "see paired row" if paired is not None else f"{t - b:+.1f}"  # same shape: no noise as change
            rows.append({"": label, "base": f"{b:.1f}", "fine-tuned": f"{t:.1f}", "change": change, "p": ""})
    if paired is not None:
        rows.append(
            {
                "": "latency, interleaved median (ms)",
                "base": f"{paired.median_a_ms:.1f}",
                "fine-tuned": f"{paired.median_b_ms:.1f}",
                "change": paired.summary(),
                "p": f"{paired.p_value:.2g}",
            }
        )
    b, t = verdict.base.size.get("weights_bytes"), verdict.tuned.size.get("weights_bytes")
    if isinstance(b, int) and isinstance(t, int):
        rows.append(
            {
                "": "weights (MB)",
                "base": f"{b / 1e6:.1f}",
                "fine-tuned": f"{t / 1e6:.1f}",
                "change": f"{(t - b) / 1e6:+.1f}",
                "p": "",
            }
        )
    return rows


COLUMNS = ["", "base", "fine-tuned", "change", "p"]
TABLE_NOTE = (
    "Mean over test queries with 95% percentile-bootstrap intervals; change = fine-tuned - base per "
    "query, p from a two-sided paired randomization test (10,000 sign flips).  Latency: one query at a "
    "time, encode + top-10 search, no cache, same machine and runner for both; for two models of the same "
    "shape the change is the interleaved paired test (query encoding, A/B alternating on the same queries, "
    "sign-flip test on log latency), never the difference of the two separate probes."
)


def audit_rows(result: FinetuneResult) -> list[dict[str, str]]:
    a = result.audit
    fn = (
        "n/a (no query has a second positive in the window)"
        if a.false_negative_rate is None
        else (
            f"{a.false_negative_rate:.3f} ({a.false_negative_passed} of {a.false_negative_probes} held-out positives)"
        )
    )
    items = [
        ("examples", a.examples),
        ("already had enough negatives", a.already_had),
        ("candidates considered", a.candidates),
        ("skipped: known positive", a.skipped_positive),
        ("skipped: above the rank window", a.skipped_rank),
        ("skipped: margin", a.skipped_margin),
        ("skipped: cross-encoder", a.skipped_cross_encoder),
        ("not needed", a.not_needed),
        ("kept", a.kept),
        ("examples without a mined negative", a.examples_without_negative),
        ("false-negative rate (est.)", fn),
    ]
    return [{"": k, "value": str(v)} for k, v in items]


CURVE_COLUMNS = ["epoch", "steps", "train loss", "dev NDCG@10", "minutes"]


def curve_rows(curve: Sequence[EpochPoint], *, minutes_digits: int = 1) -> list[dict[str, str]]:
    """The training curve as table rows (epoch 0 = before any step)."""
    return [
        {
            "epoch": str(p.epoch),
            "steps": str(p.steps),
            "train loss": "" if p.train_loss is None else f"{p.train_loss:.4f}",
            "dev NDCG@10": "" if p.dev_ndcg_at_10 is None else f"{p.dev_ndcg_at_10:.4f}",
            "minutes": f"{p.seconds / 60:.{minutes_digits}f}",
        }
        for p in curve
    ]


def render_card(result: FinetuneResult) -> str:
    spec, t, v = result.spec, result.spec.training, result.verdict
    mining = spec.mining
    curve = curve_rows(result.training.curve)
    hw = result.environment["hardware"]
    cross = spec.kind == "cross-encoder"
    first = spec.first or "bm25"
    what = (
        f"`{spec.base}` trained by `embedlab finetune --kind cross-encoder` ({t.loss} loss) as a re-ranker of the "
        f"top {spec.rerank_depth} of `{first}`"
        if cross
        else f"`{spec.base}` fine-tuned by `embedlab finetune` ({t.loss} loss)"
    )
    lines = [
        "---",
        "library_name: sentence-transformers",
        f"base_model: {spec.base}",
        f"pipeline_tag: {'text-ranking' if cross else 'sentence-similarity'}",
        "tags:",
        "- sentence-transformers",
        f"- {'cross-encoder' if cross else 'sentence-similarity'}",
        "- embedlab",
        "- fine-tuned",
        "---",
        "",
        f"# {spec.out.name}",
        "",
        (
            f"{what} on `{spec.train}` "
            f"({result.data['format']}, {result.data['examples']} examples, {result.data['queries']} queries; "
            f"{result.dev_queries} of them held out as dev), judged on `{spec.test}` split `{spec.test_split}` "
            f"({v.queries} queries)"
            + (
                f": base = `{first}` alone, fine-tuned = `{first} >> {spec.out.name}@{spec.rerank_depth}`."
                if cross
                else "."
            )
        ),
        "",
        f"**Verdict:** {v.reason()}.",
        "",
        *([f"**Warning:** {w}." for w in result.warnings] + ([""] if result.warnings else [])),
        "## Before / after (held-out test)",
        "",
        markdown_table(before_after_rows(v), COLUMNS),
        "",
        TABLE_NOTE,
        "",
        "## Training",
        "",
        (
            f"loss {t.loss}{' + Matryoshka ' + str(list(t.matryoshka_dims)) if t.matryoshka_dims else ''}, "
            f"epochs {t.epochs}, batch size {t.batch_size}, learning rate {t.learning_rate}, warmup {t.warmup_ratio}, "
            f"weight decay {t.weight_decay}, max grad norm {t.max_grad_norm}, "
            f"max length {result.training.conditions.get('max_seq_length')}, seed {t.seed}, patience {t.patience}; "
            f"device {result.training.device}; {result.training.steps} steps in "
            f"{result.training.seconds / 60:.1f} min; "
            f"best checkpoint: epoch {result.training.best_epoch}"
            f"{' (early stop)' if result.training.stopped_early else ''}."
        ),
        "",
        markdown_table(curve, CURVE_COLUMNS),
        "",
        (
            f"Dev NDCG@10 re-ranks the first stage's top {spec.rerank_depth} training passages for each of "
            f"{result.dev_queries} dev queries: it only picks the checkpoint."
            if cross
            else f"Dev NDCG@10 ranks {result.dev_queries} dev queries against a reduced corpus (their positives, "
            f"their mined negatives and {spec.dev_corpus_sample} random passages): it only picks the checkpoint."
        ),
        "",
        "## Hard-negative mining",
        "",
        (
            f"{mining.per_query} negative(s) per example from ranks {mining.rank_from}-{mining.rank_to} of "
            f"{'the first stage `' + first + '`' if cross else 'the base model'}, "
            f"margin {mining.margin} x positive score"
            f"{', cross-encoder ' + mining.cross_encoder if mining.cross_encoder else ''}."
        ),
        "",
        markdown_table(audit_rows(result), ["", "value"]),
        "",
        "## Leakage check",
        "",
        result.leakage.summary() + _leakage_action(result) + ".",
        "",
        *_memory(result),
        "## Use",
        "",
        *_use(spec, first),
        "",
        "## Conditions",
        "",
        f"embedlab {result.environment['embedlab']}; {hw['cpu']} ({hw['cpus']} CPUs), "
        f"GPU: {hw['gpu'] or 'none'}; wall time {result.seconds['total'] / 60:.1f} min "
        f"({', '.join(f'{k} {s / 60:.1f}' for k, s in result.seconds.items() if k != 'total')} min); "
        + ", ".join(f"{k} {val}" for k, val in result.environment["libraries"].items())
        + ".",
        "",
    ]
    return "\n".join(lines)


def _use(spec: FinetuneSpec, first: str) -> list[str]:
    if spec.kind == "cross-encoder":
        return [
            "```python",
            "from sentence_transformers import CrossEncoder",
            f'scores = CrossEncoder("{spec.out}").predict([("query", "passage"), ...])  # raw logits',
            "```",
            "",
            f'or `embedlab eval --model "{first} >> {spec.out}@{spec.rerank_depth}" --dataset ...`.',
        ]
    return [
        "```python",
        "from sentence_transformers import SentenceTransformer",
        f'model = SentenceTransformer("{spec.out}")',
        "```",
        "",
        f"or `embedlab eval --model {spec.out} --dataset ...`.",
    ]


def _memory(result: FinetuneResult) -> list[str]:
    if not result.memory:
        return []
    from embedlab.train.memory import MEMORY_COLUMNS, MEMORY_NOTE, memory_rows

    return ["## Memory per phase", "", markdown_table(memory_rows(result.memory), MEMORY_COLUMNS), "", MEMORY_NOTE, ""]


def _leakage_action(result: FinetuneResult) -> str:
    if result.leakage.clean:
        return ""
    if result.spec.drop_leaked:
        return f"; the {len({o.train_id for o in result.leakage.overlaps})} overlapping training queries were dropped"
    return "; trained anyway (--allow-leakage): the verdict is optimistic"


def result_json(result: FinetuneResult) -> str:
    payload = {
        "spec": result.spec.as_dict(),
        "data": result.data,
        "leakage": result.leakage.as_dict(),
        "mining": result.audit.as_dict(),
        "training": {**result.training.__dict__, "curve": [p.__dict__ for p in result.training.curve]},
        "dev_queries": result.dev_queries,
        "warnings": list(result.warnings),
        "memory": result.memory,
        "verdict": result.verdict.as_dict(),
        "seconds": result.seconds,
        "environment": result.environment,
    }
    return json.dumps(payload, indent=2, default=str) + "\n"

"""The fine-tune's self-contained HTML report: verdict, before/after table, training curve."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from embedlab.reports.html import STYLE, html_table
from embedlab.reports.svg import Point, scatter
from embedlab.train.card import COLUMNS, TABLE_NOTE, audit_rows, before_after_rows
from embedlab.train.memory import MEMORY_COLUMNS, memory_rows

if TYPE_CHECKING:
    from embedlab.train.run import FinetuneResult


def render_report(result: FinetuneResult) -> str:
    v = result.verdict
    curve = result.training.curve
    dev = [Point(f"epoch {p.epoch}", float(p.epoch), p.dev_ndcg_at_10) for p in curve if p.dev_ndcg_at_10 is not None]
    loss = [Point(f"epoch {p.epoch}", float(p.epoch), p.train_loss) for p in curve if p.train_loss is not None]
    title = f"embedlab finetune: {html.escape(result.spec.out.name)}"
    body = [
        f"<h1>{title}</h1>",
        f'<p class="verdict">{html.escape(v.reason())}</p>',
        *(f'<p class="fail warning">Warning: {html.escape(w)}.</p>' for w in result.warnings),
        f"<h2>Before / after on {html.escape(v.dataset)} ({html.escape(v.split)}, {v.queries} queries)</h2>",
        html_table(before_after_rows(v), COLUMNS),
        f'<p class="note">{html.escape(TABLE_NOTE)}</p>',
        "<h2>Training curve</h2>",
        scatter(
            dev,
            x_label="epoch (0 = base model)",
            y_label="dev NDCG@10 (reduced corpus)",
            front=[p.label for p in dev],
            log_x=False,
            min_y_span=0.1,  # a dev NDCG@10 change of 0.002 must not fill the plot
        )
        if dev
        else "<p>no dev split</p>",
        scatter(loss, x_label="epoch", y_label="mean training loss", front=[p.label for p in loss], log_x=False),
        (
            f'<p class="note">best checkpoint: epoch {result.training.best_epoch}; {result.training.steps} steps in '
            f"{result.training.seconds / 60:.1f} min on {html.escape(result.training.device)}</p>"
        ),
        "<h2>Hard-negative mining</h2>",
        html_table(audit_rows(result), ["", "value"]),
        "<h2>Leakage check</h2>",
        f"<p>{html.escape(result.leakage.summary())}</p>",
        *(
            ["<h2>Memory per phase</h2>", html_table(memory_rows(result.memory), MEMORY_COLUMNS)]
            if result.memory
            else []
        ),
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )

"""Selection reports: terminal summary, Markdown, self-contained HTML with plots, JSON."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from embedlab.atomic import atomic_write_text
from embedlab.eval.runner import EvalReport
from embedlab.reports.html import STYLE, html_table
from embedlab.reports.markdown import markdown_table
from embedlab.reports.svg import Point, grouped_bars, scatter
from embedlab.reports.terminal import console as terminal_console
from embedlab.reports.terminal import rich_table
from embedlab.select.analysis import QUALITY, Selection, pareto_front

MIN_QUALITY_SPAN = 0.1  # nDCG@10 axes span at least this much: small differences look small


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def matrix_rows(selection: Selection, dataset: str) -> list[dict[str, str]]:
    rows = []
    for c in selection.cells:
        if c.dataset != dataset:
            continue
        row = {"model": c.model}
        for key, label in (("ndcg_at_10", "nDCG@10"), ("mrr_at_10", "MRR@10"), ("recall_at_100", "Recall@100")):
            ci = c.quality.get(key)
            row[label] = "-" if ci is None else f"{ci.mean:.4f} [{ci.low:.4f}, {ci.high:.4f}]"
        row.update(
            {
                "p50 ms": f"{c.p50_ms:.2f}",
                "p95 ms": f"{c.p95_ms:.2f}",
                "docs/s": "-" if c.docs_per_s is None else f"{c.docs_per_s:.1f}",
                "size MB": f"{c.size_mb:.1f}",
                "index MB": f"{c.index_mb:.1f}",
                "params (M)": "-" if not c.parameters else f"{c.parameters / 1e6:.1f}",
                "cost / 1k queries": _money(c.cost_per_1k_queries),
                "cost / 1M docs": _money(c.cost_per_1m_docs),
            }
        )
        row.update(_shrink_columns(c.index_bytes_per_vector, c.index_mb_per_1m, c.retained, selection))
        rows.append(row)
    return rows


def _shrink_columns(
    per_vector: float | None, per_1m: float | None, retained: float | None, selection: Selection
) -> dict[str, str]:
    """Index bytes per vector, projected MB per 1M documents and retained quality, where known
    (retained only when the selection has a reference: ``embedlab shrink``)."""
    out = {}
    if per_vector is not None:
        out["index B/vector"] = f"{per_vector:.0f}"
    if any(c.index_mb_per_1m is not None for c in selection.cells):
        out["index MB / 1M docs"] = "-" if per_1m is None else f"{per_1m:.0f}"
    if any(c.retained is not None for c in selection.cells):
        out["retained"] = "-" if retained is None else f"{retained:.3f}"
    return out


def summary_rows(selection: Selection) -> list[dict[str, str]]:
    tied = {c.model: c for c in selection.comparisons}
    rows = []
    for s in sorted(selection.summaries, key=lambda s: (-s.mean_quality, s.model)):
        comp = tied.get(s.model)
        rows.append(
            {
                "model": s.model,
                "mean nDCG@10": f"{s.mean_quality:.4f}",
                "mean rank": f"{s.mean_rank:.2f}",
                "worst p95 ms": f"{s.worst_p95_ms:.2f}",
                "size MB": f"{s.size_mb:.1f}",
                "cost / 1k queries": _money(s.cost_per_1k_queries),
                **_shrink_columns(None, s.index_mb_per_1m, s.retained, selection),
                "meets constraints": "yes" if s.qualifies else "no: " + "; ".join(s.violations),
                "vs best (Holm p)": "best"
                if s.model == selection.best
                else (
                    f"{comp.mean_difference:+.4f} (p={comp.p_holm:.3g}{', tied' if comp.tied else ''})" if comp else "-"
                ),
                "Pareto": ", ".join(
                    n
                    for n, front in (("latency", selection.pareto_latency), ("size", selection.pareto_size))
                    if s.model in front
                )
                or "-",
            }
        )
    return rows


def _verdict(selection: Selection) -> str:
    if selection.recommended is None:
        return "No recommendation: nothing meets the constraints."
    return f"Recommendation: {selection.recommended}"


def print_selection(selection: Selection, report: EvalReport, console: Console | None = None) -> None:
    console = console or terminal_console()
    for dataset in report.datasets:
        rows = matrix_rows(selection, dataset)
        if rows:
            console.print(_rich(rows, f"{dataset}: trade-off matrix (95% bootstrap CIs)"))
    console.print(_rich(summary_rows(selection), f"across {len(report.datasets)} dataset(s)"))
    for failure in selection.failures:
        console.print(f"FAILED {failure.model} on {failure.dataset}: {failure.error}", style="red", highlight=False)
    console.print(_verdict(selection), style="bold")
    for line in selection.reasons:
        console.print(line, highlight=False)


def _rich(rows: list[dict[str, str]], title: str) -> Table:
    return rich_table(title, list(rows[0]), [list(r.values()) for r in rows])


def render_markdown(selection: Selection, report: EvalReport) -> str:
    parts = (
        [
            "# embedlab model selection",
            "",
            f"Constraints: {selection.constraints.describe()}.",
            "",
            f"**{_verdict(selection)}**",
            "",
        ]
        + [f"- {line}" for line in selection.reasons]
        + [""]
    )
    parts += ["## Across datasets", "", markdown_table(summary_rows(selection), list(summary_rows(selection)[0])), ""]
    parts += [
        f"Pareto front, quality vs p95 latency: {', '.join(selection.pareto_latency)}",
        f"Pareto front, quality vs size: {', '.join(selection.pareto_size)}",
        "",
    ]
    for dataset in report.datasets:
        rows = matrix_rows(selection, dataset)
        if rows:
            parts += [f"## {dataset}", "", markdown_table(rows, list(rows[0])), ""]
    if selection.failures:
        parts += ["## Failed candidates", ""] + [f"- {f.model} on {f.dataset}: {f.error}" for f in selection.failures]
    return "\n".join(parts) + "\n"


def _index_size_plot(selection: Selection) -> list[str]:
    """Quality vs projected index size per 1M documents, when the candidates' indexes differ."""
    sized = {s.model: (s.mean_quality, s.index_mb_per_1m) for s in selection.summaries if s.index_mb_per_1m}
    if len({size for _, size in sized.values()}) < 2:
        return []
    front = pareto_front({m: (q, float(size or 0)) for m, (q, size) in sized.items()})
    points = [Point(m, float(size or 0), q) for m, (q, size) in sized.items()]
    return [
        "<h2>Quality vs index size</h2>",
        scatter(points, x_label="index MB per 1M documents (projected)", y_label="mean nDCG@10", front=front),
    ]


def render_html(selection: Selection, report: EvalReport) -> str:
    summary = summary_rows(selection)
    points = [Point(s.model, s.worst_p95_ms, s.mean_quality) for s in selection.summaries]
    if len(report.datasets) == 1:  # with one dataset, CI bars are that dataset's bootstrap interval
        points = [
            Point(c.model, c.p95_ms, c.quality[QUALITY].mean, c.quality[QUALITY].low, c.quality[QUALITY].high)
            for c in selection.cells
        ]
    size_points = [Point(s.model, max(s.size_mb, 0.01), s.mean_quality) for s in selection.summaries]
    datasets = list(report.datasets)
    series = {
        s.model: [
            next(c.quality[QUALITY].mean for c in selection.cells if c.model == s.model and c.dataset == d)
            for d in datasets
        ]
        for s in selection.summaries
    }
    errors = {
        s.model: [
            next(
                (c.quality[QUALITY].low, c.quality[QUALITY].high)
                for c in selection.cells
                if c.model == s.model and c.dataset == d
            )
            for d in datasets
        ]
        for s in selection.summaries
    }
    c = selection.constraints
    floor = None if c.min_ndcg10 is None else (c.min_ndcg10, f"--min-ndcg10 {c.min_ndcg10:g}")
    body = [
        "<h1>embedlab model selection</h1>",
        f"<p>Constraints: {html.escape(selection.constraints.describe())}.</p>",
        f'<p class="verdict"><strong>{html.escape(_verdict(selection))}</strong></p><ul class="reasons">',
        *[f"<li>{html.escape(line)}</li>" for line in selection.reasons],
        "</ul>",
        "<h2>Quality vs latency</h2>",
        scatter(
            points,
            x_label="worst p95 latency per query (ms)",
            y_label="nDCG@10",
            front=selection.pareto_latency,
            x_limit=None if c.max_p95_ms is None else (c.max_p95_ms, f"--max-p95-ms {c.max_p95_ms:g}"),
            y_limit=floor,
            min_y_span=MIN_QUALITY_SPAN,
        ),
        "<h2>Quality vs size</h2>",
        scatter(
            size_points,
            x_label="model size on disk (MB)",
            y_label="mean nDCG@10",
            front=selection.pareto_size,
            x_limit=None if c.max_size_mb is None else (c.max_size_mb, f"--max-size-mb {c.max_size_mb:g}"),
            y_limit=floor,
            min_y_span=MIN_QUALITY_SPAN,
        ),
        *_index_size_plot(selection),
        "<h2>nDCG@10 per dataset (95% bootstrap intervals)</h2>",
        grouped_bars(datasets, series, y_label="nDCG@10", errors=errors),
        "<h2>Across datasets</h2>",
        html_table(summary, list(summary[0])) if summary else "",
    ]
    for dataset in datasets:
        rows = matrix_rows(selection, dataset)
        if rows:
            body += [f"<h2>{html.escape(dataset)}</h2>", html_table(rows, list(rows[0]))]
    for f in selection.failures:
        body.append(
            f'<p class="fail">{html.escape(f.model)} failed on {html.escape(f.dataset)}: '
            f"{html.escape(f.error or '')}</p>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        "<title>embedlab model selection</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )


def write_selection(selection: Selection, report: EvalReport, out: Path) -> list[Path]:
    from embedlab.output import moved, result_set

    with result_set(out) as stage:  # one set: all of them or, on a failed write, none
        written = _write_selection_files(selection, report, stage)
    return moved(written, stage, out)


def _write_selection_files(selection: Selection, report: EvalReport, out: Path) -> list[Path]:
    from embedlab.reports.results import write_output_files

    written = write_output_files(report, out / "eval")
    data = {
        "constraints": asdict(selection.constraints),
        "best": selection.best,
        "recommended": selection.recommended,
        "reasons": selection.reasons,
        "pareto_latency": selection.pareto_latency,
        "pareto_size": selection.pareto_size,
        "summaries": [asdict(s) for s in selection.summaries],
        "cells": [asdict(c) for c in selection.cells],
        "comparisons": [asdict(c) for c in selection.comparisons],
        "given_up": [asdict(g) for g in selection.given_up],
        "failures": [{"model": f.model, "dataset": f.dataset, "error": f.error} for f in selection.failures],
    }
    for name, text in (
        ("selection.json", json.dumps(data, indent=2, default=str)),
        ("selection.md", render_markdown(selection, report)),
        ("selection.html", render_html(selection, report)),
    ):
        atomic_write_text(out / name, text)
        written.append(out / name)
    return written

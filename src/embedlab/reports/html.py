"""A self-contained HTML report (no external files, scripts or fonts): tables plus an
inline SVG plot of quality against single-query latency."""

from __future__ import annotations

import html

from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.eval.stats import bootstrap_ci
from embedlab.eval.versus import comparison_metric, display_rows, display_title
from embedlab.reports.rows import FOOTNOTE, busy_note, columns, conditions_line, rows
from embedlab.reports.svg import Point, scatter

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f3f3f3}.fail{color:#b00}.note{color:#555;font-size:.85rem}
"""


def html_table(all_rows: list[dict[str, str]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in all_rows)
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# the wide results table, split into readable groups (columns not named here go with quality)
SPEED = ("docs/s", "p50 ms", "p95 ms", "load s")
SIZE = ("params (M)", "disk MB", "dim", "vocabulary", "index MB", "peak RSS MB")


def grouped_tables(ok_rows: list[dict[str, str]]) -> list[str]:
    """Quality, speed and size as three tables keyed by model (26 columns do not fit a screen)."""
    cols = columns(ok_rows)
    keys = [c for c in ("dataset", "model") if c in cols]
    out = []
    for title, wanted in (
        ("Quality", [c for c in cols if c not in keys and c not in SPEED and c not in SIZE]),
        ("Speed", [c for c in cols if c in SPEED]),
        ("Size", [c for c in cols if c in SIZE]),
    ):
        if wanted:
            table = html_table(ok_rows, keys + wanted).replace('class="results"', f'class="results {title.lower()}"', 1)
            out.append(f"<h3>{title}</h3>{table}")
    return out


def _points(results: list[ModelResult]) -> list[Point]:
    """nDCG@10 against p95 with its 95% bootstrap interval over queries (the error bar)."""
    points = []
    for r in results:
        p95 = r.measured()["latency"].get("p95_ms") if r.ok else None
        if p95 and "ndcg_at_10" in r.scores:
            per_query = list(r.evaluation.per_query.get("ndcg_at_10", {}).values()) if r.evaluation else []
            ci = bootstrap_ci(per_query, resamples=2000, seed=0) if len(per_query) >= 2 else None
            low, high = (ci.low, ci.high) if ci is not None else (None, None)
            points.append(Point(r.model, float(p95), r.scores["ndcg_at_10"], low, high))
    return points


def render_html(report: EvalReport) -> str:
    all_rows = rows(report)
    body = ["<h1>embedlab eval report</h1>"]
    hw = report.environment["hardware"]
    body.append(
        f'<p class="note">embedlab {html.escape(str(report.environment["embedlab"]))}; '
        f"{html.escape(str(hw['cpu']))} ({hw['cpus']} CPUs), GPU: {html.escape(str(hw['gpu'] or 'none'))}; "
        f"split {html.escape(report.spec.split)}</p>"
    )
    if busy_note(report):
        body.append(f'<p class="fail busy">{html.escape(busy_note(report))}</p>')
    for dataset in report.datasets:
        results = [r for r in report.results if r.dataset == dataset]
        ds_rows = [row for row, r in zip(all_rows, report.results, strict=True) if r.dataset == dataset]
        ok_rows = [r for r in ds_rows if "error" not in r]
        body.append(f"<h2>{html.escape(dataset)}</h2>")
        if ok_rows:
            body += grouped_tables(ok_rows)
        for r in ds_rows:
            if "error" in r:
                body.append(f'<p class="fail">{html.escape(r["model"])} failed: {html.escape(r["error"])}</p>')
        if report.comparisons.get(dataset):
            found = report.comparisons[dataset]
            shown = display_rows(found)
            title = display_title(found, label=comparison_metric(report.spec.metrics).label)
            table = html_table(shown, list(shown[0])).replace('class="results"', 'class="results versus"', 1)
            body.append(f'<h3>Against the best</h3><p class="note">{html.escape(title)}</p>{table}')
        body.append(
            scatter(
                _points(results),
                x_label="p95 latency per query (ms)",
                y_label="nDCG@10 (95% bootstrap interval)",
                min_y_span=0.1,
            )
        )
    body.append(f'<p class="note">{html.escape(FOOTNOTE)}</p><h2>Conditions</h2><ul>')
    body += [f"<li>{html.escape(conditions_line(r))}</li>" for r in report.results]
    body.append("</ul><h2>Library versions</h2><p>")
    body.append(html.escape(", ".join(f"{k} {v}" for k, v in report.environment["libraries"].items())))
    body.append("</p>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        "<title>embedlab eval report</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )

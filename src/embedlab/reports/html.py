"""A self-contained HTML report (no external files, scripts or fonts): tables plus an
inline SVG plot of quality against single-query latency."""

from __future__ import annotations

import html
import math

from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.reports.rows import FOOTNOTE, columns, conditions_line, rows

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
th{background:#f3f3f3}.fail{color:#b00}.note{color:#555;font-size:.85rem}
"""


def _table(all_rows: list[dict[str, str]], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in all_rows
    )
    return f'<table class="results"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def scatter_svg(points: list[tuple[str, float, float]], *, x_label: str, y_label: str, width: int = 640,
                height: int = 360, log_x: bool = True) -> str:
    """Points (label, x, y) as an SVG scatter; x on a log scale when asked."""
    if not points:
        return ""
    pad_l, pad_r, pad_t, pad_b = 60, 160, 20, 45
    xs = [math.log10(max(p[1], 1e-6)) if log_x else p[1] for p in points]
    ys = [p[2] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x0, x1 = (x0 - 0.5, x1 + 0.5) if x1 - x0 < 1e-9 else (x0 - 0.05 * (x1 - x0), x1 + 0.05 * (x1 - x0))
    y0, y1 = (y0 - 0.05, y1 + 0.05) if y1 - y0 < 1e-9 else (y0 - 0.1 * (y1 - y0), y1 + 0.1 * (y1 - y0))

    def sx(v: float) -> float:
        return pad_l + (v - x0) / (x1 - x0) * (width - pad_l - pad_r)

    def sy(v: float) -> float:
        return height - pad_b - (v - y0) / (y1 - y0) * (height - pad_t - pad_b)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(y_label)} vs {html.escape(x_label)}">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{width - pad_l - pad_r}" height="{height - pad_t - pad_b}" '
             'fill="none" stroke="#999"/>']
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        xv = x0 + (x1 - x0) * i / 4
        xt = 10 ** xv if log_x else xv
        parts.append(f'<text x="{pad_l - 5}" y="{sy(yv) + 4:.1f}" font-size="10" text-anchor="end">{yv:.3f}</text>')
        parts.append(f'<text x="{sx(xv):.1f}" y="{height - pad_b + 14}" font-size="10" text-anchor="middle">{xt:.3g}</text>')
    for (label, _, _), xv, yv in zip(points, xs, ys, strict=True):
        parts.append(f'<circle cx="{sx(xv):.1f}" cy="{sy(yv):.1f}" r="5" fill="#2a6fdb"><title>{html.escape(label)}</title></circle>')
        parts.append(f'<text x="{sx(xv) + 8:.1f}" y="{sy(yv) + 4:.1f}" font-size="11">{html.escape(label)}</text>')
    parts.append(f'<text x="{(pad_l + width - pad_r) / 2}" y="{height - 8}" font-size="12" text-anchor="middle">'
                 f'{html.escape(x_label)}{" (log scale)" if log_x else ""}</text>')
    parts.append(f'<text x="14" y="{(pad_t + height - pad_b) / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {(pad_t + height - pad_b) / 2})">{html.escape(y_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _points(results: list[ModelResult]) -> list[tuple[str, float, float]]:
    points = []
    for r in results:
        if r.ok and "ndcg_at_10" in r.scores and r.measurements["latency"].get("p95_ms"):  # type: ignore[union-attr]
            points.append((r.model, float(r.measurements["latency"]["p95_ms"]), r.scores["ndcg_at_10"]))  # type: ignore[index]
    return points


def render_html(report: EvalReport) -> str:
    all_rows = rows(report)
    body = ["<h1>embedlab eval report</h1>"]
    hw = report.environment["hardware"]
    body.append(f'<p class="note">embedlab {html.escape(str(report.environment["embedlab"]))}; '
                f'{html.escape(str(hw["cpu"]))} ({hw["cpus"]} CPUs), GPU: {html.escape(str(hw["gpu"] or "none"))}; '  # type: ignore[index]
                f'split {html.escape(report.spec.split)}</p>')
    for dataset in report.datasets:
        results = [r for r in report.results if r.dataset == dataset]
        ds_rows = [row for row, r in zip(all_rows, report.results, strict=True) if r.dataset == dataset]
        ok_rows = [r for r in ds_rows if "error" not in r]
        body.append(f"<h2>{html.escape(dataset)}</h2>")
        if ok_rows:
            body.append(_table(ok_rows, columns(ok_rows)))
        for r in ds_rows:
            if "error" in r:
                body.append(f'<p class="fail">{html.escape(r["model"])} failed: {html.escape(r["error"])}</p>')
        body.append(scatter_svg(_points(results), x_label="p95 latency per query (ms)", y_label="nDCG@10"))
    body.append(f'<p class="note">{html.escape(FOOTNOTE)}</p><h2>Conditions</h2><ul>')
    body += [f"<li>{html.escape(conditions_line(r))}</li>" for r in report.results]
    body.append("</ul><h2>Library versions</h2><p>")
    body.append(html.escape(", ".join(f"{k} {v}" for k, v in report.environment["libraries"].items())))  # type: ignore[union-attr]
    body.append("</p>")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>embedlab eval report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")

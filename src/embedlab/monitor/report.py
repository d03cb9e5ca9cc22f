"""``embedlab monitor report``: online metrics per window and arm as JSON, a terminal table and a
self-contained HTML dashboard (inline SVG from :mod:`embedlab.reports.svg`, no script), the same
page the server shows at ``/dashboard``."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from embedlab.monitor.events import Search
from embedlab.monitor.online import METRICS, Options, low_score_thresholds, windowed
from embedlab.reports.svg import lines

REFERENCE_FIRST = 200  # the first logged searches: where the low-score thresholds come from
PLOTS = (
    ("queries", ("queries",)),
    ("click-through", ("ctr", "ctr_at_1", "ctr_at_3")),
    ("MRR of the first click", ("mrr",)),
    ("abandonment and re-formulation", ("abandonment", "reformulation")),
    ("zero-result and low-score share", ("zero_result", "low_score")),
    ("thumbs-up share", ("thumbs_up_share",)),
    ("latency (ms)", ("latency_p50", "latency_p95", "latency_p99")),
    ("cost per 1,000 queries", ("cost_per_1k",)),
)


def build_report(
    searches: Sequence[Search],
    *,
    collection: str,
    window_s: float,
    options: Options,
    reference_first: int = REFERENCE_FIRST,
) -> dict[str, object]:
    """The report as plain data: per (window, arm) rows and the whole period per arm."""
    thresholds = low_score_thresholds(searches[:reference_first], quantile=options.low_quantile)
    rows = windowed(searches, window_s=window_s, options=options, thresholds=thresholds)
    return {
        "collection": collection,
        "window_s": window_s,
        "searches": len(searches),
        "from": searches[0].ts if searches else None,
        "to": searches[-1].ts if searches else None,
        "options": {"reformulation_s": options.reformulation_s, "price_per_hour": options.price_per_hour},
        "low_score_thresholds": thresholds,
        "windows": [
            {"start": r.window_start, "arm": r.arm, **r.metrics} for r in rows if math.isfinite(r.window_start)
        ],
        "overall": [{"arm": r.arm, **r.metrics} for r in rows if not math.isfinite(r.window_start)],
    }


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%m-%d %H:%M")


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if value >= 100 else f"{value:.3f}"
    return str(value)


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for the terminal: one row per arm over the whole period, then per window."""
    shown = (
        "queries",
        "ctr",
        "ctr_at_3",
        "mrr",
        "abandonment",
        "reformulation",
        "low_score",
        "latency_p95",
        "cost_per_1k",
    )
    header = ["window", "arm", *shown]
    rows = [["all", str(r["arm"]), *(_fmt(r[m]) for m in shown)] for r in report["overall"]]
    rows += [[_stamp(float(r["start"])), str(r["arm"]), *(_fmt(r[m]) for m in shown)] for r in report["windows"]]
    return header, rows


def render_dashboard(report: dict[str, Any], *, title: str | None = None) -> str:
    """The HTML dashboard: one time-series plot per metric group, a line per arm (and metric)."""
    windows: list[dict[str, Any]] = report["windows"]
    labels = {float(w["start"]): _stamp(float(w["start"])) for w in windows}
    arms = sorted({str(w["arm"]) for w in windows})
    figures = []
    for caption, names in PLOTS:
        series = {}
        for arm in arms:
            for name in names:
                key = arm if len(names) == 1 else f"{arm} {name}"
                series[key] = [(float(w["start"]), w[name]) for w in windows if w["arm"] == arm]
        svg = lines(series, y_label=caption, x_labels=labels)
        if svg:
            figures.append(f'<figure class="plot"><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>')
    header, rows = table_rows(report)
    table = "<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"
    table += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[:500])
    table += "</tbody></table>"
    name = html.escape(str(report["collection"]))
    empty = "" if windows else "<p>No searches logged in this period yet.</p>"
    return (
        '<!doctype html><html lang=en><head><meta charset=utf-8><link rel=icon href="data:,">'
        f"<title>{html.escape(title or 'embedlab monitor: ' + str(report['collection']))}</title><style>"
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}figure{margin:1rem 0}"
        "figcaption{font-weight:600}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>"
        f"<h1>Watching {name}</h1><p>{report['searches']} searches, window {report['window_s']:.0f} s, "
        f"metrics: {', '.join(METRICS)}.</p>{empty}{''.join(figures)}{table}</body></html>"
    )

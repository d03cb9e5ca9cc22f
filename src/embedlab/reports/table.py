"""The terminal summary (rich), one table per dataset."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from embedlab.eval.runner import EvalReport
from embedlab.eval.versus import comparison_metric, display_rows, display_title
from embedlab.reports.rows import FOOTNOTE, columns, conditions_line, row
from embedlab.reports.terminal import console as terminal_console
from embedlab.reports.terminal import rich_table

SPEED_SIZE = (
    "docs/s",
    "p50 ms",
    "p95 ms",
    "load s",
    "params (M)",
    "disk MB",
    "dim",
    "index MB",
    "peak RSS MB",
    "published ndcg@10",
)


def print_summary(report: EvalReport, *, main_metrics: Sequence[str], console: Console | None = None) -> None:
    console = console or terminal_console()
    for dataset in report.datasets:
        results = [r for r in report.results if r.dataset == dataset]
        rows = [row(r, report) for r in results]
        ok = [r for r in rows if "error" not in r]
        wanted = ["model"] + [m for m in main_metrics if any(m in r for r in ok)] + list(SPEED_SIZE)
        cols = [c for c in wanted if c in columns(ok) or c == "model"]
        console.print(rich_table(f"{dataset} ({report.spec.split})", cols, [[r.get(c, "-") for c in cols] for r in ok]))
        for r in rows:
            if "error" in r:
                console.print(f"[red]FAILED[/red] {r['model']}: {r['error']}", markup=True, highlight=False)
        if report.comparisons.get(dataset):
            found = report.comparisons[dataset]
            title = display_title(found, label=comparison_metric(report.spec.metrics).label)
            shown = display_rows(found)
            console.print(rich_table(title, list(shown[0]), [list(r.values()) for r in shown]))
    console.print(FOOTNOTE, style="dim")
    for result in report.results:
        console.print(conditions_line(result), style="dim", highlight=False)

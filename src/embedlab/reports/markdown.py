"""A readable Markdown report of an eval run."""

from __future__ import annotations

from embedlab.eval.runner import EvalReport
from embedlab.eval.versus import comparison_metric, display_rows, display_title
from embedlab.reports.rows import FOOTNOTE, columns, conditions_line, rows


def markdown_table(all_rows: list[dict[str, str]], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in all_rows:
        lines.append("| " + " | ".join(r.get(c, "") for c in cols) + " |")
    return "\n".join(lines)


def render_markdown(report: EvalReport) -> str:
    all_rows = rows(report)
    ok_rows = [r for r in all_rows if "error" not in r]
    env = report.environment
    hw = env["hardware"]
    parts = [
        "# embedlab eval report",
        "",
        f"embedlab {env['embedlab']}; {hw['cpu']} ({hw['cpus']} CPUs), GPU: {hw['gpu'] or 'none'}; "
        f"split `{report.spec.split}`; seed {report.spec.seed}.",
        "",
        "## Results",
        "",
        markdown_table(ok_rows, columns(ok_rows)) if ok_rows else "_no model finished_",
        "",
        FOOTNOTE,
        "",
    ]
    if report.comparisons:
        parts += ["## Against the best model", ""]
        label = comparison_metric(report.spec.metrics).label
        for dataset, found in report.comparisons.items():
            shown = display_rows(found)
            parts += [
                f"**{dataset}**: {display_title(found, label=label)}",
                "",
                markdown_table(shown, list(shown[0])),
                "",
            ]
    failed = [r for r in all_rows if "error" in r]
    if failed:
        parts += ["## Failures", ""] + [f"- {r['dataset']} / {r['model']}: {r['error']}" for r in failed] + [""]
    parts += ["## Conditions", ""] + [f"- {conditions_line(r)}" for r in report.results] + [""]
    parts += ["## Datasets", ""]
    for name, info in report.datasets.items():
        parts.append(
            f"- **{name}**: {info['documents']} documents, {info['queries']} judged queries, "
            f"{info['qrels_pairs']} judgments, sha256 `{str(info['sha256'])[:16]}`"
        )
    parts += ["", "## Library versions", "", ", ".join(f"{k} {v}" for k, v in env["libraries"].items()), ""]
    return "\n".join(parts)

"""``embedlab tune`` results as JSON, Markdown and (depth) a self-contained HTML page with the
quality/latency curve and the budget drawn as a line; written atomically next to each other.

The tables and plots reuse the eval reports' helpers (``reports.markdown``, ``reports.html``,
``reports.svg``) and the comparison records of :mod:`embedlab.eval.versus`."""

from __future__ import annotations

import html
import json
from pathlib import Path

from embedlab import __version__
from embedlab.atomic import atomic_write_text
from embedlab.eval.measure import hardware, library_versions
from embedlab.eval.versus import comparison_record
from embedlab.reports.html import STYLE, html_table
from embedlab.reports.markdown import markdown_table
from embedlab.reports.svg import Point, scatter
from embedlab.tune.depth import DepthTuneResult
from embedlab.tune.fusion import FusionTuneResult
from embedlab.tune.splits import Split


def _split_record(split: Split) -> dict[str, object]:
    return {
        "dataset": split.dataset.name,
        "sha256": split.dataset.checksum,
        "dev": split.source,
        "dev_queries": sorted(split.dev),
        "reported_queries": sorted(split.reported),
    }


def _environment() -> dict[str, object]:
    return {"embedlab": __version__, "hardware": hardware(), "libraries": library_versions()}


def fusion_json(result: FusionTuneResult) -> dict[str, object]:
    label = result.spec.metric.label
    return {
        "kind": "tune fusion",
        "pipeline": str(result.spec.pipeline),
        "tuned_pipeline": str(result.tuned),
        "default_pipeline": str(result.default),
        "metric": label,
        "split": _split_record(result.split),
        "grid": [{"fusion": fusion, f"dev {label}": score} for fusion, score in result.trials],
        "reported": [
            {"name": r.name, "pipeline": r.pipeline, "means": r.means, "intervals": r.intervals} for r in result.rows
        ],
        "tuned_vs_default": comparison_record(result.comparison, label=label),
        "retrieval_seconds": result.seconds,
        "environment": _environment(),
    }


def _fusion_rows(result: FusionTuneResult) -> list[dict[str, str]]:
    out = []
    for r in result.rows:
        row = {"system": r.name, "pipeline": f"`{r.pipeline}`".replace("|", "\\|")}
        for key, mean in r.means.items():
            low, high = r.intervals[key]
            row[key.replace("_at_", "@")] = f"{mean:.4f} [{low:.4f}, {high:.4f}]"
        out.append(row)
    return out


def fusion_markdown(result: FusionTuneResult) -> str:
    c, label = result.comparison, result.spec.metric.label
    rows = _fusion_rows(result)
    best_dev = max(score for _, score in result.trials)
    return "\n".join(
        [
            "# embedlab tune fusion",
            "",
            f"Dataset {result.split.dataset.name}; tuned on {len(result.split.dev)} dev queries "
            f"({result.split.source}), reported on {len(result.split.reported)} other queries; "
            f"{len(result.trials)} settings fused from one retrieval per model.",
            "",
            f"**Tuned pipeline**: `{result.tuned}` (dev {label} {best_dev:.4f})",
            "",
            f"## Reported queries ({label}, mean [95% bootstrap interval])",
            "",
            markdown_table(rows, list(rows[0])),
            "",
            f"Tuned vs default RRF on {c.queries} reported queries: {label} difference {c.difference:+.4f} "
            f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}], p = {c.p_value:.4f} ({c.test}).",
            "",
            "## Dev grid (best 10)",
            "",
            markdown_table(
                [{"fusion": f, f"dev {label}": f"{s:.4f}"} for f, s in sorted(result.trials, key=lambda t: -t[1])[:10]],
                ["fusion", f"dev {label}"],
            ),
            "",
        ]
    )


def depth_json(result: DepthTuneResult) -> dict[str, object]:
    label = result.spec.metric.label
    fastest = result.fastest
    return {
        "kind": "tune depth",
        "pipeline": str(result.spec.pipeline),
        "chosen_pipeline": str(result.pipeline) if result.pipeline is not None else None,
        "chosen_depth": result.chosen,
        "best_depth": result.best,
        "note": result.note,
        "metric": label,
        "alpha": result.spec.alpha,
        "max_p95_ms": result.spec.max_p95_ms,
        "fastest": {"depth": fastest.depth, "p95_ms": fastest.p95_ms},
        "fuse_weights_tried": list(result.spec.fuse_weights),
        "split": _split_record(result.split),
        "points": [
            {
                "depth": p.depth,
                f"dev {label}": p.dev_mean,
                "fuse": fuse_label(p.fuse),
                f"dev {label} by fuse weight": {f"{w:g}": mean for w, mean in p.fuse_trials.items()},
                "versus_best": comparison_record(p.versus_best, label=label) if p.versus_best else None,
                "not_significantly_below_best": p.not_worse,
                "reported_means": p.means,
                "reported_intervals": p.intervals,
                "p50_ms": p.p50_ms,
                "p95_ms": p.p95_ms,
                "within_budget": p.within_budget,
            }
            for p in result.points
        ],
        "latency": "one query at a time: first stage + re-rank + top-10, no cache; "
        f"{result.spec.latency_queries} reported queries",
        "environment": _environment(),
    }


def _depth_rows(result: DepthTuneResult) -> list[dict[str, str]]:
    key = result.spec.metric.key
    out = []
    for p in result.points:
        low, high = p.intervals[key]
        c = p.versus_best
        out.append(
            {
                "depth": str(p.depth),
                "fuse": fuse_label(p.fuse),
                f"dev {result.spec.metric.label}": f"{p.dev_mean:.4f}",
                "vs best (dev), p Holm": "best" if c is None else f"{c.difference:+.4f}, {c.p_holm:.4f}",
                f"reported {result.spec.metric.label}": f"{p.means[key]:.4f} [{low:.4f}, {high:.4f}]",
                "p50 ms": f"{p.p50_ms:.1f}",
                "p95 ms": f"{p.p95_ms:.1f}",
                "within budget": "yes" if p.within_budget else "no",
                "chosen": "<-" if p.depth == result.chosen else "",
            }
        )
    return out


def fuse_label(weight: float) -> str:
    """The stage-fusion setting as the pipeline spec writes it."""
    return f"weighted:{weight:g}" if weight else "last"


def _depth_headline(result: DepthTuneResult) -> str:
    budget = f"p95 <= {result.spec.max_p95_ms:g} ms" if result.spec.max_p95_ms is not None else "no latency budget"
    chosen = f"depth {result.chosen}" if result.chosen is not None else "no depth"
    return (
        f"Dataset {result.split.dataset.name}; {budget}; chosen: {chosen} ({result.note}); chosen on "
        f"{len(result.split.dev)} dev queries ({result.split.source}), curve on "
        f"{len(result.split.reported)} other queries."
    )


def depth_markdown(result: DepthTuneResult) -> str:
    rows = _depth_rows(result)
    return "\n".join(
        [
            "# embedlab tune depth",
            "",
            _depth_headline(result),
            "",
            f"Pipeline: `{result.pipeline or result.spec.pipeline}`",
            "",
            markdown_table(rows, list(rows[0])),
            "",
        ]
    )


def depth_html(result: DepthTuneResult) -> str:
    key = result.spec.metric.key
    points = [
        Point(f"@{p.depth}", p.p95_ms, p.means[key], p.intervals[key][0], p.intervals[key][1]) for p in result.points
    ]
    budget = result.spec.max_p95_ms
    plot = scatter(
        points,
        x_label="p95 latency per query (ms)",
        y_label=f"{result.spec.metric.label} (95% bootstrap interval)",
        front=[p.label for p in points],
        log_x=True,  # latency grows with depth over 10..200: a log axis keeps the small depths apart
        x_limit=(budget, f"budget {budget:g} ms") if budget is not None else None,
        min_y_span=0.05,
    )
    rows = _depth_rows(result)
    body = (
        f"<h1>embedlab tune depth</h1><p>{html.escape(_depth_headline(result))}</p>"
        f"<p>Pipeline: <code>{html.escape(str(result.pipeline or result.spec.pipeline))}</code></p>"
        f"{plot}{html_table(rows, list(rows[0]))}"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>embedlab tune depth</title><style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def write_fusion(result: FusionTuneResult, out: Path) -> list[Path]:
    return _write(out, {"tune-fusion.json": _dumps(fusion_json(result)), "tune-fusion.md": fusion_markdown(result)})


def write_depth(result: DepthTuneResult, out: Path) -> list[Path]:
    files = {
        "tune-depth.json": _dumps(depth_json(result)),
        "tune-depth.md": depth_markdown(result),
        "tune-depth.html": depth_html(result),
    }
    return _write(out, files)


def _dumps(data: dict[str, object]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _write(out: Path, files: dict[str, str]) -> list[Path]:
    """All the files as one set (:func:`embedlab.output.result_set`): all of them or, on a failed
    write, none."""
    from embedlab.output import moved, result_set

    with result_set(out) as stage:
        written = []
        for name, text in files.items():
            atomic_write_text(stage / name, text)
            written.append(stage / name)
    return moved(written, stage, out)

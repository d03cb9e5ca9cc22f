"""Write an eval report: per (dataset, model) an MTEB-style JSON, per-query scores and a TREC
run; plus ``summary.json``, ``report.md`` and ``report.html`` for the whole run.

All files are written after every model has finished, as one set: into a staging folder,
then moved into place, so a failed or interrupted run (a full disk) never leaves a
half-written result, nor some of its files beside an earlier run's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from embedlab.atomic import atomic_write_text
from embedlab.data.trec import write_trec_run
from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.reports.published import published_for_result


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_") or "model"


def result_json(result: ModelResult, report: EvalReport) -> dict[str, object]:
    dataset = report.datasets[result.dataset]
    main = {"main_score": result.scores.get("ndcg_at_10")} if "ndcg_at_10" in result.scores else {}
    published = published_for_result(result)
    return {
        "task_name": result.dataset,
        "dataset_revision": dataset["sha256"],
        "evaluation_time": _seconds(result),
        "scores": {report.spec.split: [{**result.scores, **main, "hf_subset": "default", "languages": ["eng-Latn"]}]},
        "embedlab": {
            "model": result.model,
            "spec": result.spec,
            "fingerprint": result.fingerprint,
            "measurements": result.measurements if result.measurements is not None else {},
            "published": published,
            "error": result.error,
            "manifest": {
                "dataset": dataset,
                **report.environment,
                "metrics": [m.label for m in report.spec.metrics],
                "ignore_identical_ids": report.spec.ignore_identical_ids,
            },
        },
    }


def _seconds(result: ModelResult) -> float | None:
    m = result.measurements
    if m is None:
        return None
    return float(m["load_seconds"]) + float(m["corpus"]["seconds"]) + float(m["queries"]["seconds"])


def summary_json(report: EvalReport) -> dict[str, object]:
    summary: dict[str, object] = {
        "datasets": report.datasets,
        "environment": report.environment,
        "metrics": [m.label for m in report.spec.metrics],
        "results": [result_json(r, report) for r in report.results],
    }
    if report.comparisons:  # two or more models: each against the best (eval.versus)
        from embedlab.eval.versus import comparison_metric, comparison_record

        label = comparison_metric(report.spec.metrics).label
        summary["comparisons"] = {
            dataset: [comparison_record(c, label=label) for c in found] for dataset, found in report.comparisons.items()
        }
    return summary


def write_outputs(report: EvalReport, out: Path) -> list[Path]:
    """Every output of ``report`` into ``out`` as one set (:func:`embedlab.output.result_set`):
    all of them, or on a failed write none of them; returns the paths written."""
    from embedlab.output import moved, result_set

    with result_set(out) as stage:
        written = write_output_files(report, stage)
    return moved(written, stage, out)


def write_output_files(report: EvalReport, out: Path) -> list[Path]:
    """Write the files into ``out`` directly (a staging folder, when part of a larger set)."""
    from embedlab.reports.html import render_html
    from embedlab.reports.markdown import render_markdown

    written: list[Path] = []
    for result in report.results:
        base = out / slug(result.dataset) / slug(result.model)
        scores_path = base.parent / f"{base.name}.json"
        atomic_write_text(scores_path, json.dumps(result_json(result, report), indent=2, default=str))
        written.append(scores_path)
        if result.evaluation is not None and result.run is not None:
            per_query = base.parent / f"{base.name}.per_query.json"
            atomic_write_text(per_query, json.dumps(result.evaluation.per_query, indent=1, sort_keys=True))
            run_path = base.parent / f"{base.name}.run.trec"
            write_trec_run(result.run, run_path, tag=slug(result.model))
            written += [per_query, run_path]
    for name, text in (
        ("summary.json", json.dumps(summary_json(report), indent=2, default=str)),
        ("report.md", render_markdown(report)),
        ("report.html", render_html(report)),
    ):
        atomic_write_text(out / name, text)
        written.append(out / name)
    return written

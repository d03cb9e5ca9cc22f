"""The flat rows that the terminal table, Markdown and HTML reports all render."""

from __future__ import annotations

from typing import Any

from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.reports.published import published_for_result

MB = 1024 * 1024


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _mb(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value / MB:.1f}"


def quality_columns(report: EvalReport) -> list[str]:
    return [m.label for m in report.spec.metrics]


def row(result: ModelResult, report: EvalReport) -> dict[str, str]:
    out: dict[str, str] = {"dataset": result.dataset, "model": result.model}
    if not result.ok:
        out["error"] = result.error or ""
        return out
    for metric in report.spec.metrics:
        out[metric.label] = _fmt(result.scores.get(metric.key))
    m = result.measured()
    corpus, latency, size, memory = m["corpus"], m["latency"], m["size"], m["memory"]
    params = size.get("parameters")
    out.update(
        {
            "docs/s": _fmt(corpus.get("docs_per_second"), 1) + ("*" if corpus.get("encoded") == 0 else ""),
            "p50 ms": _fmt(latency.get("p50_ms"), 2),
            "p95 ms": _fmt(latency.get("p95_ms"), 2),
            "load s": _fmt(m["load_seconds"], 2),
            "params (M)": "-" if not params else f"{params / 1e6:.1f}",
            "disk MB": _mb(size.get("weights_bytes")),
            "dim": _fmt(size.get("dim")),
            "index MB": _mb(size.get("index_bytes")),
            "peak RSS MB": _mb(memory.get("peak_rss_bytes")),
        }
    )
    published = published_for_result(result)
    if published:
        pub = published["scores"].get("ndcg_at_10")
        ours = result.scores.get("ndcg_at_10")
        if pub is not None and ours is not None:
            out["published ndcg@10"] = f"{pub:.5f} ({ours - pub:+.4f})"
    return out


def rows(report: EvalReport) -> list[dict[str, str]]:
    return [row(r, report) for r in report.results]


def columns(all_rows: list[dict[str, str]]) -> list[str]:
    seen: list[str] = []
    for r in all_rows:
        for key in r:
            if key not in seen and key != "error":
                seen.append(key)
    return seen


def conditions_line(result: ModelResult) -> str:
    if not result.ok:
        return f"{result.dataset} / {result.model}: FAILED: {result.error}"
    m = result.measured()
    cond = ", ".join(f"{k}={v}" for k, v in m["conditions"].items())
    lat = m["latency"]
    corpus = m["corpus"]
    return (
        f"{result.dataset} / {result.model}: {cond}; latency over {lat.get('samples')} single queries "
        f"({lat.get('what', '')}); corpus {corpus.get('encoded')} encoded, {corpus.get('cache_hits')} from cache"
        f" ({corpus.get('source')})" + index_line(m["size"].get("index_info"))
    )


def index_line(info: dict[str, Any] | None) -> str:
    """An approximate vector index: its kind, options, recall@10 against exact search and any
    caveat (a Matryoshka truncation), so a quality figure is never read as the exact model's."""
    if not info or (info.get("recall_at_10") is None and not info.get("note")):
        return ""
    params = ",".join(f"{k}={v}" for k, v in info.get("params", {}).items())
    text = f"; index {info['kind']}" + (f" ({params})" if params else "")
    if info.get("recall_at_10") is not None:
        text += f", recall@10 vs exact {info['recall_at_10']:.3f} at build"
    return text + (f"; NOTE: {info['note']}" if info.get("note") else "")


FOOTNOTE = (
    "docs/s* = every vector came from the cache; the rate shown was measured on this host when "
    "they were encoded. Latency = one query at a time, encode + top-10 search, no cache."
)

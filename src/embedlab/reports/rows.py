"""The flat rows that the terminal table, Markdown and HTML reports all render."""

from __future__ import annotations

from typing import Any

from embedlab.eval.load import describe as describe_load
from embedlab.eval.runner import EvalReport, ModelResult
from embedlab.payloads import SizeInfo
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
            "p95 ms": _fmt(latency.get("p95_ms"), 2) + ("!" if busy(result) else ""),
            "load s": _fmt(m["load_seconds"], 2),
            "params (M)": "-" if not params else f"{params / 1e6:.1f}",
            "disk MB": _mb(size.get("weights_bytes")),
            # a sparse (BM25) index has no vector dimension; its "dim" would be the vocabulary size
            "dim": "-" if _sparse_only(size) else _fmt(size.get("dim")),
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


def _sparse_only(size: SizeInfo) -> bool:
    """Whether every stage's index is sparse (BM25): then there is no vector dimension to show."""
    return all(part.startswith("sparse") for part in str(size.get("index", "")).split(" + "))


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
    cond = ", ".join(f"{k}={v}" for k, v in m["conditions"].items() if k != "machine")
    machine = m["conditions"].get("machine")
    if machine is not None:
        repeats = m["latency"].get("repeats")
        cond += f"; machine during timing: {describe_load(machine)}" + (
            f", quietest of {repeats} repeats" if repeats else ""
        )
    lat = m["latency"]
    corpus = m["corpus"]
    return (
        f"{result.dataset} / {result.model}: {cond}; latency over {lat.get('samples')} single queries "
        f"({lat.get('what', '')}); corpus {corpus.get('encoded')} encoded, {corpus.get('cache_hits')} from cache"
        f" ({corpus.get('source')})" + index_line(m["size"].get("index_info"))
    )


def busy(result: ModelResult) -> bool:
    """Whether the machine was busy while this result's latency was timed (``eval.load``)."""
    if not result.ok:
        return False
    machine = result.measured()["conditions"].get("machine")
    return bool(machine and machine.get("busy"))


def busy_note(report: EvalReport) -> str:
    """A warning for reports: which latencies were timed on a busy machine ("" when none)."""
    flagged = [f"{r.model} on {r.dataset}" for r in report.results if busy(r)]
    if not flagged:
        return ""
    return (
        f"WARNING: the machine was busy while timing {', '.join(flagged)} (p95 marked '!'): those latencies "
        "include other work; rerun with --repeat N (keeps the quietest) or on a quiet machine."
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
    "they were encoded. Latency = one query at a time, encode + top-10 search, no cache; "
    "p95 ms! = timed while the machine was busy (load in Conditions)."
)

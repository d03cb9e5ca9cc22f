"""Prometheus metrics of one app (its own registry, so two apps in a process do not mix).

- ``embedlab_http_requests_total{route,method,status}``, ``embedlab_http_request_seconds{route}``:
  every request, labelled by route template (``/v1/documents/{path}``, never the raw path).
- ``embedlab_search_seconds{mode,stage}``: the search latency breakdown (encode, search,
  fuse, rerank, fetch, total) as histograms.
- ``embedlab_embedding_texts_total``, ``embedlab_embedding_request_seconds``: /v1/embeddings.
- ``embedlab_batch_queue{batcher}``: texts or queries waiting for the encoder (search, embeddings),
  ``embedlab_batch_size{batcher}``: units per encoder batch (how well requests are gathered).
- ``embedlab_feedback_total{kind}``, ``embedlab_collection_reloads_total``,
  ``embedlab_collection_reload_failures_total`` (a newer generation that could not be opened),
  ``embedlab_collection_chunks``, ``embedlab_collection_generation``.
- ``embedlab_search_log_dropped_total``: searches not logged (the writer queue was full);
  ``embedlab_monitor_alert{rule}``, ``embedlab_monitor_value{rule}``, ``embedlab_monitor_p_value{rule}``,
  ``embedlab_monitor_checked_seconds``: the last ``embedlab monitor check`` (its state file).

Every label value comes from a fixed set, never from the client: each new label value is a
new time series held in memory forever and sent on every scrape, and h11 accepts any token
as an HTTP method, so a client inventing methods (or paths, or statuses) must not be able to
grow the server.  Methods outside :data:`METHODS` count as ``other``, paths that match no
route as ``other``, and statuses outside :data:`STATUSES` as their class (``5xx``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
STATUSES = frozenset({200, 204, 206, 304, 400, 401, 403, 404, 405, 413, 415, 416, 422, 429, 500, 503})
OTHER = "other"


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER


def status_label(status: int) -> str:
    if status in STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def route_label(template: object, known: Collection[str]) -> str:
    """The route template if it is one of the app's own, else ``other``."""
    return template if isinstance(template, str) and template in known else OTHER


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "embedlab_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.request_seconds = Histogram(
            "embedlab_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "embedlab_search_seconds",
            "Search latency by stage",
            ["mode", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.feedback = Counter("embedlab_feedback", "Feedback events", ["kind"], registry=self.registry)
        self.reloads = Counter(
            "embedlab_collection_reloads", "Switches to a newer collection generation", registry=self.registry
        )
        self.reload_failures = Counter(
            "embedlab_collection_reload_failures",
            "Attempts to open a newer generation that failed",
            registry=self.registry,
        )
        self.embedding_texts = Counter("embedlab_embedding_texts", "Texts embedded", registry=self.registry)
        self.embedding_seconds = Histogram(
            "embedlab_embedding_request_seconds",
            "Time an embeddings request waited for its vectors",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge("embedlab_batch_queue", "Units waiting for the encoder", ["batcher"], registry=self.registry)
        self.batch_size = Histogram(
            "embedlab_batch_size",
            "Units (texts or queries) per encoder batch",
            ["batcher"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.chunks = Gauge("embedlab_collection_chunks", "Chunks in the served generation", registry=self.registry)
        self.generation = Gauge("embedlab_collection_generation", "Served generation", registry=self.registry)
        self.search_log_dropped = Counter(
            "embedlab_search_log_dropped", "Search rows not logged (writer queue full)", registry=self.registry
        )
        # the last `embedlab monitor check` (its state file): one series per rule of monitor.toml
        self.monitor_alert = Gauge(
            "embedlab_monitor_alert", "1 when the rule alerted at the last check", ["rule"], registry=self.registry
        )
        self.monitor_value = Gauge(
            "embedlab_monitor_value", "The rule's statistic at the last check", ["rule"], registry=self.registry
        )
        self.monitor_p_value = Gauge(
            "embedlab_monitor_p_value", "The drift test's p-value at the last check", ["rule"], registry=self.registry
        )
        self.monitor_checked = Gauge(
            "embedlab_monitor_checked_seconds", "Unix time of the last monitor check", registry=self.registry
        )
        self._monitor_seen: tuple[float, int] | None = None

    def observe_request(self, *, route: str, method: str, status: int, seconds: float) -> None:
        """Count one request; ``route`` must already be a known template or ``other``."""
        self.requests.labels(route=route, method=method_label(method), status=status_label(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def observe_search(self, mode: str, latency_ms: Mapping[str, float]) -> None:
        for stage, ms in latency_ms.items():
            if ms or stage == "total":
                self.search_seconds.labels(mode=mode, stage=stage).observe(ms / 1000.0)

    def observe_embeddings(self, texts: int, ms: float) -> None:
        self.embedding_texts.inc(texts)
        self.embedding_seconds.observe(ms / 1000.0)

    def load_monitor_state(self, path: Path, *, max_rules: int = 100) -> None:
        """Set the monitor gauges from ``embedlab monitor check``'s state file when it changed (a stat
        per scrape otherwise).  Rule names come from the operator's monitor.toml, never a client; at
        most ``max_rules`` series; a missing or damaged file leaves the gauges as they were."""
        try:
            stat = path.stat()
            seen = (stat.st_mtime, stat.st_size)
            if seen == self._monitor_seen:
                return
            state = json.loads(path.read_text(encoding="utf-8"))
            verdicts = [v for v in state["verdicts"] if isinstance(v, dict)][:max_rules]
            checked = float(state["checked"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        self._monitor_seen = seen
        self.monitor_checked.set(checked)
        for gauge in (self.monitor_alert, self.monitor_value, self.monitor_p_value):
            gauge.clear()
        for v in verdicts:
            rule = str(v.get("rule", ""))[:80]
            self.monitor_alert.labels(rule=rule).set(1.0 if v.get("status") == "alert" else 0.0)
            for gauge, key in ((self.monitor_value, "value"), (self.monitor_p_value, "p_value")):
                if isinstance(v.get(key), (int, float)):
                    gauge.labels(rule=rule).set(float(v[key]))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

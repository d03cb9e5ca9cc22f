"""``embedlab serve`` against hostile clients and damaged state: bounded metrics, range-checked feedback,
JSON error bodies for every failure, no silent auth-off, a damaged generation opened once.

All against a real uvicorn server on loopback and real SQLite files (tests/serve_fixtures.py).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi")

from embedlab.atomic import atomic_write_text
from embedlab.collection import update
from embedlab.serve import ServeConfig, create_app
from tests.serve_fixtures import build_collection, call, call_json, make_library, running

KEY = "k" * 24
INT64_MAX = 2**63 - 1
_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "collections"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return make_library(tmp_path / "library")


@pytest.fixture
def built(library: Path, root: Path) -> Path:
    build_collection(library, root)
    return root


def _raw(
    url: str, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request with any method token and any bytes as body (http.client, no validation of ours)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def _json_error(status: int, headers: dict[str, str], raw: bytes) -> str:
    """The message of a documented error body; fails the test on anything else."""
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, raw[:200])
    data = json.loads(raw)
    assert set(data) == {"error"} and isinstance(data["error"], str) and data["error"], data
    assert "\n" not in data["error"]
    return data["error"]


def _request_series(metrics_text: str) -> set[str]:
    """The request series (name and labels, without the value) of a /metrics page."""
    return {line.rsplit(" ", 1)[0] for line in metrics_text.splitlines() if line.startswith("embedlab_http_request")}


@pytest.mark.parametrize(("api_key", "http"), [(None, "h11"), (KEY, "h11"), (None, "httptools")])
def test_made_up_methods_and_paths_do_not_grow_metrics(built: Path, api_key: str | None, http: str) -> None:
    """h11 hands any method token to the app, which must bound its labels and answer in JSON;
    httptools (what `embedlab serve` uses when installed) refuses unknown methods itself with a
    plain-text 400 before the app runs, which must not grow anything either."""
    if http == "httptools":
        pytest.importorskip("httptools")
    rng = random.Random(9)
    with running(create_app(ServeConfig(collection="lib", root=built, api_key=api_key)), http=http) as url:

        def burst(n: int) -> None:
            for _ in range(n):
                method = "".join(rng.choice(_TOKEN_CHARS) for _ in range(rng.randint(3, 24)))
                path = (
                    rng.choice(["/v1/search", "/v1/feedback", "/healthz", "/metrics", "/"])
                    if rng.random() < 0.5
                    else "/x" + "".join(rng.choice("abcdef0123") for _ in range(12))
                )
                status, headers, raw = _raw(url, method, path)
                assert 400 <= status < 500, (method, path, status)
                if http == "h11" or method in {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"}:
                    _json_error(status, headers, raw)
                else:
                    assert status == 400 and raw == b"Invalid HTTP request received."

        call(url + "/metrics")  # the scrape itself is a series; count it before comparing
        burst(50)
        first = call(url + "/metrics")[2].decode()
        burst(250)
        second = call(url + "/metrics")[2].decode()
    # the same series after 50 and after 300 made-up requests: only the counts change
    assert _request_series(second) == _request_series(first)
    assert len(second) <= len(first) + 400  # a few more digits in counters and sums, not new series
    labels = set(re.findall(r'(method|route|status)="([^"]*)"', second))
    assert {v for k, v in labels if k == "method"} <= {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
        "PATCH",
        "other",
    }
    if http == "h11":  # with httptools, the parser never lets them through to the app
        assert ("route", "other") in labels and ("method", "other") in labels
    assert {v for k, v in labels if k == "route"} <= {
        "/v1/search",
        "/v1/feedback",
        "/v1/documents/{path:path}",
        "/healthz",
        "/metrics",
        "/",
        "/static/app.js",
        "/v1/openapi.json",
        "other",
    }
    assert len(_request_series(second)) < 400  # histogram buckets of a handful of routes, not one per request


OUT_OF_RANGE = [
    ({"result_ids": [2**63]}, "result_ids.0"),
    ({"result_ids": [1, -1]}, "result_ids.1"),
    ({"result_ids": [10**40]}, "result_ids.0"),
    ({"chunk_id": 2**63}, "chunk_id"),
    ({"chunk_id": -1}, "chunk_id"),
    ({"chunk_id": 10**400}, "chunk_id"),
    ({"generation": 2**63}, "generation"),
    ({"rank": 2**64}, "rank"),
    ({"session": "\ud800"}, "session"),
    ({"query": "lone \udfff surrogate"}, "query"),
]


def test_feedback_numbers_outside_sqlite_range_are_422(built: Path) -> None:
    with running(create_app(ServeConfig(collection="lib", root=built))) as url:
        for body, field in OUT_OF_RANGE:
            event = {"query": "bread", "chunk_id": 1, "kind": "click", **body}
            status, headers, raw = call(url + "/v1/feedback", json.dumps(event).encode())
            assert status == 422, (body, raw)
            assert _json_error(status, headers, raw).startswith(field + ":"), (body, raw)
        # the largest id that fits is fine
        status, data = call_json(
            url + "/v1/feedback", {"query": "bread", "chunk_id": INT64_MAX, "kind": "up", "result_ids": [INT64_MAX, 0]}
        )
        assert status == 200 and data["known_chunk"] is False
    db = sqlite3.connect(built / "lib" / "feedback.sqlite")
    try:
        assert db.execute("SELECT chunk_id FROM feedback").fetchall() == [(INT64_MAX,)]
    finally:
        db.close()


def test_export_skips_damaged_rows_and_keeps_the_good_ones(built: Path, tmp_path: Path) -> None:
    with running(create_app(ServeConfig(collection="lib", root=built))) as url:
        _, page = call_json(url + "/v1/search", {"query": "sourdough bread oven", "k": 3, "mode": "bm25"})
        ids = [h["chunk_id"] for h in page["hits"]]
        status, _ = call_json(
            url + "/v1/feedback", {"query": page["query"], "chunk_id": ids[1], "kind": "click", "result_ids": ids}
        )
        assert status == 200
    db = sqlite3.connect(built / "lib" / "feedback.sqlite")
    try:
        insert = (
            "INSERT INTO feedback (created, collection, query, kind, chunk_id, result_ids) "
            "VALUES ('2024-01-01', 'lib', ?, 'click', {chunk}, {shown})"
        )
        for chunk, shown in (
            (str(ids[0]), "'[9223372036854775808]'"),  # an id that does not fit int64
            ("'abc'", f"'{json.dumps(ids)}'"),  # a chunk id that is text
            ("1e30", f"'{json.dumps(ids)}'"),  # stored as REAL
            (str(ids[0]), "'not json'"),
            (str(ids[0]), "'" + "[" * 5000 + "'"),  # nested past the recursion limit
            (str(ids[0]), "CAST(X'FF80' AS TEXT)"),
        ):  # not UTF-8
            db.execute(insert.format(chunk=chunk, shown=shown), (page["query"],))
        db.execute(
            "INSERT INTO feedback (created, collection, query, kind, chunk_id, result_ids) "
            "VALUES ('2024-01-01', 'lib', CAST(X'C3' AS TEXT), 'click', 1, '[1]')"
        )
        db.commit()
        bad_ids = [r[0] for r in db.execute("SELECT id FROM feedback WHERE id > 1 ORDER BY id")]
    finally:
        db.close()
    out = tmp_path / "clicks.jsonl"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedlab.cli.main",
            "feedback",
            "export",
            "lib",
            "--root",
            str(built),
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for row_id in bad_ids:
        assert f"feedback row {row_id} skipped" in result.stderr, result.stderr
    assert len(bad_ids) == 7 and f"{len(bad_ids)} damaged rows skipped" in result.stdout
    texts = {h["chunk_id"]: " ".join(h["text"].split()) for h in page["hits"]}  # the export writes one line a text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"query": page["query"], "clicked": [texts[ids[1]]], "shown": [texts[i] for i in ids]}]


@pytest.fixture
def big_body_server(built: Path) -> Iterator[tuple[str, object]]:
    app = create_app(ServeConfig(collection="lib", root=built, max_body_bytes=400_000))
    with running(app) as url:
        yield url, app


BAD_BODIES = [
    (b'{"query": "caf\xe9"}', 400, "UTF-8"),
    (b"\xff\xfe\x00{", 422, "JSON decode error"),  # read as UTF-16 (its BOM), then not JSON
    (b"[" * 100_000, 400, "nested too deeply"),
    (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, "nested too deeply"),
    (b'{"query": ' + b"[" * 400 + b"]" * 400 + b"}", 422, "query:"),  # deep, but within what JSON parses
    (b'{"query": "x", "k": 3', 422, "JSON decode error"),
    (b'{"query": "x", "k": ' + b"9" * 5000 + b"}", 400, "cannot be parsed"),  # past Python's int digit limit
    (b"", 422, "body: Field required"),
    (b"null", 422, "body"),
    (b'{"query": "x", "weights": [NaN, 1], "chunk_id": 1e999}', 422, ""),
    (b'{"query": "x", "\\ud800": 1}', 422, "body"),  # a field name that is no text
    (b'{"query": "x", "a\\nb": 1}', 422, "'a\\nb'"),  # a client-made field name: escaped in the message
]


def test_bad_bodies_get_a_json_4xx(big_body_server: tuple[str, object]) -> None:
    url, _ = big_body_server
    for route in ("/v1/search", "/v1/feedback"):
        for body, status, words in BAD_BODIES:
            code, headers, raw = _raw(url, "POST", route, body, {"Content-Type": "application/json"})
            assert code == status, (route, body[:60], raw[:300])
            assert words in _json_error(code, headers, raw), (route, body[:60], raw[:300])
    assert call_json(url + "/v1/search", {"query": "still serving"})[0] == 200


def test_search_numbers_that_would_overflow_are_422(big_body_server: tuple[str, object]) -> None:
    url, _ = big_body_server
    # finite inputs whose fused score is not: 1e308 / (5e-324 + 1) twice overflows to inf (was a 500)
    for body, field in (
        ({"weights": [1e308, 1e308], "rrf_k": 5e-324}, "weights.0"),
        ({"weights": [float("nan"), 1]}, "weights.0"),
        ({"weights": [1, float("inf")]}, "weights.1"),
        ({"rrf_k": float("inf")}, "rrf_k"),
        ({"k": 10**30}, "k"),
    ):
        status, headers, raw = call(url + "/v1/search", json.dumps({"query": "bread", **body}).encode())
        assert status == 422 and _json_error(status, headers, raw).startswith(field), (body, raw)
    status, data = call_json(url + "/v1/search", {"query": "bread", "weights": [1e6, 1e6], "rrf_k": 5e-324})
    assert status == 200 and data["hits"]


def test_routing_size_and_internal_errors_are_json(big_body_server: tuple[str, object]) -> None:
    url, app = big_body_server
    status, headers, raw = call(url + "/no/such/route")
    assert status == 404 and "/no/such/route" in _json_error(status, headers, raw)
    status, headers, raw = call(url + "/v1/search")  # GET on a POST route
    assert status == 405 and "POST" in _json_error(status, headers, raw) and headers["allow"] == "POST"
    status, headers, raw = call(url + "/v1/search", {"query": "y" * 500_000})
    assert status == 413 and "400000 bytes" in _json_error(status, headers, raw)

    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    logging.getLogger("embedlab.serve").addHandler(handler)
    try:
        app.state.feedback.close()  # type: ignore[attr-defined]  # the database goes away under the server
        status, headers, raw = call(url + "/v1/feedback", {"query": "q", "chunk_id": 1, "kind": "up"})
    finally:
        logging.getLogger("embedlab.serve").removeHandler(handler)
    assert status == 500 and _json_error(status, headers, raw) == "internal error"
    assert b"Traceback" not in raw and b"sqlite" not in raw.lower()  # details go to the log only
    assert [r.exc_info is not None for r in records if r.levelno >= logging.ERROR] == [True]
    text = call(url + "/metrics")[2].decode()
    assert 'embedlab_http_requests_total{method="POST",route="/v1/feedback",status="500"} 1.0' in text
    assert 'route="other",status="404"' in text


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(level=logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(("env_value", "key_file"), [("", None), ("   ", None), (None, ""), (None, " \n\t\n")])
def test_an_empty_api_key_refuses_to_start(
    built: Path, tmp_path: Path, env_value: str | None, key_file: str | None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EMBEDLAB_API_KEY"}
    with socket.socket() as probe:  # a free loopback port, in case the key were (wrongly) accepted
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "embedlab.cli.main", "serve", "lib", "--root", str(built), "--port", str(port)]
    if env_value is not None:
        env["EMBEDLAB_API_KEY"] = env_value
    if key_file is not None:
        (tmp_path / "key").write_text(key_file)
        argv += ["--api-key-file", str(tmp_path / "key")]
    # were the key accepted, the server would run: a timeout, so a failure too
    result = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embedlab: error:"), result.stderr
    assert ("unset" in lines[0]) if key_file is None else ("empty" in lines[0] and "without a key" in lines[0])


def test_a_damaged_new_generation_is_opened_once(library: Path, built: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = _Collect(records)
    live_log = logging.getLogger("embedlab.serve.live")
    live_log.addHandler(handler)
    try:
        with running(create_app(ServeConfig(collection="lib", root=built))) as url:
            assert call_json(url + "/v1/search", {"query": "bread"})[1]["generation"] == 1
            (library / "kayak.txt").write_text("Hold the kayak paddle with both hands and follow the river bank.")
            update("lib", root=built, use_cache=False)  # no request in between: gen 2 is damaged before it is seen
            vectors = built / "lib" / "gen-000002" / "vectors.npy"
            good = vectors.read_bytes()
            vectors.unlink()  # a new file: gen 1 may share the old one through a hard link
            vectors.write_bytes(good[:-64] + b"\0" * 64)
            for _ in range(50):
                status, data = call_json(url + "/v1/search", {"query": "kayak paddle", "mode": "bm25"})
                assert status == 200 and data["generation"] == 1
            text = call(url + "/metrics")[2].decode()
            assert "embedlab_collection_reload_failures_total 1.0" in text
            assert "embedlab_collection_reloads_total 0.0" in text
            assert len([r for r in records if r.levelno == logging.WARNING]) == 1
            vectors.unlink()
            vectors.write_bytes(good)  # repaired, but CURRENT has not changed: still remembered as failed
            assert call_json(url + "/v1/search", {"query": "kayak paddle"})[1]["generation"] == 1
            atomic_write_text(built / "lib" / "CURRENT", "gen-000002\n")  # rewritten: tried again
            status, data = call_json(url + "/v1/search", {"query": "kayak paddle", "mode": "bm25"})
            assert status == 200 and data["generation"] == 2 and data["hits"][0]["path"] == "kayak.txt"
            text = call(url + "/metrics")[2].decode()
            assert "embedlab_collection_reload_failures_total 1.0" in text
            assert "embedlab_collection_reloads_total 1.0" in text
    finally:
        live_log.removeHandler(handler)

"""``embedlab serve``: the FastAPI app behind a real uvicorn server on loopback, a real SQLite feedback file."""

from __future__ import annotations

import http.client
import json
import os
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("fastapi")

from embedlab.collection import update
from embedlab.errors import EmbedlabError
from embedlab.serve import ServeConfig, create_app
from tests.serve_fixtures import build_collection, call, call_json, make_library, running

KEY = "k" * 24


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "collections"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return make_library(tmp_path / "library")


@pytest.fixture
def served(library: Path, root: Path):
    build_collection(library, root)
    with running(create_app(ServeConfig(collection="lib", root=root, max_k=50, max_body_bytes=16_384))) as url:
        yield url


def _feedback_rows(root: Path) -> list[dict]:
    db = sqlite3.connect(root / "lib" / "feedback.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM feedback ORDER BY id")]
    finally:
        db.close()


def test_search_returns_file_page_snippet_and_timings(served: str) -> None:
    status, data = call_json(served + "/v1/search", {"query": "fresnel lens beam", "k": 3, "mode": "bm25"})
    assert status == 200
    top = data["hits"][0]
    assert (top["path"], top["page"]) == ("manuals/lighthouse.pdf", 2)
    assert "fresnel" in top["snippet"].lower() and top["highlights"]
    assert set(data["latency_ms"]) == {"encode", "search", "fuse", "rerank", "fetch", "total"}
    assert data["generation"] == 1 and data["mode"] == "bm25" and len(data["hits"]) <= 3
    status, data = call_json(served + "/v1/search", {"query": "reset password", "filter": "guide/*"})
    assert status == 200 and data["mode"] == "hybrid" and {h["path"][:6] for h in data["hits"]} == {"guide/"}


def test_feedback_is_stored_with_query_and_result_ids(served: str, root: Path) -> None:
    _, results = call_json(served + "/v1/search", {"query": "sourdough bread oven", "k": 5})
    ids = [h["chunk_id"] for h in results["hits"]]
    top = results["hits"][0]
    for kind in ("click", "up", "down"):
        status, data = call_json(
            served + "/v1/feedback",
            {
                "query": "sourdough bread oven",
                "chunk_id": top["chunk_id"],
                "kind": kind,
                "rank": 1,
                "result_ids": ids,
                "mode": "hybrid",
                "generation": results["generation"],
                "session": "s1",
            },
        )
        assert status == 200 and data["known_chunk"] is True
    rows = _feedback_rows(root)
    assert [r["kind"] for r in rows] == ["click", "up", "down"]
    assert {
        (r["query"], r["chunk_id"], r["path"], r["page"], r["rank"], r["generation"], r["session"]) for r in rows
    } == {("sourdough bread oven", top["chunk_id"], top["path"], top["page"], 1, 1, "s1")}
    assert json.loads(rows[0]["result_ids"]) == ids
    status, data = call_json(served + "/v1/feedback", {"query": "q", "chunk_id": 999_999, "kind": "up"})
    assert status == 200 and data["known_chunk"] is False and _feedback_rows(root)[-1]["path"] is None


def test_health_and_prometheus_metrics(served: str) -> None:
    status, health = call_json(served + "/healthz")
    assert status == 200 and health["status"] == "ok" and health["collection"] == "lib"
    assert health["generation"] == 1 and health["chunks"] > 4 and health["auth"] is False
    call_json(served + "/v1/search", {"query": "tomato soup", "mode": "dense"})
    call_json(served + "/v1/feedback", {"query": "tomato soup", "chunk_id": 1, "kind": "down"})
    call(served + "/v1/documents/../../etc/passwd")
    status, headers, raw = call(served + "/metrics")
    text = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'embedlab_http_requests_total{method="POST",route="/v1/search",status="200"} 1.0' in text
    assert 'embedlab_search_seconds_count{mode="dense",stage="total"} 1.0' in text
    assert 'embedlab_feedback_total{kind="down"} 1.0' in text
    assert "embedlab_collection_generation 1.0" in text
    assert "/etc/passwd" not in text  # raw paths never become labels


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"query": "x", "k": 51}, 422, "limit of 50"),
        ({"query": "x", "k": 0}, 422, "k:"),
        ({"query": ""}, 422, "query:"),
        ({"query": "x", "mode": "fuzzy"}, 422, "mode:"),
        ({"query": "x", "limit": 3}, 422, "limit: Extra inputs"),
        ({"k": 3}, 422, "query: Field required"),
        ({"query": "x", "weights": [1]}, 422, "weights"),
        ({"query": "x" * 5000}, 422, "query:"),
    ],
)
def test_bad_search_requests_get_one_line(served: str, body: dict, status: int, words: str) -> None:
    code, data = call_json(served + "/v1/search", body)
    assert code == status and words in data["error"] and "\n" not in data["error"]


def test_malformed_json_and_oversized_bodies(served: str) -> None:
    status, data = call_json(served + "/v1/search", b"{not json")
    assert status == 422 and "JSON" in data["error"]
    status, data = call_json(served + "/v1/search", {"query": "y" * 20_000})
    assert status == 413 and "16384 bytes" in data["error"]
    # a chunked body (no Content-Length) is counted as it arrives
    parsed = urlparse(served)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.putrequest("POST", "/v1/search")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    payload = json.dumps({"query": "z" * 16_400}).encode()
    for start in range(0, len(payload), 4096):
        part = payload[start : start + 4096]
        conn.send(b"%x\r\n" % len(part) + part + b"\r\n")
    conn.send(b"0\r\n\r\n")
    response = conn.getresponse()
    assert response.status == 413
    conn.close()
    status, _ = call_json(served + "/v1/search", {"query": "still serving"})
    assert status == 200


def test_document_route_serves_indexed_files_only(served: str, library: Path, tmp_path: Path) -> None:
    status, headers, raw = call(served + "/v1/documents/manuals/lighthouse.pdf")
    assert status == 200 and headers["content-type"] == "application/pdf" and raw.startswith(b"%PDF")
    assert raw == (library / "manuals" / "lighthouse.pdf").read_bytes()
    status, headers, raw = call(served + "/v1/documents/recipes/bread.html")
    assert status == 200 and headers["content-type"].startswith("text/plain")  # never rendered as HTML here
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (library / "notes.txt").write_text("added after the build, so not served")
    (library / "guide" / "link.txt").symlink_to(secret)
    for bad in (
        "../secret.txt",
        "..%2Fsecret.txt",
        "%2E%2E/secret.txt",
        "guide/../../secret.txt",
        str(secret),
        "%2F" + str(secret).lstrip("/"),
        "notes.txt",
        "guide/link.txt",
        "missing.pdf",
        "guide/passwords.md/../../../secret.txt",
    ):
        status, _, raw = call(served + "/v1/documents/" + bad)
        assert status == 404, bad
        assert b"top secret" not in raw


def test_symlink_indexed_then_pointing_outside_is_refused(library: Path, root: Path, tmp_path: Path) -> None:
    build_collection(library, root)
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the library")
    target = library / "recipes" / "soup.txt"
    target.unlink()
    target.symlink_to(outside)  # the indexed path now leads out of the library
    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        status, _, raw = call(url + "/v1/documents/recipes/soup.txt")
    assert status == 404 and b"outside" not in raw


def test_api_key(library: Path, root: Path) -> None:
    build_collection(library, root)
    with running(create_app(ServeConfig(collection="lib", root=root, api_key=KEY))) as url:
        body = {"query": "bread"}
        assert call_json(url + "/v1/search", body)[0] == 401
        assert call_json(url + "/v1/search", body, headers={"X-API-Key": "wrong" * 5})[0] == 401
        assert call_json(url + "/v1/search", body, headers={"X-API-Key": KEY})[0] == 200
        assert call_json(url + "/v1/search", body, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
        assert call(url + "/v1/documents/manuals/lighthouse.pdf")[0] == 401
        assert (
            call(url + "/v1/documents/manuals/lighthouse.pdf", headers={"Cookie": f"embedlab_api_key={KEY}"})[0] == 200
        )
        status, health = call_json(url + "/healthz")
        assert status == 200 and health["auth"] is True
        assert call(url + "/")[0] == 200 and call(url + "/metrics")[0] == 200
    with pytest.raises(EmbedlabError, match="too short"):
        ServeConfig(collection="lib", root=root, api_key="short")


def test_updates_are_picked_up_without_restart(library: Path, root: Path) -> None:
    build_collection(library, root)
    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        _, before = call_json(url + "/v1/search", {"query": "kayak paddle river", "mode": "bm25"})
        assert before["generation"] == 1 and before["hits"] == []
        (library / "kayak.txt").write_text("Hold the kayak paddle with both hands and follow the river bank.")
        (library / "recipes" / "soup.txt").unlink()
        update("lib", root=root, use_cache=False)
        _, after = call_json(url + "/v1/search", {"query": "kayak paddle river", "mode": "bm25"})
        assert after["generation"] == 2 and after["hits"][0]["path"] == "kayak.txt"
        _, soup = call_json(url + "/v1/search", {"query": "tomato soup stock", "mode": "bm25", "k": 50})
        assert all(h["path"] != "recipes/soup.txt" for h in soup["hits"])
        assert call(url + "/v1/documents/recipes/soup.txt")[0] == 404
        _, health = call_json(url + "/healthz")
        assert health["generation"] == 2
        text = call(url + "/metrics")[2].decode()
        assert "embedlab_collection_reloads_total 1.0" in text and "embedlab_collection_generation 2.0" in text


def test_fifty_concurrent_clients_get_no_errors(served: str) -> None:
    queries = ["reset password", "two factor phone", "sourdough starter", "tomato soup", "lighthouse storm"]

    def client(n: int) -> list[int]:
        return [call(served + "/v1/search", {"query": queries[(n + i) % len(queries)], "k": 5})[0] for i in range(4)]

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = [s for result in pool.map(client, range(50)) for s in result]
    assert statuses == [200] * 200
    text = call(served + "/metrics")[2].decode()
    assert 'embedlab_http_requests_total{method="POST",route="/v1/search",status="200"} 200.0' in text


def test_cli_serve_runs_uvicorn(library: Path, root: Path, tmp_path: Path) -> None:
    build_collection(library, root)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "EMBEDLAB_API_KEY": KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "embedlab.cli.main", "serve", "lib", "--root", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, health = call_json(url + "/healthz")
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert status == 200 and health["auth"] is True
        assert call_json(url + "/v1/search", {"query": "bread"}, headers={"X-API-Key": KEY})[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_cli_serve_errors_are_one_line(root: Path, tmp_path: Path) -> None:
    from embedlab.cli.main import main

    for argv, words in (
        (["serve", "nope", "--root", str(root)], "Unknown collection 'nope'"),
        (["serve", "lib", "--port", "70000"], "invalid --port"),
        (["serve", "lib", "--api-key-file", str(tmp_path / "none")], "cannot read the API key"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "embedlab.cli.main", *argv], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 2, argv
        assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert main  # the console script's entry point is importable


def test_feedback_exports_as_a_click_log_for_finetune(served: str, root: Path, tmp_path: Path) -> None:
    from embedlab.train.data import load_training_set

    _, page = call_json(served + "/v1/search", {"query": "sourdough bread oven", "k": 4, "mode": "bm25"})
    ids = [h["chunk_id"] for h in page["hits"]]
    assert len(ids) >= 3

    def send(chunk: int, kind: str) -> None:
        call_json(served + "/v1/feedback", {"query": page["query"], "chunk_id": chunk, "kind": kind, "result_ids": ids})

    send(ids[2], "click")
    send(ids[2], "up")
    send(ids[1], "up")
    send(ids[1], "down")  # changed their mind: not a positive
    send(ids[0], "down")
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
            str(root),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    texts = {h["chunk_id"]: " ".join(h["text"].split()) for h in page["hits"]}  # exported on one line
    assert rows == [{"query": "sourdough bread oven", "clicked": [texts[ids[2]]], "shown": [texts[i] for i in ids]}]
    training = load_training_set(out)
    assert len(training.examples) == 1
    example = training.examples[0]
    assert example.positive == texts[ids[2]]
    assert set(example.negatives) == {texts[ids[0]], texts[ids[1]]}  # skipped above the click

"""The OpenAI-compatible embeddings API, dynamic batching and worker processes, on a real server
(uvicorn on 127.0.0.1) with real clients: the official ``openai`` package and urllib."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

from embedlab.collection import open_collection  # noqa: E402
from embedlab.collection.search import Query, search, search_batch  # noqa: E402
from embedlab.encoders.registry import load_encoder  # noqa: E402
from embedlab.encoders.spec import parse_model_spec  # noqa: E402
from embedlab.errors import EmbedlabError  # noqa: E402
from embedlab.serve import ServeConfig, create_app  # noqa: E402
from tests.serve_fixtures import build_collection, call, call_json, make_library, running  # noqa: E402

KEY = "k" * 24
HASHING = "hashing:dim=32"


def _client(url: str, key: str | None = KEY):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key or "none", max_retries=0, timeout=30)


@pytest.mark.model
def test_openai_client_gets_embedlab_s_own_vectors(tmp_path: Path) -> None:
    prompted = "all-MiniLM-L6-v2:query_prompt=search_query: ,label=minilm-prompted"
    config = ServeConfig(models=("all-MiniLM-L6-v2", prompted), api_key=KEY)
    texts = ["How do I reset my password?", "Bake sourdough with a starter.", "x " * 600]  # the last is truncated
    with running(create_app(config)) as url:
        client = _client(url)
        got = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
        encoder = load_encoder(parse_model_spec("all-MiniLM-L6-v2"))
        ours = encoder.encode(texts, role="document")
        vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
        # unit vectors from the same ONNX graph; another batch composition pads differently, which moves
        # float32 sums by ~1e-7, far below the 1e-6 the API promises
        np.testing.assert_allclose(vectors, ours, atol=1e-6, rtol=0)
        assert [d.index for d in got.data] == [0, 1, 2]
        assert got.usage.prompt_tokens == sum(len(e.ids) for e in encoder.tokenizer.encode_batch(texts))
        assert got.usage.prompt_tokens <= 2 * 256 + 40  # the long text counts its 256 embedded tokens only

        single = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="base64")
        raw = base64.b64decode(single.data[0].embedding) if isinstance(single.data[0].embedding, str) else None
        if raw is not None:  # the client may decode base64 itself; either way the same vector
            np.testing.assert_allclose(np.frombuffer(raw, "<f4"), ours[0], atol=1e-6, rtol=0)
        else:
            np.testing.assert_allclose(np.array(single.data[0].embedding), ours[0], atol=1e-6, rtol=0)

        short = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[:1], dimensions=128)
        cut = ours[0, :128] / np.linalg.norm(ours[0, :128])
        np.testing.assert_allclose(np.array(short.data[0].embedding), cut, atol=1e-6, rtol=0)

        prompted_encoder = load_encoder(parse_model_spec(prompted))
        as_query = client.embeddings.create(model="minilm-prompted:query", input=texts[:1])
        np.testing.assert_allclose(
            np.array(as_query.data[0].embedding), prompted_encoder.encode(texts[:1], role="query")[0], atol=1e-6
        )
        assert not np.allclose(np.array(as_query.data[0].embedding), ours[0], atol=1e-3)  # the prompt counts

        ids = sorted(m.id for m in client.models.list().data)
        assert ids == ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2:query", "minilm-prompted", "minilm-prompted:query"]


def test_bad_requests_are_openai_errors(tmp_path: Path) -> None:
    config = ServeConfig(models=(HASHING,), api_key=KEY, max_inputs=4, max_body_bytes=4096)
    with running(create_app(config)) as url:
        client = _client(url)
        bad_inputs = [[], [1, 2, 3], [[1, 2]], ["a"] * 5, [""], [None], 42]
        for value in bad_inputs:
            with pytest.raises(openai.BadRequestError) as caught:
                client.embeddings.create(model="hashing:dim=32", input=value)
            assert caught.value.body["param"].startswith("input"), value
            assert caught.value.body["type"] == "invalid_request_error"
        with pytest.raises(openai.BadRequestError, match="dimensions"):
            client.embeddings.create(model="hashing:dim=32", input="a", dimensions=64)
        with pytest.raises(openai.NotFoundError, match="does not exist") as missing:
            client.embeddings.create(model="text-embedding-3-small", input="a")
        assert missing.value.body["code"] == "model_not_found"
        with pytest.raises(openai.AuthenticationError):
            _client(url, key="wrong-key-wrong-key").embeddings.create(model="hashing:dim=32", input="a")
        status, data = call_json(
            f"{url}/v1/embeddings", {"model": "hashing:dim=32", "input": "a" * 5000}, headers={"X-API-Key": KEY}
        )
        assert status == 413 and "limit of 4096 bytes" in data["error"]["message"]
        status, data = call_json(f"{url}/v1/embeddings", b"{nope", headers={"X-API-Key": KEY})
        assert status == 400 and data["error"]["type"] == "invalid_request_error"
        status, data = call_json(f"{url}/v1/embeddings", {"input": "a"}, headers={"X-API-Key": KEY})
        assert status == 400 and data["error"]["param"] == "model"


def test_concurrent_requests_share_encoder_batches_and_get_their_own_rows(tmp_path: Path) -> None:
    config = ServeConfig(models=("hashing:dim=32,delay_ms=40",), max_batch=64, max_wait_ms=5)
    encoder = load_encoder(parse_model_spec("hashing:dim=32,delay_ms=40"))
    with running(app := create_app(config)) as url:
        client = _client(url, key=None)

        def one(n: int) -> tuple[int, np.ndarray]:
            texts = [f"request {n} text {i} words {n * i}" for i in range(n % 3 + 1)]
            got = client.embeddings.create(model="hashing:dim=32,delay_ms=40", input=texts)
            return n, np.array([d.embedding for d in got.data], dtype=np.float32)

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(32)))
        for n, vectors in results:
            texts = [f"request {n} text {i} words {n * i}" for i in range(n % 3 + 1)]
            np.testing.assert_array_equal(vectors, encoder.encode(texts, role="document"))  # integer counts: exact
        stats = app.state.batchers["hashing:dim=32,delay_ms=40"].stats
        assert stats.items == 32 and stats.batches < 16, stats  # 40 ms per batch: requests pile up and share
        assert stats.largest > 3


def test_a_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    config = ServeConfig(models=("hashing:dim=8,delay_ms=300",), max_batch=1, max_queue=1, max_wait_ms=0)
    with running(create_app(config)) as url:

        def one(_: int) -> tuple[int, dict[str, str], bytes]:
            return call(f"{url}/v1/embeddings", {"model": "hashing:dim=8,delay_ms=300", "input": "a"})

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(6)))
        busy = [a for a in answers if a[0] == 503]
        assert busy and any(a[0] == 200 for a in answers)
        assert all({k.lower(): v for k, v in a[1].items()}.get("retry-after") == "1" for a in busy)
        assert json.loads(busy[0][2])["error"]["code"] == "server_busy"
        status, _, _ = call(f"{url}/healthz")
        assert status == 200


def test_batched_search_equals_one_by_one(tmp_path: Path) -> None:
    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    queries = [
        Query("reset password link", k=5),
        Query("sourdough flour", k=3, mode="dense"),
        Query("lighthouse lamp", k=4, mode="bm25"),
        Query("two factor", k=5, path_filter="guide/*"),
        Query("bread oven", k=2, mode="dense", path_filter="recipes/*"),
        Query("", k=5),  # a bad query fails alone
        Query("tomato soup", k=1000, candidates=3),
    ]
    with open_collection("lib", root=root) as collection:
        batched = search_batch(collection, queries)
        for query, got in zip(queries, batched, strict=True):
            if not query.query:
                assert isinstance(got, EmbedlabError) and "empty query" in got.one_line()
                continue
            assert not isinstance(got, EmbedlabError)
            alone = search(
                collection,
                query.query,
                k=query.k,
                mode=query.mode,
                path_filter=query.path_filter,
                candidates=query.candidates,
            )
            # dense scores come from one matrix product for the batch and a vector product alone: float32
            # sums in another order differ by a few ulps (0.0 against -1e-9), so results whose scores tie
            # within 1e-5 may trade places; everything else is the same hit at the same place
            got_scores, alone_scores = [h.score for h in got.hits], [h.score for h in alone.hits]
            np.testing.assert_allclose(got_scores, alone_scores, atol=1e-5)
            for i, (a, b) in enumerate(zip(got.hits, alone.hits, strict=True)):
                neighbours = alone_scores[max(0, i - 1) : i] + alone_scores[i + 1 : i + 2]
                separated = i < len(alone_scores) - 1 and all(abs(n - alone_scores[i]) > 1e-5 for n in neighbours)
                assert a.chunk_id == b.chunk_id or not separated, (query, i)


def test_search_requests_are_batched_and_health_answers_under_load(tmp_path: Path) -> None:
    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    with running(app := create_app(ServeConfig(collection="lib", root=root, max_wait_ms=5))) as url:
        with ThreadPoolExecutor(24) as pool:
            answers = list(
                pool.map(lambda n: call_json(f"{url}/v1/search", {"query": f"password {n}", "k": 3}), range(48))
            )
            started = time.perf_counter()
            health = call_json(f"{url}/healthz")
            health_ms = (time.perf_counter() - started) * 1000
        assert all(status == 200 and body["hits"] for status, body in answers)
        assert health[0] == 200 and health[1]["collection"] == "lib" and health_ms < 2000
        stats = app.state.batchers["search"].stats
        assert stats.items == 48 and stats.batches < 48
        # the collection's own model is served for embeddings too (queries embedded like the index)
        assert "hashing:dim=64:query" in health[1]["models"]
        status, _, text = call(f"{url}/metrics")
        assert status == 200 and b'embedlab_batch_size_count{batcher="search"}' in text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_workers_are_separate_processes_sharing_the_feedback_store(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    port = _free_port()
    env = {**os.environ, "EMBEDLAB_PLUGINS": "embedlab.encoders.fake"}
    env.pop("EMBEDLAB_API_KEY", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embedlab.cli.main",
            "serve",
            "lib",
            "--root",
            str(root),
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stdout.read().decode()  # type: ignore[union-attr]
            time.sleep(0.2)
        workers = [p for p in psutil.Process(server.pid).children(recursive=True) if "python" in p.name().lower()]
        assert len(workers) >= 2, workers
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda n: call_json(f"{url}/v1/feedback", {"query": f"q{n}", "chunk_id": 1, "kind": "click"})[0],
                    range(40),
                )
            )
        assert statuses == [200] * 40
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    import sqlite3

    db = sqlite3.connect(root / "lib" / "feedback.sqlite")
    assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 40


def test_a_hit_serialises_every_field(tmp_path: Path) -> None:
    """Hit.to_dict is written out by hand (dataclasses.asdict deep-copies: a third of a batched search's time)."""
    from dataclasses import fields

    from embedlab.collection.search import Hit

    root = tmp_path / "collections"
    build_collection(make_library(tmp_path / "library"), root)
    with open_collection("lib", root=root) as collection:
        hit = search(collection, "password reset", k=1).hits[0]
    assert set(hit.to_dict()) == {f.name for f in fields(Hit)} | {"snippet", "marked_snippet"}
    assert hit.to_dict()["highlights"] == [list(span) for span in hit.highlights]

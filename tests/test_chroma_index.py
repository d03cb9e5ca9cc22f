"""The ``chroma`` index kind: embedded (``PersistentClient``) and through a real ``chroma run``
server on 127.0.0.1 (``HttpClient``), beyond the shared contract that
tests/test_index_contract.py runs over every registered kind (embedded)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embedlab.errors import EmbedlabError
from embedlab.index import build_index, load_index
from embedlab.index.exact import top_k
from tests.helpers import free_port, unit_vectors

pytest.importorskip("chromadb")

SERVER_START_S = 30  # `chroma run` listens within ~1 s here; a bounded wait, then the test fails


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[int]:
    """A real ``chroma run`` on 127.0.0.1 and a free port; stopped (and waited for) afterwards."""
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the chroma command is not installed")
    port = free_port()
    log = (tmp_path / "chroma.log").open("wb")
    server = subprocess.Popen(
        [exe, "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma run did not listen within {SERVER_START_S} s: {log.name}")
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def test_server_build_search_save_load(chroma_server: int, tmp_path: Path) -> None:
    vectors, queries = unit_vectors(1500, 24, 0), unit_vectors(20, 24, 1)
    options = {"host": "127.0.0.1", "port": chroma_server, "fingerprint": "enc-a"}
    index = build_index("chroma", vectors, options=options)
    info = index.info()
    assert info.params["collection"].startswith("embedlab-") and info.recall_at_10 is not None
    assert info.recall_at_10 >= 0.95  # tuned ef_search, measured against exact at build
    exact = top_k(queries, vectors, 10)
    scores, positions = index.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(positions.tolist(), exact[1].tolist(), strict=True)])
    assert recall >= 0.9
    # space "ip": the score is 1 - Chroma's distance; float32 rounding of 1 - (1 - s) stays within 1e-6 for |s| <= 1
    found = positions[0] >= 0
    np.testing.assert_allclose(scores[0][found], vectors[positions[0][found]] @ queries[0], atol=1e-6)
    rows = np.arange(0, 1500, 11)
    got = index.search(queries, 5, rows=rows)[1]
    assert set(got[got >= 0].tolist()) <= set(rows.tolist())
    saved = index.save(tmp_path)
    assert saved.file == "chroma.json"
    assert json.loads((tmp_path / "chroma.json").read_text())["collection"] == info.params["collection"]
    again = load_index(tmp_path, saved, vectors)
    np.testing.assert_array_equal(again.search(queries, 10)[1], positions)
    other = saved.model_copy(update={"params": {**saved.params, "fingerprint": "enc-b"}})
    with pytest.raises(EmbedlabError, match="does not match this index: fingerprint;"):
        load_index(tmp_path, other, vectors)
    gone = saved.model_copy(update={"params": {**saved.params, "collection": "embedlab-missing"}})
    with pytest.raises(EmbedlabError, match="the Chroma collection 'embedlab-missing' does not exist"):
        load_index(tmp_path, gone, vectors)


def test_embedded_store_refuses_another_dimension_and_keeps_its_file(tmp_path: Path) -> None:
    vectors = unit_vectors(300, 16, 2)
    index = build_index("chroma", vectors, options={"space": "cosine", "ef_search": 40, "fingerprint": "enc-a"})
    assert index.info().params["ef_search"] == 40  # given: not tuned
    info = index.save(tmp_path)
    saved = (tmp_path / "chroma.tar").read_bytes()
    again = load_index(tmp_path, info, vectors)
    np.testing.assert_array_equal(index.search(vectors[:5], 10)[1], again.search(vectors[:5], 10)[1])
    assert (tmp_path / "chroma.tar").read_bytes() == saved  # opened from a private copy, never changed
    with pytest.raises(EmbedlabError, match="does not match this index: dimension;"):
        load_index(tmp_path, info, np.ascontiguousarray(vectors[:, :8]))


def test_an_unreachable_server_is_one_line_within_the_timeout() -> None:
    port = free_port()
    started = time.perf_counter()
    with pytest.raises(EmbedlabError, match=rf"cannot reach the Chroma server at 127.0.0.1:{port} within 1 s"):
        build_index("chroma", unit_vectors(10, 8, 0), options={"host": "127.0.0.1", "port": port, "timeout": 1})
    assert time.perf_counter() - started < 5


def test_a_collection_on_chroma_is_built_and_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("fastapi")
    from embedlab.cli.main import main
    from embedlab.serve import ServeConfig, create_app
    from tests.library_fixtures import write_library
    from tests.serve_fixtures import call_json, running

    root = tmp_path / "collections"
    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(root))
    library = write_library(tmp_path / "library")
    argv = ["-q", "index", "build", "lib", str(library), "-m", "hashing:dim=64", "--chunk-tokens", "40"]
    assert main([*argv, "--index", "chroma:space=cosine", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["index", "info", "lib", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["index"]["kind"] == "chroma" and info["index"]["file"] == "chroma.tar"
    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        status, data = call_json(url + "/v1/search", {"query": "reset password", "k": 3, "mode": "dense"})
    assert status == 200 and data["hits"] and "passwords" in data["hits"][0]["path"]


def test_a_collection_on_a_chroma_server_drops_the_collections_of_removed_generations(
    chroma_server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import chromadb

    from embedlab.cli.main import main
    from tests.library_fixtures import write_library

    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    library = write_library(tmp_path / "library")
    argv = ["-q", "index", "build", "lib", str(library), "-m", "hashing:dim=64", "--chunk-tokens", "40"]
    assert main([*argv, "--index", f"chroma:host=127.0.0.1,port={chroma_server}", "--no-progress"]) == 0
    client = chromadb.HttpClient(host="127.0.0.1", port=chroma_server)
    first = [c.name for c in client.list_collections()]
    assert len(first) == 1 and first[0].startswith("embedlab-")
    (library / "recipes" / "soup.txt").unlink()
    assert main(["-q", "index", "update", "lib", "--no-progress"]) == 0  # generation 2, its own collection, live
    capsys.readouterr()
    assert main(["search", "lib", "reset password", "--mode", "dense", "--json"]) == 0
    assert "passwords" in json.loads(capsys.readouterr().out)["hits"][0]["path"]
    second = [c.name for c in client.list_collections()]
    assert len(second) == 1 and second != first  # the previous generation's collection went with it

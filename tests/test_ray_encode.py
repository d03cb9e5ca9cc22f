"""``embedlab encode`` on a real in-process Ray (started once for the module) against the local engine.

The model is the deterministic ``hashing`` plugin (tests/conftest.py), so no weights load and every
vector is exactly reproducible; vectors are unit length, so an absolute tolerance of 1e-6 is ~8
float32 ulps of the largest component (differently composed batches may round differently).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from embedlab.cli.main import main
from embedlab.distributed.shards import load_manifest, read_vectors
from tests.helpers import free_port

ray = pytest.importorskip("ray", reason='needs ray[data]: pip install "ray[data]==2.60.0"')
WORDS = "password reset bread flour account security sourdough starter water login email recipe banana"


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> object:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    rows = [
        {"_id": f"doc{i}", "title": f"t{i % 5}", "text": " ".join(rng.choice(WORDS.split(), size=8 + i % 5))}
        for i in range(47)
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def encode(capsys: pytest.CaptureFixture[str], corpus: Path, out: Path, *extra: str) -> str:
    code, stdout, stderr = cli(
        capsys, "encode", "-m", "hashing", "--corpus", str(corpus), "--out", str(out), "--shard-rows", "10", *extra
    )
    assert code == 0, stderr
    return stdout


def test_ray_vectors_equal_local(capsys, corpus: Path, tmp_path: Path) -> None:
    encode(capsys, corpus, tmp_path / "local", "--no-cache")
    said = encode(
        capsys, corpus, tmp_path / "ray", "--engine", "ray", "--actors", "2", "--batch-size", "4", "--no-cache"
    )
    assert "5 shard(s)" in said and "5 encoded now with --engine ray" in said
    local_ids, local = read_vectors(tmp_path / "local")
    ray_ids, remote = read_vectors(tmp_path / "ray")
    assert ray_ids == local_ids == [f"doc{i}" for i in range(47)]
    np.testing.assert_allclose(remote, local, rtol=0, atol=1e-6)
    a, b = load_manifest(tmp_path / "local"), load_manifest(tmp_path / "ray")
    assert a is not None and b is not None and a.complete and b.complete
    assert a.encoder == b.encoder and [e.rows for e in a.shards] == [e.rows for e in b.shards] == [10, 10, 10, 10, 7]
    assert a.totals == {"documents": 47, "shards": 5}


def test_resume_re_encodes_only_the_missing_shard(capsys, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "vectors"
    encode(capsys, corpus, out, "--engine", "ray", "--actors", "2")
    _, before = read_vectors(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    (out / "shard-00002.parquet").unlink()
    time.sleep(0.01)
    said = encode(capsys, corpus, out, "--engine", "ray", "--actors", "2")
    assert "1 encoded now" in said and "4 already done" in said
    after_stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}
    assert {n for n in stamps if after_stamps[n] != stamps[n]} == {"shard-00002.parquet"}
    _, after = read_vectors(out)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-6)
    # a shard changed on disk fails its checksum: the local engine resumes the Ray run and redoes only it
    damaged = out / "shard-00004.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-9] + b"corrupted")
    with pytest.raises(Exception, match="shard missing or changed"):
        read_vectors(out)
    said = encode(capsys, corpus, out)
    assert "1 encoded now with --engine local" in said
    np.testing.assert_allclose(read_vectors(out)[1], before, rtol=0, atol=1e-6)


def test_parquet_corpus_gives_the_jsonl_vectors(capsys, corpus: Path, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    table = pa.table(
        {"id": [r["_id"] for r in rows], "title": [r["title"] for r in rows], "text": [r["text"] for r in rows]}
    )
    pq.write_table(table, tmp_path / "docs.parquet")
    encode(capsys, corpus, tmp_path / "a", "--no-cache")
    encode(capsys, tmp_path / "docs.parquet", tmp_path / "b", "--no-cache")
    np.testing.assert_allclose(read_vectors(tmp_path / "b")[1], read_vectors(tmp_path / "a")[1], rtol=0, atol=1e-6)


def test_another_encoder_is_not_resumed_into(capsys, corpus: Path, tmp_path: Path) -> None:
    encode(capsys, corpus, tmp_path / "v")
    code, _, err = cli(capsys, "encode", "-m", "hashing:dim=32", "--corpus", str(corpus), "--out", str(tmp_path / "v"))
    assert code == 2 and err.count("\n") == 1 and "another run (encoder differs)" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "hashng"], "Did you mean 'hashing'?"),
        (["--corpus", "missing/corpus.jsonl"], "corpus file not found"),
        (["--corpus", "no-such-dataset"], "dataset 'no-such-dataset' not found"),
        (["--actors", "2"], "need --engine ray"),
    ],
)
def test_bad_input_is_one_line(capsys, corpus: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = {"-m": "hashing", "--corpus": str(corpus), "--out": str(tmp_path / "o")}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    code, _, err = cli(capsys, "encode", *[x for kv in base.items() for x in kv])
    assert code == 2 and err.count("\n") == 1 and message in err


def test_unreachable_address_fails_fast_in_a_fresh_process(corpus: Path, tmp_path: Path) -> None:
    """A fresh process (this one's Ray is already up): nothing listens on the port."""
    options = ["--out", str(tmp_path / "o"), "--engine", "ray", "--ray-address", f"127.0.0.1:{free_port()}"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "embedlab.cli.main", "encode", "-m", "hashing", "--corpus", str(corpus), *options],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("embedlab: error: cannot connect to Ray at '127.0.0.1:") and "within 3 s" in last
    assert time.monotonic() - started < 30


def test_a_listener_that_is_not_ray_is_refused_within_the_bound() -> None:
    from embedlab.distributed.ray_engine import CONNECT_TIMEOUT_S, _probe
    from embedlab.errors import EmbedlabError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:  # accepts and answers garbage: TCP works, gRPC does not
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.sendall(b"HTTP/1.0 200 OK\r\n\r\nnot ray")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(EmbedlabError, match="cannot connect to Ray"):
            _probe(f"ray://127.0.0.1:{server.getsockname()[1]}")
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + 3


def test_an_actor_killed_mid_run_is_restarted_and_the_run_finishes(capsys, corpus: Path, tmp_path: Path) -> None:
    """SIGKILL one encoder actor's process while it works: Ray restarts it and retries its batch
    (max_restarts / max_task_retries), the run finishes and the vectors equal the local engine's."""
    import psutil

    killed: list[int] = []
    out = tmp_path / "ray"

    def kill_one_actor() -> None:  # once the first shard is written, i.e. while batches are flowing
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (out / "shard-00000.parquet").exists():
            time.sleep(0.02)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if "EncodeActor" in " ".join(proc.info["cmdline"] or []) and not (out / "shard-00004.parquet").exists():
                proc.kill()
                killed.append(proc.info["pid"])
                return

    killer = threading.Thread(target=kill_one_actor, daemon=True)
    killer.start()
    slow = "hashing:delay_ms=150"  # ~3 s of batches, so the kill lands mid-run
    args = ("--corpus", str(corpus), "--shard-rows", "10", "--batch-size", "4", "--no-cache")
    code, _, err = cli(capsys, "encode", "-m", slow, *args, "--out", str(out), "--engine", "ray")
    killer.join(timeout=25)
    assert code == 0, err
    assert killed, "no actor process was found to kill before the last shard"
    code, _, err = cli(capsys, "encode", "-m", slow, *args, "--out", str(tmp_path / "local"))
    assert code == 0, err
    np.testing.assert_allclose(
        read_vectors(tmp_path / "ray")[1], read_vectors(tmp_path / "local")[1], rtol=0, atol=1e-6
    )


def test_index_build_on_ray_gives_the_local_collection_through_the_cache(capsys, tmp_path: Path) -> None:
    """``index build/update --engine ray``: the same chunks and vectors (1e-6, as above) as a local
    build; the driver fills the embedding cache, so a rebuild encodes nothing and never starts Ray."""
    import embedlab
    from embedlab.collection.layout import CollectionDir
    from embedlab.collection.vectors import VECTORS, load_vectors
    from tests.library_fixtures import LIBRARY, chunk_rows, write_library

    library = write_library(tmp_path / "lib")
    root, cache = tmp_path / "collections", tmp_path / "cache"
    common = ["-m", "hashing", "--chunk-tokens", "40", "--overlap", "8", "--root", str(root), "--no-progress"]
    code, _, err = cli(capsys, "index", "build", "local", str(library), *common, "--no-cache")
    assert code == 0, err
    code, _, err = cli(
        capsys,
        "index",
        "build",
        "onray",
        str(library),
        *common,
        "--engine",
        "ray",
        "--actors",
        "2",
        "--cache-dir",
        str(cache),
    )
    assert code == 0, err
    local, onray = CollectionDir("local", root=root).live(), CollectionDir("onray", root=root).live()
    assert chunk_rows(local) == chunk_rows(onray) and len(chunk_rows(local)) > len(LIBRARY)
    np.testing.assert_allclose(load_vectors(onray / VECTORS), load_vectors(local / VECTORS), rtol=0, atol=1e-6)

    again = embedlab.build_collection(
        library,
        "onray",
        model="hashing",
        chunk_tokens=40,
        overlap=8,
        root=root,
        replace=True,
        cache=cache,
        engine="ray",  # every chunk is in the cache: nothing goes to Ray
    )
    assert again.encoded == 0 and again.cache_hits == again.chunks
    (library / "guide" / "new.txt").write_text("Sourdough starter needs flour and water every day. " * 6)
    update = embedlab.update_collection("onray", root=root, cache=cache, engine="ray", actors=2)
    assert update.files_new == 1 and update.encoded == update.chunks_added > 0
    code, _, err = cli(capsys, "index", "update", "local", "--root", str(root), "--no-progress", "--no-cache")
    assert code == 0, err
    local, onray = CollectionDir("local", root=root).live(), CollectionDir("onray", root=root).live()
    # the same chunks in the same order; ids differ (--replace numbered onray's chunks on from the old ones)
    assert [row[1:] for row in chunk_rows(local)] == [row[1:] for row in chunk_rows(onray)]
    np.testing.assert_allclose(load_vectors(onray / VECTORS), load_vectors(local / VECTORS), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--actors", "2"], "need --engine ray"),
        (["--engine", "ray", "--actors", "0"], "invalid Ray option"),
        (["--engine", "ray", "--images", "IMAGES"], "--engine ray encodes the chunks of document collections"),
    ],
)
def test_index_build_ray_options_are_checked_in_one_line(
    capsys, tmp_path: Path, extra: list[str], message: str
) -> None:
    from tests.image_library import write_image_library
    from tests.library_fixtures import write_library

    library = write_library(tmp_path / "lib")
    extra = [str(write_image_library(tmp_path / "img")) if x == "IMAGES" else x for x in extra]
    source = [] if "--images" in extra else [str(library)]
    model = "efficientnet-lite0" if "--images" in extra else "hashing"
    code, _, err = cli(capsys, "index", "build", "c", *source, "-m", model, "--root", str(tmp_path / "r"), *extra)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r" / "c").exists()

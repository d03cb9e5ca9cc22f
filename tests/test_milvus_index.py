"""The ``milvus`` index kind on a real Milvus Lite (``milvus-lite``, in-process): what the shared
contract (tests/test_index_contract.py, run over every registered kind) does not cover --
the index types, the filter expression, the stored dimension/fingerprint check, bounded
connects to an unreachable server, and its use from ``embedlab eval``.

A Milvus server is not available here; the server path shares every call with Lite (one
``MilvusClient``) except the connection and the pointer file, and the unreachable-server test
covers the connection's bound."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from embedlab.errors import EmbedlabError
from embedlab.index import build_index, load_index
from embedlab.index.exact import top_k
from tests.helpers import free_port, unit_vectors
from tests.synthetic_vectors import realistic_embeddings

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")


def test_flat_is_exact_and_the_filter_expression_takes_either_side() -> None:
    vectors = unit_vectors(400, 16, 0)
    queries = unit_vectors(5, 16, 1)
    index = build_index("milvus", vectors, options={"index": "flat"})  # names are case-insensitive
    assert index.info().params["index"] == "FLAT" and index.info().recall_at_10 == 1.0
    reference = top_k(queries, vectors, 10)[1]
    assert index.search(queries, 10)[1].tolist() == reference.tolist()  # continuous data: no ties
    few = np.arange(0, 400, 7)  # under half the rows: "pos in [...]"
    many = np.setdiff1d(np.arange(400), np.arange(0, 400, 9))  # over half: "pos not in [the rest]"
    assert index._filter(few).startswith("pos in [") and index._filter(many).startswith("pos not in [")
    for rows in (few, many):
        got = index.search(queries, 10, rows=rows)[1]
        expected = rows[top_k(queries, vectors[rows], 10)[1]]
        assert got.tolist() == expected.tolist()


def test_ivf_tunes_nprobe_and_lite_refuses_server_only_types() -> None:
    vectors, queries, _ = realistic_embeddings()
    index = build_index("milvus", vectors, options={"index": "IVF_FLAT", "nlist": 64})
    info = index.info()
    assert info.params["nlist"] == 64 and info.params["nprobe"] >= 8  # tuned from 8 until recall@10 >= 0.95
    assert info.recall_at_10 is not None and info.recall_at_10 >= 0.95
    exact = top_k(queries, vectors, 10)[1]
    got = index.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.tolist(), exact.tolist(), strict=True)])
    assert recall >= 0.9  # held-out queries: a little under the build-time sample's 0.95
    with pytest.raises(EmbedlabError, match="Milvus Lite cannot build IVF_PQ") as err:
        build_index("milvus", vectors[:100], options={"index": "IVF_PQ"})
    assert "uri=http" in (err.value.hint or "")
    with pytest.raises(EmbedlabError, match="invalid option 'ef' for index 'milvus'"):
        build_index("milvus", vectors[:10], options={"ef": 3})
    with pytest.raises(EmbedlabError, match="Did you mean 'ef_search'"):
        build_index("milvus", vectors[:10], options={"ef_serch": 3})


def test_a_store_with_another_dimension_or_fingerprint_is_refused_naming_the_fields(tmp_path: Path) -> None:
    vectors = unit_vectors(300, 16, 2)
    index = build_index("milvus", vectors, options={"fingerprint": "enc-a", "ef_search": 32})
    info = index.save(tmp_path)
    assert info.file == "milvus-lite.tar" and info.params["fingerprint"] == "enc-a"
    again = load_index(tmp_path, info, vectors)
    np.testing.assert_array_equal(index.search(vectors[:5], 10)[1], again.search(vectors[:5], 10)[1])
    saved = (tmp_path / "milvus-lite.tar").read_bytes()
    load_index(tmp_path, info, vectors)
    assert (tmp_path / "milvus-lite.tar").read_bytes() == saved  # opened from a private copy, never changed
    other_model = info.model_copy(update={"params": {**info.params, "fingerprint": "enc-b"}})
    with pytest.raises(EmbedlabError, match=r"does not match this index: fingerprint;") as err:
        load_index(tmp_path, other_model, vectors)
    assert err.value.found == "fingerprint=enc-a" and err.value.expected == "fingerprint=enc-b"
    with pytest.raises(EmbedlabError, match=r"does not match this index: dimension;"):
        load_index(tmp_path, info, np.ascontiguousarray(vectors[:, :8]))
    with pytest.raises(EmbedlabError, match=r"this index: dimension, rows;"):
        load_index(tmp_path, info, np.ascontiguousarray(vectors[:200, :8]))


def test_an_unreachable_server_is_one_line_within_the_timeout() -> None:
    port = free_port()
    started = time.perf_counter()
    with pytest.raises(EmbedlabError, match=rf"cannot reach the Milvus server at 127.0.0.1:{port} within 1 s"):
        build_index("milvus", unit_vectors(10, 8, 0), options={"uri": f"http://127.0.0.1:{port}", "timeout": 1})
    assert time.perf_counter() - started < 5  # bounded: never pymilvus's own minute of retries
    with pytest.raises(EmbedlabError, match="cannot read the Milvus address"):
        build_index("milvus", unit_vectors(10, 8, 0), options={"uri": "http://:x"})


def test_eval_searches_through_milvus_and_matches_exact(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedlab.cli.main import main

    out = tmp_path / "out"
    argv = ["eval", "-d", str(tiny_dataset), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, "-m", "hashing", "-m", "hashing:index=milvus,index_m=8", "--latency-queries", "2"]) == 0
    results = {r["embedlab"]["model"]: r for r in json.loads((out / "summary.json").read_text())["results"]}
    exact, milvus = results["hashing"], results["hashing:index=milvus,index_m=8"]
    assert milvus["embedlab"]["measurements"]["size"]["index_info"]["kind"] == "milvus"
    assert milvus["embedlab"]["measurements"]["size"]["index_info"]["params"]["m"] == 8
    # five documents: the graph holds every row, so the ranking is the exact one
    assert milvus["scores"] == exact["scores"]
    port = free_port()
    bad = [*argv[:3], "--out", str(tmp_path / "o2"), "--cache-dir", str(tmp_path / "c")]
    capsys.readouterr()
    started = time.perf_counter()
    # eval's rule for a model that fails: recorded with its one-line reason, the run goes on, exit 1
    assert main([*bad, "-m", f"hashing:index=milvus,index_uri=http://127.0.0.1:{port},index_timeout=1"]) == 1
    assert time.perf_counter() - started < 30
    failed = [line for line in capsys.readouterr().err.splitlines() if "failed:" in line]
    assert len(failed) == 1 and f"cannot reach the Milvus server at 127.0.0.1:{port} within 1 s" in failed[0]


def test_index_build_update_and_search_through_milvus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from embedlab.cli.main import main
    from embedlab.collection.manifest import read_manifest
    from tests.library_fixtures import write_library

    monkeypatch.setenv("EMBEDLAB_COLLECTIONS", str(tmp_path / "collections"))
    library = write_library(tmp_path / "library")
    build = ["-q", "index", "build", "lib", str(library), "-m", "hashing:dim=64", "--chunk-tokens", "40"]
    assert main([*build, "--index", "milvus:index=hnsw,m=8", "--no-progress"]) == 0
    capsys.readouterr()
    live = sorted((tmp_path / "collections" / "lib").glob("gen-*"))[-1]
    manifest = read_manifest(live)
    assert manifest.index.kind == "milvus" and manifest.index.file == "milvus-lite.tar"
    assert manifest.index.ann_options["m"] == 8 and manifest.index.params["fingerprint"]  # the encoder's, stored
    assert main(["search", "lib", "reset password", "--k", "3", "--mode", "dense", "--json"]) == 0
    dense = json.loads(capsys.readouterr().out)
    assert dense["hits"] and "passwords" in dense["hits"][0]["path"]
    assert main(["search", "lib", "bread", "--json", "--mode", "dense", "--filter", "path=recipes/*"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and all(h["path"].startswith("recipes/") for h in hits)  # the filter went to Milvus as rows
    (library / "recipes" / "soup.txt").unlink()
    assert main(["-q", "index", "update", "lib", "--no-progress"]) == 0  # a new generation, its own Milvus store
    capsys.readouterr()
    newer = sorted((tmp_path / "collections" / "lib").glob("gen-*"))[-1]
    assert newer != live and read_manifest(newer).index.kind == "milvus"
    assert read_manifest(newer).index.ann_options == manifest.index.ann_options
    assert main([*build[:3], "other", str(library), *build[5:], "--index", "milvus:m=2.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "invalid option 'm' for index 'milvus'" in err
    assert main([*build[:3], "other", str(library), *build[5:], "--index", "milvsu"]) == 2
    assert "Did you mean 'milvus'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.model
def test_scifact_through_milvus_and_chroma_reproduces_exact_ndcg() -> None:
    """Issue 16's bar: all-MiniLM-L6-v2 on SciFact through an HNSW in Milvus Lite (and Chroma) gives
    the exact search's NDCG@10 (published 0.64508) within 0.002, with recall@10 measured at build.
    The three share the session's embedding cache: the corpus is encoded once (~8 min on 2 busy
    cores), then the two outside engines index the same vectors."""
    from embedlab.encoders.spec import parse_model_spec
    from embedlab.eval.metrics import parse_metrics
    from embedlab.eval.runner import EvalSpec, run_eval
    from tests.helpers import shared_dataset

    pytest.importorskip("chromadb")
    # Milvus at its defaults (recall target 0.95; its HNSW measured recall@10 1.000 at ef 64, NDCG
    # exact in every build tried).  Chroma's graph is weaker at the same ef: at the default target
    # it stops at ef 64 (measured recall ~0.99) and gave NDCG@10 0.6382-0.6451 over six builds; at
    # target 0.995 the tuning stops at ef 128 or 256 depending on the (multi-threaded, so varying)
    # graph, and one CI build at ef 128 gave 0.6417.  Target 0.999 stops at ef 256 in every build
    # tried (recall@10 on the real test queries 0.9997-1.000), which the 0.002 bar needs.
    specs = (
        "all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2:index=milvus",
        "all-MiniLM-L6-v2:index=chroma,index_recall_target=0.999",
    )
    spec = EvalSpec(
        datasets=(str(shared_dataset("scifact")),),
        models=tuple(parse_model_spec(s) for s in specs),
        metrics=tuple(parse_metrics(["ndcg@10"])),
        latency_queries=5,
    )
    exact, milvus, chroma = run_eval(spec).results
    assert exact.ok and milvus.ok and chroma.ok, (exact.error, milvus.error, chroma.error)
    assert exact.scores["ndcg_at_10"] == pytest.approx(0.64508, abs=5e-6)  # MTEB's published 5 digits
    for approximate in (milvus, chroma):
        index_info = approximate.measurements["size"]["index_info"]
        got = approximate.scores["ndcg_at_10"]
        assert got == pytest.approx(exact.scores["ndcg_at_10"], abs=0.002), (index_info["kind"], index_info["params"])
        assert index_info["recall_at_10"] is not None and index_info["recall_at_10"] >= index_info["recall_target"]

"""The compact-code index kinds (int8, binary, pca, matryoshka) beyond the shared contract:
their memory, what rescoring buys, their errors, their saved files, and their use from eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedlab.encoders.spec import model_spec_from, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.index import build_index, load_index
from embedlab.search.build import check_index, check_retrievable
from tests.float_tolerance import EPS32
from tests.synthetic_vectors import realistic_embeddings

pytest.importorskip("faiss")

CODED = ["int8", "binary", "pca", "matryoshka"]


def _recall(index, vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    exact = np.argsort(-(queries.astype(np.float64) @ vectors.astype(np.float64).T), axis=1, kind="stable")[:, :k]
    got = index.search(queries, k)[1]
    return float(np.mean([len(set(a.tolist()) & set(e.tolist())) / k for a, e in zip(got, exact, strict=True)]))


def test_int8_holds_a_quarter_of_float32() -> None:
    vectors, _, _ = realistic_embeddings(n=1000, dim=64)
    index = build_index("int8", vectors)
    calibration = 2 * 64 * 4  # per-dimension low and step, float32
    assert index.memory_bytes == vectors.nbytes // 4 + calibration
    assert index.vectors.shape[0] == 0 and len(index) == 1000  # no float copy kept by default
    kept = build_index("int8", vectors, options={"rescore": 50})
    assert kept.memory_bytes == vectors.nbytes // 4 + calibration + vectors.nbytes


def test_binary_holds_a_32nd_of_float32_plus_its_rescoring_store() -> None:
    vectors, _, _ = realistic_embeddings(n=1000, dim=64)
    bits = vectors.nbytes // 32
    assert build_index("binary", vectors, options={"rescore": 0}).memory_bytes == bits
    calibration = 2 * 64 * 4
    assert build_index("binary", vectors).memory_bytes == bits + vectors.nbytes // 4 + calibration
    with_float = build_index("binary", vectors, options={"rescore_with": "float"})
    assert with_float.memory_bytes == bits + vectors.nbytes


def test_bytes_per_row_leave_out_what_does_not_grow_with_the_rows() -> None:
    # a PCA projection (dim x k floats) and int8 ranges are paid once: on a small corpus they
    # used to be spread over the rows and inflated the projection to 1M documents
    vectors, _, _ = realistic_embeddings(n=200, dim=64)
    pca = build_index("pca", vectors, options={"dim": 16})
    assert pca.fixed_bytes == (64 * 16 + 64) * 4  # components + mean, float32
    assert pca.memory_bytes - pca.fixed_bytes == 200 * 16 * 4  # exactly k floats per row
    int8 = build_index("int8", vectors)
    assert int8.memory_bytes - int8.fixed_bytes == 200 * 64  # one byte per dimension per row
    assert build_index("binary", vectors, options={"rescore": 0}).fixed_bytes == 0
    assert build_index("exact", vectors).fixed_bytes == 0


def test_int8_scores_are_within_half_a_step_of_exact() -> None:
    vectors, queries, _ = realistic_embeddings(n=2000, dim=64)
    index = build_index("int8", vectors)
    scores, positions = index.search(queries, 20)
    exact = np.einsum("qd,qkd->qk", queries.astype(np.float64), vectors[positions].astype(np.float64))
    # each coordinate is off by at most step/2, so a score by at most sum_i |q_i| step_i / 2;
    # plus float32 rounding of a 65-term sum of values <= 1 in magnitude
    bound = (np.abs(queries) @ (index.step / 2))[:, None] + 65 * EPS32 * 4
    assert (np.abs(scores - exact) <= bound).all()
    assert (np.abs(scores - exact) > 0).any()  # it is a quantization, not a copy


def test_rescoring_recovers_what_the_first_stage_loses() -> None:
    vectors, queries, _ = realistic_embeddings(n=3000, dim=128)
    hamming = _recall(build_index("binary", vectors, options={"rescore": 0}), vectors, queries)
    rescored = _recall(build_index("binary", vectors), vectors, queries)
    deeper = _recall(
        build_index("binary", vectors, options={"rescore": 400, "rescore_with": "float"}), vectors, queries
    )
    assert hamming < 0.6 and rescored >= 0.9 and deeper >= rescored  # measured: 0.30, 0.97, 1.0
    int8 = _recall(build_index("int8", vectors), vectors, queries)
    int8_rescored = _recall(build_index("int8", vectors, options={"rescore": 50}), vectors, queries)
    assert int8_rescored >= int8 and int8_rescored >= 0.99


def test_hamming_scores_are_the_sign_vectors_inner_product() -> None:
    vectors, queries, _ = realistic_embeddings(n=500, dim=20)  # 20 bits: padded to 3 bytes
    index = build_index("binary", vectors, options={"rescore": 0})
    scores, positions = index.search(queries, 10)
    signs = np.where(vectors > 0, 1, -1)
    expected = np.einsum("qd,qkd->qk", np.where(queries > 0, 1, -1), signs[positions])
    np.testing.assert_array_equal(scores, expected.astype(np.float32))
    best = (np.where(queries > 0, 1, -1) @ signs.T).max(axis=1)
    np.testing.assert_array_equal(scores[:, 0], best)


def test_recall_is_measured_and_reported() -> None:
    vectors, _, _ = realistic_embeddings(n=1000, dim=32)
    for kind in CODED:
        info = build_index(kind, vectors).info()
        assert info.kind == kind and info.recall_queries == 200
        assert info.recall_at_10 is not None and 0.0 < info.recall_at_10 <= 1.0
    hamming = build_index("binary", vectors, options={"rescore": 0}).info().recall_at_10
    rescored = build_index("binary", vectors).info().recall_at_10
    assert hamming is not None and rescored is not None and rescored > hamming


def test_matryoshka_truncates_renormalises_and_says_what_it_is() -> None:
    vectors, queries, _ = realistic_embeddings(n=500, dim=32)
    index = build_index("matryoshka", vectors, options={"dim": 8})
    scores, positions = index.search(queries, 5)
    short = vectors[:, :8] / np.linalg.norm(vectors[:, :8], axis=1, keepdims=True)
    q = queries[:, :8] / np.linalg.norm(queries[:, :8], axis=1, keepdims=True)
    expected = np.einsum("qd,qkd->qk", q, short[positions])
    np.testing.assert_allclose(scores, expected, atol=8 * EPS32 * 2)  # 8-term float32 sums of values <= 1
    info = index.info()
    assert info.params == {"dim": 8, "normalize": True}
    assert info.note is not None and "Matryoshka" in info.note and "8 of 32" in info.note
    assert index.memory_bytes == 500 * 8 * 4
    raw = build_index("matryoshka", vectors * 3.0, options={"dim": 8})  # not unit length: not re-normalised
    assert raw.info().params["normalize"] is False


def test_matryoshka_and_pca_refuse_more_dimensions_than_the_vectors_have() -> None:
    vectors, _, _ = realistic_embeddings(n=50, dim=16)
    for kind in ("matryoshka", "pca"):
        with pytest.raises(EmbedlabError, match=f"index '{kind}' cannot keep 32 dimensions of 16") as caught:
            build_index(kind, vectors, options={"dim": 32})
        assert "\n" not in str(caught.value)


def test_pca_projection_is_saved_checked_and_used_on_load(tmp_path: Path) -> None:
    vectors, queries, ids = realistic_embeddings(n=800, dim=32)
    index = build_index("pca", vectors, ids, options={"dim": 12, "sample": 300, "seed": 3})
    info = index.save(tmp_path)
    assert info.file == "pca.npz" and info.sha256 and info.params["dim"] == 12
    again = load_index(tmp_path, info, vectors, ids)
    np.testing.assert_array_equal(again.components, index.components)
    np.testing.assert_array_equal(again.mean, index.mean)
    # the stored projection and rows are used, not refitted: other vectors of the same shape
    # give the same results
    other = load_index(tmp_path, info, np.zeros_like(vectors), ids)
    np.testing.assert_array_equal(other.search(queries, 10)[1], index.search(queries, 10)[1])
    assert again.info().recall_at_10 == info.recall_at_10
    with pytest.raises(EmbedlabError, match="does not match the vectors"):
        load_index(tmp_path, info, vectors[:-1], ids[:-1])
    (tmp_path / "pca.npz").unlink()
    with pytest.raises(EmbedlabError, match="pca index file is missing"):
        load_index(tmp_path, info, vectors, ids)


def test_pca_fits_a_seeded_sample() -> None:
    vectors, _, _ = realistic_embeddings(n=1000, dim=16)
    a = build_index("pca", vectors, options={"dim": 4, "sample": 200, "seed": 1})
    b = build_index("pca", vectors, options={"dim": 4, "sample": 200, "seed": 1})
    c = build_index("pca", vectors, options={"dim": 4, "sample": 200, "seed": 2})
    np.testing.assert_array_equal(a.components, b.components)
    assert not np.array_equal(np.abs(a.components), np.abs(c.components))
    # a 200-row sample finds nearly the same leading direction as all 1,000 rows
    full = build_index("pca", vectors, options={"dim": 4})
    assert abs(float(a.components[0] @ full.components[0])) > 0.95


@pytest.mark.parametrize("kind", ["int8", "binary"])
def test_saved_codes_are_searched_without_the_float_vectors(kind: str, tmp_path: Path) -> None:
    vectors, queries, ids = realistic_embeddings(n=600, dim=24)
    index = build_index(kind, vectors, ids)
    info = index.save(tmp_path)
    again = load_index(tmp_path, info, np.zeros_like(vectors), ids)
    np.testing.assert_array_equal(again.search(queries, 10)[1], index.search(queries, 10)[1])
    assert again.memory_bytes == index.memory_bytes


def test_empty_indexes_answer_nothing() -> None:
    for kind in CODED:
        index = build_index(kind, np.zeros((0, 8), np.float32))
        assert len(index) == 0 and index.search(np.ones((2, 8), np.float32), 5)[1].shape == (2, 0)


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("int8", {"rescore": -1}, "invalid option 'rescore' for index 'int8'"),
        ("int8", {"range_quantile": 0.2}, "invalid option 'range_quantile'"),
        ("binary", {"rescore_with": "int4"}, "invalid option 'rescore_with' for index 'binary'"),
        ("binary", {"rescroe": 10}, "Did you mean 'rescore'"),
        ("pca", {"dim": 0}, "invalid option 'dim' for index 'pca'"),
        ("pca", {"dim": "many"}, "invalid option 'dim'"),
        ("matryoshka", {"dims": 8}, "Did you mean 'dim'"),
    ],
)
def test_bad_options_are_one_line(kind: str, options: dict[str, object], message: str) -> None:
    vectors, _, _ = realistic_embeddings(n=20, dim=8)
    with pytest.raises(EmbedlabError, match=message) as caught:
        build_index(kind, vectors, options=options)
    assert "\n" not in str(caught.value)


def test_model_specs_carry_index_options() -> None:
    spec = parse_model_spec("all-MiniLM-L6-v2:index=binary,index_rescore=100,index_rescore_with=float")
    assert spec.index == "binary" and spec.index_options == {"rescore": "100", "rescore_with": "float"}
    assert spec.name == "all-MiniLM-L6-v2:index=binary,index_rescore=100,index_rescore_with=float"
    assert check_index(spec) == {"rescore": 100, "rescore_with": "float"}  # validated, typed
    assert parse_model_spec(spec.name) == spec  # the name reads back as the same spec
    # a candidates file writes the same keys (TOML values are typed already)
    table = model_spec_from({"model": "hashing", "index": "pca", "index_dim": 4}, source="candidates.toml")
    assert table.index_options == {"dim": 4} and table.name == "hashing:index=pca,index_dim=4"
    with pytest.raises(EmbedlabError, match="Did you mean 'index_dim'") as caught:
        check_retrievable(parse_model_spec("hashing:index=pca,index_dims=128"))
    assert "\n" not in str(caught.value)
    with pytest.raises(EmbedlabError, match="invalid option 'index_dim' for index 'exact'"):
        check_retrievable(parse_model_spec("hashing:index_dim=128"))
    with pytest.raises(EmbedlabError, match="unknown model option 'index_dim' for 'bm25'"):
        parse_model_spec("bm25:index_dim=3")


def test_eval_records_the_index_it_searched(tiny_dataset: Path, tmp_path: Path) -> None:
    from embedlab.cli.main import main

    out = tmp_path / "out"
    models = ["hashing", "hashing:index=binary,index_rescore=3", "hashing:index=matryoshka,index_dim=16"]
    argv = ["eval", "-d", str(tiny_dataset), "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    assert main([*argv, *[arg for m in models for arg in ("-m", m)], "--latency-queries", "2"]) == 0
    results = {r["embedlab"]["model"]: r for r in json.loads((out / "summary.json").read_text())["results"]}
    exact = results["hashing"]["embedlab"]["measurements"]["size"]
    binary = results["hashing:index=binary,index_rescore=3"]["embedlab"]["measurements"]["size"]
    assert binary["index_info"]["kind"] == "binary" and binary["index_info"]["params"]["rescore"] == 3
    assert binary["index_info"]["recall_at_10"] is not None
    assert binary["index_bytes"] < exact["index_bytes"]  # 1/32 + 1/4 of the float rows, plus calibration
    truncated = results["hashing:index=matryoshka,index_dim=16"]["embedlab"]
    assert "Matryoshka" in truncated["measurements"]["size"]["index"]
    assert truncated["measurements"]["size"]["index_info"]["params"]["dim"] == 16
    assert truncated["fingerprint"]["index_options"] == {"dim": 16}
    report = (out / "report.md").read_text()  # the caveat and the recall are in the report itself
    assert "index matryoshka (dim=16,normalize=True), recall@10 vs exact" in report
    assert "NOTE: Matryoshka truncation to the first 16 of" in report


def test_collections_refuse_index_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embedlab.cli.main import main

    library = tmp_path / "library"
    library.mkdir()
    (library / "a.txt").write_text("a short note about quantization", encoding="utf-8")
    assert main(["index", "build", str(library), "-c", "x", "-m", "hashing:index_dim=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model option index_dim does not apply to collections" in err[0]


def test_a_small_binary_search_runs_on_one_faiss_thread_and_restores_the_setting(monkeypatch) -> None:
    from contextlib import contextmanager

    faiss = pytest.importorskip("faiss")
    from embedlab.index import faiss_index
    from embedlab.index.exact import SMALL_PRODUCT

    seen: list[int] = []
    original = faiss_index.one_faiss_thread_if_small

    @contextmanager
    def spy(work: int):
        with original(work):
            seen.append(faiss.omp_get_max_threads())  # while FAISS searches
            yield

    monkeypatch.setattr("embedlab.index.binary.one_faiss_thread_if_small", spy)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        vectors, queries, _ = realistic_embeddings(n=200, dim=64)
        index = build_index("binary", vectors, options={"rescore": 20, "rescore_with": "float"})
        seen.clear()  # building searched too (its recall check)
        index.search(queries[:1], 5)
        assert seen == [1] and faiss.omp_get_max_threads() == 2  # one thread inside, the setting back after
        with original(SMALL_PRODUCT):  # a large search keeps every thread
            assert faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)

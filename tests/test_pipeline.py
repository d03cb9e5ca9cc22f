"""Pipelines as data: one spec (string or table) runs the same in eval, select, search and serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.collection import open_collection
from embedlab.collection.search import pipeline_options
from embedlab.data.beir import load_dataset
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.search.build import build_retriever
from embedlab.search.fusion import fuse
from embedlab.search.pipeline import Fusion, PipelineSpec, parse_pipeline, parse_retrieval, pipeline_from_table
from embedlab.search.rerank import WordOverlapReranker
from embedlab.select.candidates import load_candidates
from tests.serve_fixtures import build_collection, call_json, make_library, running


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("bm25", "bm25"),
        ("bm25+hashing:dim=32", "bm25 + hashing:dim=32"),
        ("bm25 + hashing | rrf", "bm25 + hashing"),
        ("bm25 + hashing | rrf:k=20,weights=1/2", "bm25 + hashing | rrf:k=20,weights=1/2"),
        ("hashing >> word-overlap", "hashing >> word-overlap@20"),
        ("bm25+hashing|rrf:candidates=50>>word-overlap@5", "bm25 + hashing | rrf:candidates=50 >> word-overlap@5"),
    ],
)
def test_the_string_grammar_round_trips(text: str, canonical: str) -> None:
    spec = parse_pipeline(text)
    assert str(spec) == canonical
    assert parse_pipeline(str(spec)) == spec


def test_a_plain_model_stays_a_model_spec() -> None:
    assert parse_retrieval("bm25:k1=1.2,b=0.75") == ModelSpec(model="bm25", k1=1.2, b=0.75)
    assert isinstance(parse_retrieval("bm25 + hashing"), PipelineSpec)


def test_a_table_is_the_same_pipeline() -> None:
    table = {
        "first": ["bm25", "hashing:dim=32"],
        "fusion": {"k": 20, "weights": [1, 2]},
        "rerank": [{"reranker": "word-overlap", "depth": 5}],
    }
    assert pipeline_from_table(table, source="t") == parse_pipeline(
        "bm25 + hashing:dim=32 | rrf:k=20,weights=1/2 >> word-overlap@5"
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty pipeline"),
        ("bm25 + hashing | borda", "unknown fusion 'borda'"),
        ("bm25 + hashing | rrf:weights=1/2/3", "wrong number of fusion weights"),
        ("bm25 + hashing | rrf:k=abc", "invalid fusion options"),
        ("bm25 + hashing | rrf:z=1", "cannot read fusion option"),
        ("bm25 >> word-overlap@0", "invalid re-rank depth"),
        ("bm25 + ", "empty model"),
        ("bm25:pooling=cls + hashing", "unknown model option 'pooling' for 'bm25'"),
    ],
)
def test_bad_pipelines_are_one_clear_line(text: str, needle: str) -> None:
    with pytest.raises(EmbedlabError, match=None) as caught:
        parse_pipeline(text)
    assert needle in caught.value.one_line() and "\n" not in caught.value.one_line()


def test_a_fused_pipeline_equals_fusing_its_parts(tiny_dataset: Path) -> None:
    dataset = load_dataset(str(tiny_dataset))
    spec = parse_pipeline("bm25 + hashing:dim=32 | rrf:k=5,weights=1/2,candidates=3")
    pipeline = build_retriever(spec)
    pipeline.index(dataset.iter_documents(), cache=None, stats=EncodeStats())
    got = pipeline.search(dataset.queries, 4, cache=None, stats=EncodeStats())
    parts = []
    for model in spec.first:
        retriever = build_retriever(model)
        retriever.index(dataset.iter_documents(), cache=None, stats=EncodeStats())
        parts.append(retriever.search(dataset.queries, 4, cache=None, stats=EncodeStats()))
    # each part answers with max(k, candidates) results, as a collection's hybrid search does
    assert got.scores == fuse(parts, k=4, rrf_k=5, weights=(1, 2), depth=4).scores
    assert pipeline.search_one(dataset.queries["q1"], 4) == got.ranking("q1")


def test_rerank_reorders_the_top_depth_and_keeps_the_rest(tiny_dataset: Path) -> None:
    dataset = load_dataset(str(tiny_dataset))
    first = build_retriever(ModelSpec(model="bm25"))
    first.index(dataset.iter_documents(), cache=None, stats=EncodeStats())
    staged = build_retriever(parse_pipeline("bm25 >> word-overlap@2"))
    staged.index(dataset.iter_documents(), cache=None, stats=EncodeStats())
    texts = {d.id: d.content for d in dataset.iter_documents()}
    base = first.search(dataset.queries, 5, cache=None, stats=EncodeStats())
    got = staged.search(dataset.queries, 5, cache=None, stats=EncodeStats())
    overlap = WordOverlapReranker()
    for query_id, query in dataset.queries.items():
        before = [d for d, _ in base.ranking(query_id)]
        scores = overlap.score(query, [texts[d] for d in before[:2]])
        top = [before[i] for i in sorted(range(len(scores)), key=lambda i: (-scores[i], i))]
        assert [d for d, _ in got.ranking(query_id)] == top + before[2:]


def test_eval_and_select_take_pipelines(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "eval",
            "-d",
            str(tiny_dataset),
            "-m",
            "bm25 + hashing | rrf:k=10",
            "-m",
            "bm25",
            "--out",
            str(out),
            "--latency-queries",
            "2",
            "--no-cache",
        ]
    )
    assert code == 0, capsys.readouterr().err
    written = json.loads((out / "tiny" / "bm25_hashing_rrf_k=10.json").read_text())
    assert written["embedlab"]["fingerprint"]["pipeline"] == "bm25 + hashing | rrf:k=10"
    candidates = tmp_path / "c.toml"
    candidates.write_text(
        '[[candidate]]\npipeline = "bm25 + hashing"\nlabel = "hybrid"\n\n'
        '[[candidate]]\nlabel = "weighted"\n'
        'pipeline = { first = ["bm25", "hashing"], fusion = { weights = [1, 3] } }\n\n'
        '[[candidate]]\nmodel = "bm25"\n'
    )
    specs, _ = load_candidates(candidates)
    assert [s.name for s in specs] == ["hybrid", "weighted", "bm25"]
    assert specs[1] == PipelineSpec(
        first=(ModelSpec(model="bm25"), ModelSpec(model="hashing")), fusion=Fusion(weights=(1.0, 3.0)), label="weighted"
    )
    bad = tmp_path / "bad.toml"
    bad.write_text('[[candidate]]\npipeline = "bm25 + hashing"\npooling = "cls"\n')
    with pytest.raises(EmbedlabError, match="takes only 'pipeline' and 'label'"):
        load_candidates(bad)


def test_collections_search_and_serve_the_same_pipeline(tmp_path: Path, capsys) -> None:
    library, root = make_library(tmp_path / "library"), tmp_path / "collections"
    build_collection(library, root)
    pipeline = "bm25 + hashing | rrf:k=30,weights=2/1 >> word-overlap@5"
    with open_collection("lib", root=root) as collection:
        chosen = pipeline_options(parse_pipeline(pipeline), dense_model=collection.dense_model)
        assert (chosen.mode, chosen.rrf_k, chosen.weights, chosen.reranker, chosen.rerank_depth) == (
            "hybrid",
            30.0,
            (1.0, 2.0),
            "word-overlap",
            5,
        )  # weights follow the names: dense 1, bm25 2
        expected = collection.search(
            "reset password link",
            k=5,
            mode="hybrid",
            rrf_k=30,
            weights=(1.0, 2.0),
            reranker=WordOverlapReranker(),
            rerank_depth=5,
        )
        with pytest.raises(EmbedlabError, match="not in this collection"):
            pipeline_options(parse_pipeline("all-MiniLM-L6-v2"), dense_model=collection.dense_model)
    ids = [h.chunk_id for h in expected.hits]
    assert (
        main(
            ["search", "lib", "reset password link", "--root", str(root), "--k", "5", "--json", "--pipeline", pipeline]
        )
        == 0
    )
    assert [h["chunk_id"] for h in json.loads(capsys.readouterr().out)["hits"]] == ids
    from embedlab.serve import ServeConfig, create_app

    with running(create_app(ServeConfig(collection="lib", root=root, reranker="word-overlap"))) as url:
        status, body = call_json(f"{url}/v1/search", {"query": "reset password link", "k": 5, "pipeline": pipeline})
        assert status == 200 and [h["chunk_id"] for h in body["hits"]] == ids
        status, body = call_json(f"{url}/v1/search", {"query": "x", "pipeline": "dense >> /etc@5"})
        assert status == 400 and "is not this server's" in body["error"]
        status, body = call_json(f"{url}/v1/search", {"query": "x", "pipeline": "bm25 | borda"})
        assert status == 400 and "unknown fusion" in body["error"]

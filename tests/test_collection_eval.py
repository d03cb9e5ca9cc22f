"""Chunk-level evaluation: a collection built from a BEIR corpus, scored on its qrels (document = best chunk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embedlab.collection import build, open_collection
from embedlab.collection.corpus import corpus_folder, document_ids
from embedlab.collection.evaluate import evaluate_collection
from embedlab.data.beir import load_dataset
from embedlab.encoders.spec import ModelSpec, parse_model_spec
from embedlab.errors import EmbedlabError
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalSpec, run_eval
from tests.helpers import shared_dataset, write_beir
from tests.library_fixtures import HASHING

METRICS = tuple(parse_metrics(["ndcg@10", "mrr@10", "recall@100"]))
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "omicron",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "river",
    "mountain",
    "forest",
    "desert",
    "ocean",
    "island",
    "valley",
    "canyon",
    "glacier",
    "meadow",
    "prairie",
    "swamp",
]


def _filler(seed: int, n: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] for i in range(n)) + "."


def _long_doc_dataset(folder: Path) -> Path:
    """Documents several chunks long; each query's answer sits in one document's *last* paragraph."""
    corpus, queries, qrels = [], [], []
    for i in range(8):
        paragraphs = [_filler(i + j, 30) for j in range(4)] + [f"The secret ingredient number {i} is saffron{i}."]
        corpus.append({"_id": f"doc/{i}", "title": f"Document {i}", "text": "\n\n".join(paragraphs)})
        queries.append({"_id": f"q{i}", "text": f"secret ingredient saffron{i}"})
        qrels.append((f"q{i}", f"doc/{i}", 1))
    return write_beir(folder, corpus=corpus, queries=queries, qrels=qrels)


def test_corpus_folder_round_trip(tmp_path: Path) -> None:
    dataset = load_dataset(_long_doc_dataset(tmp_path / "long"))
    folder = corpus_folder(dataset, cache_dir=tmp_path / "cache")
    ids = document_ids(folder)
    assert sorted(ids.values()) == [f"doc/{i}" for i in range(8)] and "doc%2F0.txt" in ids
    assert (folder / "doc%2F3.txt").read_text().startswith("Document 3\n\n")
    assert corpus_folder(dataset, cache_dir=tmp_path / "cache") == folder  # reused, not rewritten
    with pytest.raises(EmbedlabError, match="not built from a dataset"):
        document_ids(tmp_path)


def test_document_scores_are_the_best_chunk(tmp_path: Path) -> None:
    path = _long_doc_dataset(tmp_path / "long")
    dataset = load_dataset(path)
    root = tmp_path / "collections"
    build(corpus_folder(dataset), "long", model_spec=HASHING, root=root, use_cache=False, max_tokens=40, overlap=0)
    result = evaluate_collection("long", str(path), modes=("bm25", "dense", "hybrid"), metrics=METRICS, root=root)
    by_mode = {r.model.split("/")[1]: r for r in result.report.results}
    bm25 = by_mode["bm25"]
    assert bm25.scores["ndcg_at_10"] == 1.0 and bm25.scores["mrr_at_10"] == 1.0
    with open_collection("long", root=root) as collection:
        assert len(collection) > 3 * 8  # several chunks per document
        hits = collection.search("secret ingredient saffron3", k=50, mode="bm25").hits
    ids = document_ids(corpus_folder(dataset))
    best = {}
    for hit in hits:
        best.setdefault(ids[hit.path], hit.score)
    ranking = bm25.run.ranking("q3")
    # the same BM25 code on the same chunks in the same process: equal scores (approx only for float32 -> float)
    assert ranking[0] == ("doc/3", pytest.approx(best["doc/3"]))
    assert dict(ranking) == pytest.approx(best)  # every document once, at its best chunk's score
    assert bm25.measurements["conditions"]["document_score"] == "best chunk (MaxP)"
    assert len(result.comparisons) == 3 and all(0 <= c.p_holm <= 1 for c in result.comparisons)
    assert {c.metric for c in result.comparisons} == {"ndcg_at_10"}
    pair = next(c for c in result.comparisons if {c.a, c.b} == {"long/bm25", "long/dense"})
    assert pair.difference == pytest.approx(pair.mean_a - pair.mean_b)


def test_single_chunk_bm25_matches_the_eval_core(tmp_path: Path, tiny_dataset: Path) -> None:
    """With one chunk per document, a collection's BM25 ranks documents as ``embedlab eval -m bm25`` does."""
    root = tmp_path / "collections"
    dataset = load_dataset(tiny_dataset)
    build(corpus_folder(dataset), "tiny", model_spec=HASHING, root=root, use_cache=False, max_tokens=400)
    ours = evaluate_collection("tiny", str(tiny_dataset), modes=("bm25",), metrics=METRICS, root=root)
    core = run_eval(
        EvalSpec(
            datasets=(str(tiny_dataset),),
            models=(parse_model_spec("bm25"),),
            metrics=METRICS,
            use_cache=False,
            latency_queries=0,
        )
    )
    # float64 metrics of the same rankings (distinct BM25 scores on this corpus): 1e-6 is the documented contract
    assert ours.report.results[0].scores == pytest.approx(core.results[0].scores, abs=1e-6)


def test_a_collection_of_other_documents_is_refused(tmp_path: Path, tiny_dataset: Path) -> None:
    root = tmp_path / "collections"
    other = load_dataset(_long_doc_dataset(tmp_path / "long"))
    build(corpus_folder(other), "long", model_spec=HASHING, root=root, use_cache=False)
    with pytest.raises(EmbedlabError, match="holds none of"):
        evaluate_collection("long", str(tiny_dataset), modes=("bm25",), metrics=METRICS, root=root)


def test_cli_build_from_dataset_and_eval_collection(tmp_path: Path) -> None:
    path = _long_doc_dataset(tmp_path / "long")
    root, out = tmp_path / "collections", tmp_path / "out"

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "embedlab.cli.main", *argv], capture_output=True, text=True, timeout=120
        )

    built = cli(
        "index",
        "build",
        "--dataset",
        str(path),
        "--collection",
        "long",
        "--model",
        "hashing:dim=64",
        "--chunk-tokens",
        "40",
        "--overlap",
        "0",
        "--root",
        str(root),
        "--no-progress",
    )
    assert built.returncode == 0, built.stderr
    done = cli("eval", "-d", str(path), "--collection", "long", "--root", str(root), "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "long/bm25 vs long/hybrid" in done.stdout or "long/dense vs long/bm25" in done.stdout
    comparisons = json.loads((out / "comparisons.json").read_text())
    assert len(comparisons) == 3 and {"p_holm", "ci_low", "difference"} <= set(comparisons[0])
    summary = json.loads((out / "summary.json").read_text())
    assert all(r["embedlab"]["published"] is None for r in summary["results"])  # not the model's protocol
    assert [r["embedlab"]["model"] for r in summary["results"]] == ["long/dense", "long/bm25", "long/hybrid"]
    for argv, words in (
        (["eval", "-d", str(path), "--collection", "long", "-m", "bm25"], "do not go together"),
        (["eval", "-d", str(path)], "nothing to evaluate"),
        (["eval", "-d", str(path), "--collection", "long", "--root", str(root), "--mode", "fuzzy"], "fuzzy"),
        (["eval", "-d", str(path), "-m", "bm25", "--mode", "dense"], "--collection only"),
        (["index", "build", "--collection", "x", "--model", "bm25"], "one of the three"),
    ):
        result = cli(*argv)
        assert result.returncode == 2 and words in result.stderr, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.model
def test_scifact_chunk_eval_smoke(tmp_path: Path) -> None:
    """Real model, real data, a slice: 40 SciFact documents, their queries, MiniLM chunks of 128 tokens."""
    source = load_dataset(shared_dataset("scifact"))
    keep = sorted({d for docs in source.qrels.judgments.values() for d in docs})[:40]
    corpus = [{"_id": d.id, "title": d.title, "text": d.text} for d in source.iter_documents() if d.id in keep]
    pairs = [(q, d, g) for q, docs in source.qrels.judgments.items() for d, g in docs.items() if d in keep]
    queries = [{"_id": q, "text": source.queries[q]} for q in sorted({p[0] for p in pairs})]
    path = write_beir(tmp_path / "slice", corpus=corpus, queries=queries, qrels=pairs)
    root = tmp_path / "collections"
    build(
        corpus_folder(load_dataset(path)),
        "slice",
        model_spec=ModelSpec(model="all-MiniLM-L6-v2"),
        root=root,
        max_tokens=128,
        overlap=16,
    )
    result = evaluate_collection("slice", str(path), modes=("dense", "hybrid"), metrics=METRICS, root=root)
    scores = {r.model: r.scores["ndcg_at_10"] for r in result.report.results}
    assert all(s > 0.6 for s in scores.values()), scores  # 40 documents: the right one is easy to find

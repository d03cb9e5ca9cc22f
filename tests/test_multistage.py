"""Multi-stage retrieval (issue 14): bi-encoder re-scoring stages, stage-score fusion, normalised
score fusion, `embedlab tune fusion` (dev queries never reported) and `embedlab tune depth`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from embedlab.cli.main import main
from embedlab.collection import open_collection
from embedlab.collection.search import pipeline_options
from embedlab.data.beir import load_dataset
from embedlab.encoders.base import EncodeStats
from embedlab.errors import EmbedlabError
from embedlab.search.build import build_retriever
from embedlab.search.fusion import combine, normalised
from embedlab.search.pipeline import Fusion, PipelineSpec, Rerank, parse_pipeline, parse_retrieval, pipeline_from_table
from embedlab.search.rerank import BiEncoderReranker, load_reranker, stage_scores
from embedlab.search.staged import PipelineRetriever
from embedlab.select.candidates import load_candidates
from embedlab.tune.fusion import settings_grid
from embedlab.tune.splits import split_queries
from tests.helpers import single_char_dataset, write_beir
from tests.serve_fixtures import build_collection, call_json, make_library, running


def _search(pipeline: str, dataset: Path, k: int = 5):
    data = load_dataset(str(dataset))
    retriever = build_retriever(parse_retrieval(pipeline))
    retriever.index(data.iter_documents(), cache=None, stats=EncodeStats())
    return data, retriever.search(data.queries, k, cache=None, stats=EncodeStats())


# --- grammar -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("bm25+hashing|minmax:weights=0.3/0.7", "bm25 + hashing | minmax:weights=0.3/0.7"),
        ("bm25 + hashing | zscore", "bm25 + hashing | zscore"),
        ("hashing >> bi:hashing:dim=64@50", "hashing >> bi:hashing:dim=64@50"),
        ("hashing >> bi:hashing:dim=64@50 fuse=weighted:0.3", "hashing >> bi:hashing:dim=64@50 fuse=weighted:0.3"),
        ("hashing >> word-overlap@5 fuse=last", "hashing >> word-overlap@5"),
    ],
)
def test_fusion_methods_and_stage_fusion_round_trip(text: str, canonical: str) -> None:
    spec = parse_pipeline(text)
    assert str(spec) == canonical
    assert parse_pipeline(str(spec)) == spec


def test_the_table_form_takes_method_and_fuse() -> None:
    table = {
        "first": ["bm25", "hashing"],
        "fusion": {"method": "minmax", "weights": [0.3, 0.7]},
        "rerank": [{"reranker": "bi:hashing:dim=64", "depth": 30, "fuse": "weighted:0.25"}],
    }
    spec = pipeline_from_table(table, source="t.toml")
    assert spec.fusion == Fusion(weights=(0.3, 0.7), method="minmax")
    assert spec.rerank == (Rerank(reranker="bi:hashing:dim=64", depth=30, fuse=0.25),)
    assert spec == parse_pipeline(str(spec))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("bm25 + hashing | minmax:k=20", "fusion option k is for rrf"),
        ("bm25 + hashing | borda", "unknown fusion 'borda'"),
        ("hashing >> word-overlap@5 fuse=weighted:2", "cannot read stage fusion"),
        ("hashing >> word-overlap@5 fuse=mean", "cannot read stage fusion"),
    ],
)
def test_bad_fusion_is_one_clear_line(text: str, needle: str) -> None:
    with pytest.raises(EmbedlabError, match=needle):
        parse_pipeline(text)


# --- score fusion ----------------------------------------------------------------------------------


def test_normalised_and_combined_scores_match_hand_computed_values() -> None:
    assert normalised([3.0, 1.0, 2.0], "minmax") == [1.0, 0.0, 0.5]
    assert normalised([4.0, 4.0], "minmax") == [1.0, 1.0]
    assert normalised([3.0, 1.0], "zscore") == [1.0, -1.0]  # mean 2, population std 1
    a, b = [("a", 3.0), ("b", 1.0)], [("b", 10.0), ("c", 0.0)]
    # min-max: a -> (1, missing 0), b -> (0, 1), c -> (missing 0, 0)
    assert combine([a, b], method="minmax", weights=(0.7, 0.3)) == [("a", 0.7), ("b", 0.3), ("c", 0.0)]
    # z-score: A = (a 1, b -1), B = (b 1, c -1); a missing from B gets B's lowest (-1), c A's lowest (-1)
    got = combine([a, b], method="zscore", weights=(0.7, 0.3))
    assert [d for d, _ in got] == ["a", "b", "c"]
    for (_, score), want in zip(got, [0.4, -0.4, -1.0], strict=True):
        assert math.isclose(score, want, abs_tol=1e-12)  # sums of a few O(1) products: exact to ~1e-16


def test_stage_scores_are_the_last_or_a_weighted_mix() -> None:
    assert stage_scores([1.0, 2.0, 3.0], [30.0, 10.0, 20.0], weight=0.0) == [30.0, 10.0, 20.0]
    # previous min-max (0, 0.5, 1), new min-max (1, 0, 0.5), W = 0.5
    assert stage_scores([1.0, 2.0, 3.0], [30.0, 10.0, 20.0], weight=0.5) == [0.5, 0.25, 0.75]


def test_a_fused_first_stage_runs_minmax_and_zscore(tiny_dataset: Path) -> None:
    data, dense = _search("hashing", tiny_dataset, k=5)
    _, lexical = _search("bm25", tiny_dataset, k=5)
    for method in ("minmax", "zscore"):
        _, run = _search(f"bm25 + hashing | {method}:weights=0.4/0.6", tiny_dataset, k=5)
        for query_id in data.queries:
            expected = combine([lexical.ranking(query_id), dense.ranking(query_id)], method=method, weights=(0.4, 0.6))
            assert [d for d, _ in run.ranking(query_id)] == [d for d, _ in expected][:5]


# --- bi-encoder re-scoring stage ---------------------------------------------------------------------


def test_a_bi_encoder_stage_over_everything_is_that_model(tiny_dataset: Path) -> None:
    """BM25 ranks all 5 documents; re-scoring all 5 with bi:hashing gives hashing's own ranking and scores."""
    data, dense = _search("hashing:dim=64", tiny_dataset, k=5)
    _, staged = _search("bm25 >> bi:hashing:dim=64@5", tiny_dataset, k=5)
    for query_id in data.queries:
        want, got = dense.ranking(query_id), staged.ranking(query_id)
        assert [d for d, _ in got] == [d for d, _ in want]
        for (_, s), (_, t) in zip(got, want, strict=True):
            assert math.isclose(s, t, abs_tol=1e-6)  # float32 dot products of unit vectors: |s| <= 1


def test_pre_encoded_passages_score_as_encoded_per_query(tiny_dataset: Path) -> None:
    """A pipeline encodes its bi-encoder stage's passages at index time; the scores are those of
    encoding them per query (a served collection's chunks), only cheaper."""
    data = load_dataset(str(tiny_dataset))
    staged = build_retriever(parse_pipeline("bm25 >> bi:hashing:dim=64@5"))
    assert isinstance(staged, PipelineRetriever)
    staged.index(data.iter_documents(), cache=None, stats=EncodeStats())
    (reranker,) = staged.rerankers
    assert isinstance(reranker, BiEncoderReranker) and len(reranker._vectors) == 5
    texts = [d.content for d in data.iter_documents()]
    fresh = BiEncoderReranker("hashing:dim=64")  # nothing pre-encoded
    for query in data.queries.values():
        # the same float32 vectors either way: the dot products are bit-identical
        assert reranker.score(query, texts) == fresh.score(query, texts)
    assert not fresh._vectors  # passages encoded per query are not kept


def test_fuse_weighted_1_keeps_the_previous_order(tiny_dataset: Path) -> None:
    data, first = _search("bm25", tiny_dataset, k=5)
    _, kept = _search("bm25 >> bi:hashing:dim=64@5 fuse=weighted:1", tiny_dataset, k=5)
    _, mixed = _search("bm25 >> bi:hashing:dim=64@5 fuse=weighted:0.5", tiny_dataset, k=5)
    for query_id in data.queries:
        assert [d for d, _ in kept.ranking(query_id)] == [d for d, _ in first.ranking(query_id)]
        assert all(0.0 <= s <= 1.0 for _, s in mixed.ranking(query_id))  # a mix of two [0, 1] scales


def _tiny_cross_encoder(folder: Path) -> Path:
    """A random 1-layer BERT with a one-label head: a cross-encoder folder (what it scores is noise)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder.mkdir()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789", "common", "words"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(words),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=1,
    )
    transformers.BertForSequenceClassification(config).save_pretrained(str(folder))
    return folder


def test_bi_stage_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ce = _tiny_cross_encoder(tmp_path / "ce")
    with pytest.raises(EmbedlabError, match="is a cross-encoder"):
        load_reranker(f"bi:{ce}")
    with pytest.raises(EmbedlabError, match="lexical model, not a bi-encoder"):
        load_reranker("bi:bm25")
    with pytest.raises(EmbedlabError, match="'bi:hashing'"):  # a model name as a re-ranker: the hint says bi:
        load_reranker("hashing")
    dataset = write_beir(tmp_path / "tiny")
    capsys.readouterr()  # transformers' save progress
    assert main(["eval", "-m", f"bm25 >> bi:{ce}@5", "-d", str(dataset), "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a cross-encoder" in err[0]


def test_bi_stage_pipelines_in_eval_select_search(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    pipeline = "bm25 >> bi:hashing:dim=64@5 fuse=weighted:0.2"
    code = main(
        ["eval", "-d", str(tiny_dataset), "-m", pipeline, "--out", str(tmp_path / "e"), "--latency-queries", "2"]
    )
    assert code == 0, capsys.readouterr().err
    (written,) = (tmp_path / "e" / "tiny").glob("*bi*fuse*[!y].json")  # not the .per_query.json
    stages = json.loads(written.read_text())["embedlab"]["fingerprint"]["rerank"]
    assert stages == [{"reranker": "bi:hashing:dim=64", "depth": 5, "fuse": 0.2}]
    candidates = tmp_path / "c.toml"
    candidates.write_text(f'[[candidate]]\npipeline = "{pipeline}"\nlabel = "rescored"\n')
    specs, _ = load_candidates(candidates)
    assert isinstance(specs[0], PipelineSpec)
    assert specs[0].rerank == (Rerank(reranker="bi:hashing:dim=64", depth=5, fuse=0.2),)
    assert isinstance(load_reranker(specs[0].rerank[0].reranker), BiEncoderReranker)

    library, root = make_library(tmp_path / "library"), tmp_path / "collections"
    build_collection(library, root)
    query = "reset password link"
    staged = "bm25 + dense | minmax:weights=0.3/0.7 >> bi:hashing:dim=64@8 fuse=weighted:0.5"
    with open_collection("lib", root=root) as collection:
        chosen = pipeline_options(parse_pipeline(staged), dense_model="hashing")
        assert (chosen.fusion, chosen.weights, chosen.rerank_fuse) == ("minmax", (0.7, 0.3), 0.5)  # (dense, bm25)
        expected = collection.search(
            query,
            k=5,
            weights=chosen.weights,
            fusion=chosen.fusion,
            reranker=chosen.reranker,
            rerank_depth=8,
            rerank_fuse=0.5,
        )
        # the collection's min-max hybrid is combine() of its dense and BM25 lists (top 100 each)
        hybrid = collection.search(query, k=5, weights=(0.7, 0.3), fusion="minmax", snippets=False)
        dense = collection.search(query, k=100, mode="dense", snippets=False)
        lexical = collection.search(query, k=100, mode="bm25", snippets=False)
        want = combine(
            [[(h.chunk_id, h.score) for h in run.hits] for run in (dense, lexical)], method="minmax", weights=(0.7, 0.3)
        )
        assert [h.chunk_id for h in hybrid.hits] == [c for c, _ in want[:5]]
    assert expected.reranker == "bi:hashing:dim=64" and all("rerank" in h.scores for h in expected.hits)
    assert all(0.0 <= h.score <= 1.0 for h in expected.hits)  # a weighted mix of two min-max scales
    args = ["search", "lib", query, "--root", str(root), "--k", "5", "--json"]
    capsys.readouterr()
    assert main([*args, "--pipeline", staged]) == 0
    assert [h["chunk_id"] for h in json.loads(capsys.readouterr().out)["hits"]] == [h.chunk_id for h in expected.hits]
    from embedlab.serve import ServeConfig, create_app

    with running(create_app(ServeConfig(collection="lib", root=root))) as url:
        body = {"query": query, "k": 5, "pipeline": "bm25 + dense | minmax:weights=0.3/0.7"}
        status, answer = call_json(f"{url}/v1/search", body)
        assert status == 200 and [h["chunk_id"] for h in answer["hits"]] == [h.chunk_id for h in hybrid.hits]


# --- tune fusion -------------------------------------------------------------------------------------


def test_the_grid_starts_with_the_default_and_covers_the_simplex() -> None:
    grid = settings_grid(2, candidates=100, rrf_ks=(10.0, 60.0), weight_values=(0.5, 1.0), alpha_step=0.25)
    assert grid[0] == Fusion()
    assert Fusion(rrf_k=10.0, weights=(1.0, 0.5)) in grid
    assert [f.weights for f in grid if f.method == "minmax"] == [
        (0.0, 1.0),
        (0.25, 0.75),
        (0.5, 0.5),
        (0.75, 0.25),
        (1.0, 0.0),
    ]
    assert len(grid) == len(set(grid)) == 1 + 3 + 5 + 5  # default, k x weights (k=60 w=1 is the default), 2 x 5
    with pytest.raises(EmbedlabError, match="invalid alpha step"):
        settings_grid(2, candidates=100, alpha_step=0.3)


def test_dev_and_reported_queries_are_disjoint(tmp_path: Path) -> None:
    part = split_queries(str(single_char_dataset(tmp_path / "sc", n_queries=40)), dev="part", fraction=0.25, seed=3)
    assert len(part.dev) == 10 and len(part.reported) == 30
    assert not set(part.dev) & set(part.reported)
    assert set(part.dev) | set(part.reported) == set(part.dataset.queries)
    assert set(part.reported_qrels.judgments) == set(part.reported)
    again = split_queries(str(tmp_path / "sc"), dev="part", fraction=0.25, seed=3)
    assert again.dev == part.dev  # seeded
    # a train split: its queries are dev, a query judged in both is dropped from dev
    folder = tmp_path / "sc"
    rows = ["query-id\tcorpus-id\tscore", "q000\td000\t1", "q001\td001\t1", "q002\td002\t1"]
    (folder / "qrels" / "train.tsv").write_text("\n".join(rows) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i:03d}\td{i:03d}\t1\n" for i in range(2, 40))
    )
    train = split_queries(str(folder), dev="auto")
    assert set(train.dev) == {"q000", "q001"} and train.source == "train split"
    assert "q002" in train.reported and not set(train.dev) & set(train.reported)
    with pytest.raises(EmbedlabError, match="no train split"):
        split_queries(str(single_char_dataset(tmp_path / "other", n_queries=10)), dev="train")


def test_tune_fusion_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """hashing finds what BM25 cannot on this set (one-character tokens): the tuned fusion leans on it and
    beats the equal-weight RRF on the reported queries, significantly; the dev queries are never reported."""
    dataset = single_char_dataset(tmp_path / "sc", n_queries=60)
    out = tmp_path / "out"
    args = ["tune", "fusion", "-m", "bm25 + hashing", "-d", str(dataset), "--dev", "part", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    tuned_line = next(line for line in printed.splitlines() if line.startswith("tuned pipeline: "))
    tuned = parse_pipeline(tuned_line.removeprefix("tuned pipeline: "))
    assert tuned.fusion != Fusion()
    result = json.loads((out / "tune-fusion.json").read_text())
    dev, reported = set(result["split"]["dev_queries"]), set(result["split"]["reported_queries"])
    assert len(dev) == 18 and len(reported) == 42 and not dev & reported
    versus = result["tuned_vs_default"]
    assert versus["queries"] == 42 and versus["mean_difference"] > 0.2 and versus["p"] < 0.01
    assert result["tuned_pipeline"] == str(tuned) and len(result["grid"]) > 50
    assert "Tuned vs default RRF" in (out / "tune-fusion.md").read_text()
    # the printed spec is a pipeline eval takes as it is
    assert (
        main(["eval", "-m", str(tuned), "-d", str(dataset), "--out", str(tmp_path / "e"), "--latency-queries", "1"])
        == 0
    )


def test_tune_fusion_never_looks_at_reported_judgments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Scrambling the reported queries' judgments changes the reported figures, never the tuned setting."""
    dataset = single_char_dataset(tmp_path / "sc", n_queries=40)
    base = ["tune", "fusion", "-m", "bm25 + hashing", "-d", str(dataset), "--dev", "part", "--no-progress", "--json"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    first = json.loads(capsys.readouterr().out)
    reported = set(first["split"]["reported_queries"])
    qrels = dataset / "qrels" / "test.tsv"
    lines = qrels.read_text().splitlines()
    scrambled = [lines[0]] + [
        f"{q}\td{(int(d[1:]) + 1) % 120:03d}\t1" if q in reported else f"{q}\t{d}\t{s}"
        for q, d, s in (line.split("\t") for line in lines[1:])
    ]
    qrels.write_text("\n".join(scrambled) + "\n")
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["tuned_pipeline"] == first["tuned_pipeline"] and second["grid"] == first["grid"]
    assert second["reported"][0]["means"] != first["reported"][0]["means"]


@pytest.mark.parametrize(
    ("pipeline", "needle"),
    [("bm25", "hybrid first stage only"), ("bm25 + hashing >> word-overlap@20", "hybrid first stage only")],
)
def test_tune_fusion_bad_input(tmp_path: Path, capsys, pipeline: str, needle: str) -> None:
    dataset = single_char_dataset(tmp_path / "sc", n_queries=20)
    assert main(["tune", "fusion", "-m", pipeline, "-d", str(dataset), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


# --- tune depth ----------------------------------------------------------------------------------------


def test_tune_depth_chooses_a_depth_and_draws_the_budget(tmp_path: Path, capsys) -> None:
    """bm25 ranks the relevant document low on this set; bi:hashing finds it only when it is re-scored, so
    quality rises with depth and the deepest is the best; every depth is within a generous budget."""
    dataset = single_char_dataset(tmp_path / "sc", n_queries=60)
    out = tmp_path / "depth"
    args = ["tune", "depth", "-m", "bm25 >> bi:hashing:dim=64", "-d", str(dataset), "--dev", "part"]
    args += ["--fuse-weights", "keep"]  # the re-ranker's order alone: depth is what is tested here
    code = main([*args, "--depths", "10,20,180", "--max-p95-ms", "5000", "--latency-queries", "5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "tune-depth.json").read_text())
    by_depth = {p["depth"]: p for p in result["points"]}
    assert result["best_depth"] == 180 and result["chosen_depth"] == 180
    assert by_depth[10]["not_significantly_below_best"] is False  # dev nDCG@10 far lower, Holm p < 0.05
    assert result["chosen_pipeline"] == "bm25 >> bi:hashing:dim=64@180"
    assert all(p["p95_ms"] > 0 and p["within_budget"] for p in result["points"])
    page = (out / "tune-depth.html").read_text()
    assert "<svg" in page and 'class="constraint"' in page and "budget 5000 ms" in page


def test_tune_depth_takes_a_cross_encoder_stage(tmp_path: Path, capsys) -> None:
    """The memo of re-ranker scores: every depth's quality equals re-ranking that depth afresh."""
    from embedlab.tune.depth import _Memo

    ce = _tiny_cross_encoder(tmp_path / "ce")
    dataset = single_char_dataset(tmp_path / "sc", n_queries=20)
    out = tmp_path / "depth"
    args = ["tune", "depth", "-m", f"bm25 >> {ce}", "-d", str(dataset), "--dev", "part", "--depths", "10,30"]
    capsys.readouterr()
    assert main([*args, "--latency-queries", "2", "--out", str(out), "--no-progress"]) == 0, capsys.readouterr().err
    result = json.loads((out / "tune-depth.json").read_text())
    assert result["chosen_depth"] in (10, 30) and result["chosen_pipeline"].startswith("bm25 >> ")
    reranker = load_reranker(str(ce))
    memo = _Memo(reranker, {})
    texts = ["a b c d common", "e f g h words", "a b c d common"]
    # a repeated text is scored once; other padding (2 texts vs 3) only reorders float32 sums of O(1) logits
    assert memo.score("a b c d", texts) == pytest.approx(reranker.score("a b c d", texts), abs=1e-5)
    assert len(memo.scores) == 2


def test_tune_depth_shares_scores_across_first_stages(tmp_path: Path) -> None:
    """A memo passed to two tunings of the same re-ranker behind different first stages: the second
    scores only the candidates the first did not, and chooses what it chooses without the memo."""
    from embedlab.eval.metrics import parse_metric
    from embedlab.tune.depth import DepthTuneSpec, run_tune_depth

    dataset = str(single_char_dataset(tmp_path / "sc", n_queries=20))

    def spec(first: str) -> DepthTuneSpec:
        pipeline = parse_pipeline(f"{first} >> bi:hashing:dim=64")
        metric = parse_metric("ndcg@10")
        return DepthTuneSpec(
            pipeline=pipeline, dataset=dataset, metric=metric, report_metrics=(metric,), depths=(10, 20),
            dev="part", latency_queries=2, seed=0, use_cache=False, show_progress=False,
        )  # fmt: skip

    alone = run_tune_depth(spec("hashing:dim=16"))
    fresh: dict = {}
    run_tune_depth(spec("hashing:dim=16"), memo=fresh)
    memo: dict = {}
    run_tune_depth(spec("bm25"), memo=memo)
    ((name, scores),) = memo.items()
    from_bm25, from_hashing = set(scores), set(fresh[name])
    assert from_bm25 & from_hashing and from_hashing - from_bm25  # overlapping, not identical candidates
    shared = run_tune_depth(spec("hashing:dim=16"), memo=memo)
    assert set(scores) == from_bm25 | from_hashing  # nothing scored twice, nothing missed
    assert all(scores[key] == fresh[name][key] for key in from_hashing)
    assert shared.chosen == alone.chosen
    assert [p.dev_mean for p in shared.points] == pytest.approx([p.dev_mean for p in alone.points], abs=1e-9)


def test_tune_depth_tunes_stage_fusion_per_depth(tmp_path: Path) -> None:
    """With fusion weights, each depth keeps its best weight on dev; every trial's dev figure equals a
    fresh pipeline built with that weight (the shared first stage and score memo change nothing)."""
    from embedlab.eval.evaluate import evaluate
    from embedlab.eval.metrics import parse_metric
    from embedlab.tune.depth import DepthTuneSpec, run_tune_depth, with_depth

    dataset = str(single_char_dataset(tmp_path / "sc", n_queries=40))
    metric = parse_metric("ndcg@10")
    pipeline = parse_pipeline("hashing:dim=8 >> bi:hashing:dim=64")  # bm25 scores nothing here: no fusion effect
    weights = (0.0, 0.3, 0.6, 0.9)
    result = run_tune_depth(
        DepthTuneSpec(
            pipeline=pipeline, dataset=dataset, metric=metric, report_metrics=(metric,), depths=(10, 20),
            dev="part", latency_queries=2, seed=0, use_cache=False, show_progress=False, fuse_weights=weights,
        )
    )  # fmt: skip
    split = split_queries(dataset, dev="part", seed=0)
    for point in result.points:
        assert set(point.fuse_trials) == set(weights)
        best = max(point.fuse_trials.values())
        assert point.dev_mean == best and point.fuse == min(w for w, m in point.fuse_trials.items() if m == best)
        for weight, dev_mean in point.fuse_trials.items():
            fresh = build_retriever(with_depth(pipeline, point.depth, fuse=weight))
            fresh.index(split.dataset.iter_documents(), cache=None, stats=EncodeStats())
            run = fresh.search(split.dev, 10, cache=None, stats=EncodeStats())
            # the same float64 metric over the same rankings: only summation order may differ
            assert evaluate(run, split.dev_qrels, [metric]).mean[metric.key] == pytest.approx(dev_mean, abs=1e-12)
    assert any(len(set(p.fuse_trials.values())) > 1 for p in result.points)  # the weight changes the ranking
    chosen = next(p for p in result.points if p.depth == result.chosen)
    assert result.pipeline == with_depth(pipeline, chosen.depth, fuse=chosen.fuse)


def test_tune_depth_bad_input_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    dataset = single_char_dataset(tmp_path / "sc", n_queries=20)
    base = ["tune", "depth", "-d", str(dataset), "--out", str(tmp_path / "o"), "--latency-queries", "3"]
    cases = [
        (["-m", "bm25 >> bi:hashing", "--depths", "5,20"], "re-rank depth 5 is below k=10 of ndcg@10"),
        (["-m", "bm25 + hashing"], "needs a pipeline with a re-rank stage"),
        (["-m", "bm25 >> bi:hashing", "--fuse-weights", "0,1.5"], "invalid stage-fusion weight"),
        (["-m", "bm25 >> bi:hashing", "--depths", "10,20", "--max-p95-ms", "0.000001"], "no re-rank depth meets"),
    ]
    for extra, needle in cases:
        assert main([*base, *extra]) == 2
        err = [line for line in capsys.readouterr().err.strip().splitlines() if "error" in line]
        assert len(err) == 1 and needle in err[0], err
    written = json.loads((tmp_path / "o" / "tune-depth.json").read_text())
    fastest = written["fastest"]  # depth 10 or 20: at these tiny costs timing noise decides which
    assert written["chosen_depth"] is None and fastest["p95_ms"] == min(p["p95_ms"] for p in written["points"])
    assert f"the fastest, depth {fastest['depth']}, has p95 {fastest['p95_ms']:.1f} ms" in err[0]

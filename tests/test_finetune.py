"""embedlab finetune without a real model: data formats, leakage, mining audit, losses, batches."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from embedlab.cli.main import main
from embedlab.encoders.base import Encoder, Fingerprint
from embedlab.errors import EmbedlabError
from embedlab.eval.stats import Interval
from embedlab.train.data import TrainExample, load_training_set
from embedlab.train.leakage import check_leakage
from embedlab.train.loop import no_duplicate_batches
from embedlab.train.mining import MiningConfig, mine_hard_negatives
from embedlab.train.verdict import MetricComparison, Side, Verdict
from tests.helpers import write_beir


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- the four formats ------------------------------------------------------------------------------


def test_beir_train_split_gives_one_example_per_relevant_pair(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "ds", split="train")
    data = load_training_set(folder)
    assert data.format == "beir" and data.given_ids
    pairs = sorted((e.query_id, e.positive_id) for e in data.examples)
    assert pairs == [("q1", "d1"), ("q1", "d4"), ("q2", "d2"), ("q2", "d5"), ("q3", "d3")]
    d1 = next(e for e in data.examples if e.positive_id == "d1")
    assert d1.positive == "Password reset How to reset your password from the login page."
    assert data.positives()["q1"] == {"d1", "d4"}


def test_pairs_triplets_and_clicks(tmp_path: Path) -> None:
    pairs = load_training_set(
        _jsonl(
            tmp_path / "p.jsonl", [{"query": "a", "positive": "A"}, {"query": "b", "positive": "B", "query_id": "7"}]
        )
    )
    assert pairs.format == "pairs" and [e.positive for e in pairs.examples] == ["A", "B"]
    assert pairs.examples[1].query_id == "7" and pairs.given_ids
    triplets = load_training_set(
        _jsonl(
            tmp_path / "t.jsonl",
            [{"query": "a", "positive": "A", "negative": "X"}, {"query": "b", "positive": "B", "negative": ["Y", "Z"]}],
        )
    )
    assert triplets.format == "triplets" and not triplets.given_ids
    assert [e.negatives for e in triplets.examples] == [("X",), ("Y", "Z")]
    assert set(triplets.passages.values()) == {"A", "B", "X", "Y", "Z"}
    clicks = load_training_set(
        _jsonl(
            tmp_path / "c.jsonl",
            [
                {"query": "a", "clicked": "s3", "shown": ["s1", "s2", "s3", "s4"]},
                {"query": "b", "clicked": ["s2", "s4"], "shown": ["s1", "s2", "s3", "s4", "s5"]},
            ],
        )
    )
    assert clicks.format == "clicks"
    # skip-above: results shown above the last click and not clicked are negatives; below it, unused
    assert [(e.query, e.positive, e.negatives) for e in clicks.examples] == [
        ("a", "s3", ("s1", "s2")),
        ("b", "s2", ("s1", "s3")),
        ("b", "s4", ("s1", "s3")),
    ]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"query": "a", "positive": "A"}, {"query": "b"}], "missing field 'positive'"),
        ([{"query": "a", "positive": "A"}, {"query": "b", "positive": 3.5}], "wrong type"),
        ([{"query": "a", "positive": "A"}, {"query": "", "positive": "B"}], "empty 'query'"),
        (
            [{"query": "a", "positive": "A"}, {"query": "b", "positive": "B", "negative": "C"}],
            "unexpected field 'negative'",
        ),
        ([{"query": "a", "positive": "A"}, "{not json"], "malformed JSON"),
        (
            [{"query": "a", "clicked": "x", "shown": ["y"]}, {"query": "a", "clicked": "x", "shown": ["x"]}],
            "a clicked result is not in 'shown'",
        ),
        (
            [{"query": "a", "positive": "A", "negative": []}, {"query": "a", "positive": "A", "negative": "B"}],
            "must list non-empty texts",
        ),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path: Path, rows: list[object], message: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(EmbedlabError) as err:
        load_training_set(path)
    assert message in err.value.one_line()
    bad_line = 1 if "clicked result" in message or "non-empty texts" in message else 2
    assert err.value.path == str(path) and err.value.line == bad_line


def test_malformed_training_data_is_one_line_and_exit_2(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"query": "a", "positive": "A"}, {"query": "b", "positive": ["B", 1]}])
    code = main(
        [
            "finetune",
            "--base",
            "hashing",
            "--train",
            str(path),
            "--test",
            str(tiny_dataset),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"{path}:2:" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# --- leakage ---------------------------------------------------------------------------------------


def test_leakage_catches_planted_id_exact_and_near_duplicate() -> None:
    train = {
        "t1": "How do I reset my password?",
        "t2": "best sourdough starter recipe for beginners at home",
        "q3": "unrelated query about cars",
        "t4": "Completely different words here",
    }
    test = {
        "q1": "how do i RESET my password",
        "q2": "best sourdough starter recipe for beginners at home today",
        "q3": "protect account",
    }
    report = check_leakage(train, test, threshold=0.8)
    kinds = {(o.kind, o.train_id, o.test_id) for o in report.overlaps}
    assert kinds == {("id", "q3", "q3"), ("exact", "t1", "q1"), ("near-duplicate", "t2", "q2")}
    near = next(o for o in report.overlaps if o.kind == "near-duplicate")
    assert near.similarity == pytest.approx(8 / 9)
    assert report.counts() == {"id": 1, "exact": 1, "near-duplicate": 1} and not report.clean
    assert check_leakage(train, test, threshold=0.95, check_ids=False).counts() == {
        "id": 0,
        "exact": 1,
        "near-duplicate": 0,
    }
    assert check_leakage({"a": "x y"}, {"b": "z"}).clean


def _leaky_train(tmp_path: Path) -> Path:
    return _jsonl(
        tmp_path / "train.jsonl",
        [{"query": "Reset password!", "positive": "A"}, {"query": "bake bread", "positive": "B"}]
        # enough other pairs that the run is not refused as degenerate (train.guardrails) before its model loads
        + [{"query": f"{w} migration season", "positive": f"{w} fly south"} for w in ("geese", "swans", "cranes")]
        + [{"query": f"{w} tuning", "positive": f"tune the {w}"} for w in ("guitar", "piano", "violin", "cello")],
    )


def test_leakage_stops_the_run_unless_overridden(
    tmp_path: Path, tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "finetune",
        "--base",
        "hashing",
        "--train",
        str(_leaky_train(tmp_path)),
        "--test",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "leakage: 1 train/test query overlaps (0 same id, 1 same text" in err and "--allow-leakage" in err
    # overridden, the run goes past the check (and stops later: 'hashing' has no weights to train)
    for flag in ("--allow-leakage", "--drop-leaked"):
        assert main([*args, flag]) == 2
        err = capsys.readouterr().err
        assert "leakage:" not in err and "cannot load model 'hashing'" in err


# --- mining audit on hand-made scores ---------------------------------------------------------------


class TableEncoder(Encoder):
    """Vectors from a table: text -> unit vector, so every score is known in advance."""

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.dim = len(next(iter(table.values())))
        self.fingerprint = Fingerprint("table", "table", "t1", "numpy", "none", True, 512, "fp32")

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


SCORES = {  # query -> {document: cosine score}
    "qA": {"P1": 0.80, "N1": 0.79, "P2": 0.78, "N2": 0.77, "N3": 0.70, "N4": 0.60, "N5": 0.50, "N6": 0.40},
    "qB": {"Q1": 0.90, "M1": 0.85, "M2": 0.80, "M3": 0.60, "M4": 0.55, "Q2": 0.50, "M5": 0.45},
}


def _mining_fixture(tmp_path: Path) -> tuple[Path, TableEncoder]:
    docs = [d for scores in SCORES.values() for d in scores]
    dim = len(SCORES) + len(docs)
    table: dict[str, np.ndarray] = {}
    for qi, (query, scores) in enumerate(SCORES.items()):
        table[f"text of {query}"] = np.eye(dim, dtype=np.float32)[qi]
        for doc, s in scores.items():
            v = np.zeros(dim, dtype=np.float32)
            v[qi], v[len(SCORES) + docs.index(doc)] = s, math.sqrt(1 - s * s)
            table[f"text of {doc}"] = v
    folder = write_beir(
        tmp_path / "mine",
        corpus=[{"_id": d, "title": "", "text": f"text of {d}"} for d in docs],
        queries=[{"_id": q, "text": f"text of {q}"} for q in SCORES],
        qrels=[("qA", "P1", 1), ("qA", "P2", 1), ("qB", "Q1", 1), ("qB", "Q2", 1)],
        split="train",
    )
    return folder, TableEncoder(table)


def test_mining_audit_counts_every_candidate_once(tmp_path: Path) -> None:
    folder, encoder = _mining_fixture(tmp_path)
    mined, audit = mine_hard_negatives(
        load_training_set(folder),
        encoder,
        cache=None,
        config=MiningConfig(per_query=1, rank_from=3, rank_to=6, margin=0.95),
    )
    # worked by hand in the docstring's order: positive, rank, margin, not needed, kept
    assert audit.as_dict() == {
        "examples": 4,
        "already_had": 0,
        "candidates": 24,
        "skipped_positive": 8,
        "skipped_rank": 4,
        "skipped_margin": 5,
        "skipped_cross_encoder": 0,
        "not_needed": 4,
        "kept": 3,
        "examples_without_negative": 1,
        "false_negative_probes": 2,
        "false_negative_passed": 1,
        "false_negative_rate": 0.5,
    }
    negatives = {(e.query_id, e.positive_id): e.negative_ids for e in mined.examples}
    assert negatives == {("qA", "P1"): ("N3",), ("qA", "P2"): ("N3",), ("qB", "Q1"): ("M2",), ("qB", "Q2"): ()}
    assert mined.examples[0].negatives == ("text of N3",)


class TableReranker:
    name = "table"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, query: str, texts: list[str]) -> list[float]:
        return [self.scores.get(t.removeprefix("text of "), 0.0) for t in texts]


def test_mining_cross_encoder_filter(tmp_path: Path) -> None:
    folder, encoder = _mining_fixture(tmp_path)
    reranker = TableReranker({"Q1": 1.0, "M2": 1.0, "Q2": 2.0, "P1": 1.0, "P2": 1.0})
    mined, audit = mine_hard_negatives(
        load_training_set(folder),
        encoder,
        cache=None,
        reranker=reranker,
        config=MiningConfig(per_query=1, rank_from=3, rank_to=6, margin=0.95),
    )
    # qB/Q1: M2 is judged as relevant as Q1 by the re-ranker -> skipped; M3 kept instead; the held-out
    # positive Q2 passes the margin but the re-ranker catches it (2.0 >= 1.0)
    assert (audit.skipped_cross_encoder, audit.kept, audit.not_needed) == (1, 3, 3)
    assert (audit.false_negative_probes, audit.false_negative_passed) == (2, 0)
    assert {(e.query_id, e.positive_id): e.negative_ids for e in mined.examples}[("qB", "Q1")] == ("M3",)


def test_mining_respects_given_negatives_and_bad_config(tmp_path: Path) -> None:
    folder, encoder = _mining_fixture(tmp_path)
    data = load_training_set(folder)
    same, audit = mine_hard_negatives(data, encoder, cache=None, config=MiningConfig(per_query=0))
    assert same is data and audit.already_had == 4 and audit.candidates == 0
    with pytest.raises(EmbedlabError, match="rank window"):
        mine_hard_negatives(data, encoder, cache=None, config=MiningConfig(rank_from=20, rank_to=10))


# --- losses and batches ----------------------------------------------------------------------------


def test_mnrl_triplet_and_matryoshka_match_hand_computed_values() -> None:
    torch = pytest.importorskip("torch")
    from embedlab.train.losses import LOSSES, matryoshka

    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cos: q1 -> (1, 0.7071), q2 -> (0, 0.7071)
    r = 20 * math.sqrt(0.5)
    expected = (math.log(1 + math.exp(r - 20)) + math.log(1 + math.exp(-r))) / 2
    assert float(LOSSES.get("mnrl")(q, d)) == pytest.approx(expected, rel=1e-5)
    # a hard negative joins the denominator of every query
    n = torch.tensor([[0.0, 1.0]])
    expected_hn = (math.log(1 + math.exp(r - 20) + math.exp(-20)) + math.log(1 + math.exp(-r) + math.exp(20 - r))) / 2
    assert float(LOSSES.get("mnrl")(q, torch.cat([d, n]))) == pytest.approx(expected_hn, rel=1e-5)
    # triplet: max(0, cos(q,n) - cos(q,p) + 0.2) averaged
    p, neg = torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    expected_t = (max(0.0, math.sqrt(0.5) - 1 + 0.2) + max(0.0, 1 - 0 + 0.2)) / 2
    assert float(LOSSES.get("triplet")(q, torch.cat([p, neg]))) == pytest.approx(expected_t, rel=1e-5)
    both = matryoshka(LOSSES.get("mnrl"), (1, 2))(q, d)
    assert float(both) == pytest.approx((float(LOSSES.get("mnrl")(q[:, :1], d[:, :1])) + expected) / 2, rel=1e-5)


def test_batches_never_repeat_a_text_and_keep_every_example() -> None:
    examples = [
        TrainExample(f"q{i % 5}", f"query {i % 5}", f"d{i % 7}", f"doc {i % 7}", (f"n{i % 3}",), (f"neg {i % 3}",))
        for i in range(40)
    ]
    batches = no_duplicate_batches(examples, 4, seed=1)
    assert sorted(id(e) for b in batches for e in b) == sorted(id(e) for e in examples)
    for batch in batches:
        texts = [t for e in batch for t in e.texts()]
        assert len(texts) == len(set(texts))
    assert no_duplicate_batches(examples, 4, seed=1) == batches  # seeded
    assert no_duplicate_batches(examples, 4, seed=2) != batches


# --- verdict ---------------------------------------------------------------------------------------


def _verdict(delta: float, p: float) -> Verdict:
    side = Side("m", {}, {}, {}, {})
    iv = Interval(0.6, 0.5, 0.7, 0.95, "percentile bootstrap")
    change = Interval(delta, delta - 0.01, delta + 0.01, 0.95, "percentile bootstrap")
    return Verdict(
        "d", "test", 10, (MetricComparison("ndcg_at_10", iv, iv, change, p, "randomization"),), side, side, 0.05
    )


def test_verdict_improved_needs_a_gain_and_significance() -> None:
    assert _verdict(0.05, 0.001).improved
    assert not _verdict(0.05, 0.2).improved and "not significant" in _verdict(0.05, 0.2).reason()
    assert not _verdict(-0.05, 0.001).improved and "not better" in _verdict(-0.05, 0.001).reason()

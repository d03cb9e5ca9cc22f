"""Every embedlab metric agrees with pytrec_eval (trec_eval) to 1e-6, per query and mean.

Runs are built without score ties (trec_eval breaks exact ties by doc id *descending*,
embedlab by doc id ascending; without ties both orders are the same), over real qrels
(SciFact, Cranfield) and over tiny hand-computed cases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytrec_eval

from embedlab.data.beir import read_beir_qrels, scan_corpus_ids
from embedlab.data.types import Qrels, Run
from embedlab.eval.evaluate import evaluate
from embedlab.eval.metrics import METRICS, MetricSpec, parse_metrics
from tests.helpers import shared_dataset

CUTOFFS = (1, 3, 5, 10, 100)
TOL = 1e-6  # float64 metrics from the same rankings: the documented pytrec_eval contract, ~1e9 x float64 noise
# embedlab name -> trec_eval measure family (cut at k); mrr is recip_rank on the run cut at k
TREC_NAMES = {"ndcg": "ndcg_cut", "recall": "recall", "precision": "P", "map": "map_cut", "hit_rate": "success"}


def test_every_registered_metric_is_checked() -> None:
    assert set(METRICS.names()) == set(TREC_NAMES) | {"mrr"}


def _specs() -> list[MetricSpec]:
    return [MetricSpec(name, k) for name in sorted(METRICS.names()) for k in CUTOFFS]


def _truncate(run: Run, k: int) -> dict[str, dict[str, float]]:
    return {q: dict(run.ranking(q)[:k]) for q in run.query_ids}


def _trec_values(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """``values[metric_key][query_id]`` from pytrec_eval, for queries both in the run and in the qrels."""
    judgments = {q: dict(j) for q, j in qrels.judgments.items()}
    cut = ",".join(map(str, CUTOFFS))
    measures = {f"{family}.{cut}" for family in TREC_NAMES.values()}
    full = pytrec_eval.RelevanceEvaluator(judgments, measures).evaluate({q: dict(s) for q, s in run.scores.items()})
    values: dict[str, dict[str, float]] = {}
    for name, family in TREC_NAMES.items():
        for k in CUTOFFS:
            values[MetricSpec(name, k).key] = {q: m[f"{family}_{k}"] for q, m in full.items()}
    rr = pytrec_eval.RelevanceEvaluator(judgments, {"recip_rank"})
    for k in CUTOFFS:
        values[MetricSpec("mrr", k).key] = {q: m["recip_rank"] for q, m in rr.evaluate(_truncate(run, k)).items()}
    return values


def _assert_parity(run: Run, qrels: Qrels) -> None:
    common = sorted(set(run.scores) & set(qrels.judgments))
    assert common, "no query both in the run and in the qrels"
    both = Qrels({q: qrels.judgments[q] for q in common})
    ours = evaluate(run, both, _specs())
    theirs = _trec_values(run, qrels)
    assert ours.queries == len(common)
    for spec in _specs():
        assert set(theirs[spec.key]) == set(common), spec.label
        bad = {
            q: (ours.per_query[spec.key][q], theirs[spec.key][q])
            for q in common
            if abs(ours.per_query[spec.key][q] - theirs[spec.key][q]) > TOL
        }
        example = list(bad.items())[:3]
        assert not bad, f"{spec.label}: (embedlab, trec_eval) differ on {len(bad)} queries, e.g. {example}"
        trec_mean = sum(theirs[spec.key].values()) / len(common)
        assert ours.mean[spec.key] == pytest.approx(trec_mean, abs=TOL), spec.label


def _random_run(qrels: Qrels, corpus_ids: list[str], *, seed: int, drop: int = 3) -> Run:
    """Distinct random scores over real corpus ids; judged docs at random ranks, some not retrieved.

    Run lengths vary from a few documents to well past 100 so every cutoff sees short and long
    lists; a few judged queries are left out of the run entirely.
    """
    rng = np.random.default_rng(seed)
    query_ids = qrels.query_ids
    skipped = set(rng.choice(query_ids, size=drop, replace=False)) if drop else set()
    scores: dict[str, dict[str, float]] = {}
    for query_id in query_ids:
        if query_id in skipped:
            continue
        length = int(rng.choice([2, 8, 40, 150]))
        judged = list(qrels.judgments[query_id])
        retrieved = [d for d in judged if rng.random() < 0.8]
        pool = [corpus_ids[i] for i in rng.choice(len(corpus_ids), size=length + len(judged), replace=False)]
        docs = list(dict.fromkeys(retrieved + [d for d in pool if d not in judged]))[: max(length, len(retrieved))]
        values = rng.permutation(rng.uniform(-5.0, 5.0, size=len(docs)))
        scores[query_id] = {doc: float(v) for doc, v in zip(docs, values, strict=True)}
        assert len(set(scores[query_id].values())) == len(docs), "scores must not tie"
    return Run(scores, name=f"random-{seed}")


def _real(name: str) -> tuple[Qrels, list[str]]:
    folder = shared_dataset(name)
    corpus = next(p for p in (folder / "corpus.jsonl.gz", folder / "corpus.jsonl") if p.is_file())
    return read_beir_qrels(folder / "qrels" / "test.tsv"), scan_corpus_ids(corpus)


@pytest.mark.parametrize("seed", [0, 1])
def test_parity_scifact(seed: int) -> None:
    qrels, corpus_ids = _real("scifact")
    _assert_parity(_random_run(qrels, corpus_ids, seed=seed), qrels)


def test_parity_cranfield_graded_with_non_relevant_grades() -> None:
    """Cranfield grades 1-4 (linear gains in nDCG), plus judged grades 0 and -1 that must not count.

    The shipped qrels keep only positive grades, so 0 and -1 judgments are added for retrieved
    documents (and two queries get only such judgments: every metric is 0 for them).
    """
    qrels, corpus_ids = _real("cranfield")
    assert {g for j in qrels.judgments.values() for g in j.values()} >= {1, 2, 3, 4}
    run = _random_run(qrels, corpus_ids, seed=7)
    rng = np.random.default_rng(8)
    judgments = {q: dict(j) for q, j in qrels.judgments.items()}
    for query_id, docs in run.scores.items():
        unjudged = [d for d in docs if d not in judgments[query_id]]
        for doc in unjudged[: int(rng.integers(0, 4))]:
            judgments[query_id][doc] = int(rng.choice([0, -1]))
    for query_id in list(run.scores)[:2]:
        judgments[query_id] = {doc: int(rng.choice([0, -1])) for doc in list(run.scores[query_id])[:3]}
    graded = Qrels(judgments)
    assert {g for j in judgments.values() for g in j.values()} >= {-1, 0, 1, 2, 3, 4}
    _assert_parity(run, graded)
    no_relevant = evaluate(run, Qrels({q: judgments[q] for q in list(run.scores)[:2]}), _specs())
    assert all(v == 0.0 for values in no_relevant.per_query.values() for v in values.values())


def test_judged_queries_missing_from_the_run_score_zero() -> None:
    """trec_eval skips them; embedlab (BEIR convention) counts them as 0 in the mean."""
    qrels = Qrels({"q1": {"a": 1}, "q2": {"b": 1}})
    run = Run({"q1": {"a": 1.0}, "q3": {"b": 1.0}})
    result = evaluate(run, qrels, parse_metrics(["ndcg@10", "mrr@10"]))
    assert result.queries == 2
    assert result.per_query["ndcg_at_10"] == {"q1": 1.0, "q2": 0.0}
    assert result.mean["mrr_at_10"] == 0.5


# --- hand-computed cases -------------------------------------------------------------------

# ranked d1..d5; relevant: d1 (1), d3 (3), d5 (2) and unretrieved d9 (2); d2 (0) and d4 (-1) are not
HAND_RANKED = ["d1", "d2", "d3", "d4", "d5"]
HAND_GRADES = {"d1": 1, "d2": 0, "d3": 3, "d4": -1, "d5": 2, "d9": 2}
IDEAL = [3, 2, 2, 1]


def _dcg(gains: list[int]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


HAND_EXPECTED = {
    # nDCG@k = sum g_i / log2(i+1) over the top k, over the same for the ideal order 3, 2, 2, 1
    "ndcg@1": 1 / 3,
    "ndcg@3": (1 + 3 / math.log2(4)) / (3 + 2 / math.log2(3) + 2 / 2),
    "ndcg@5": (1 + 3 / 2 + 2 / math.log2(6)) / (3 + 2 / math.log2(3) + 1 + 1 / math.log2(5)),
    "ndcg@10": (1 + 1.5 + 2 / math.log2(6)) / (3 + 2 / math.log2(3) + 1 + 1 / math.log2(5)),
    "mrr@1": 1.0,
    "mrr@10": 1.0,
    "recall@1": 1 / 4,
    "recall@3": 2 / 4,
    "recall@5": 3 / 4,
    "recall@100": 3 / 4,
    "precision@1": 1.0,
    "precision@3": 2 / 3,
    "precision@5": 3 / 5,
    "precision@10": 3 / 10,  # divided by k although only 5 are retrieved
    "map@1": 1 / 4,
    "map@3": (1 / 1 + 2 / 3) / 4,
    "map@5": (1 / 1 + 2 / 3 + 3 / 5) / 4,
    "hit_rate@1": 1.0,
    "hit_rate@5": 1.0,
}


def test_hand_computed_graded_case() -> None:
    assert _dcg(IDEAL) == pytest.approx(5.692536, abs=1e-6)
    assert HAND_EXPECTED["ndcg@5"] == pytest.approx(3.273706 / 5.692536, abs=1e-6)  # 0.575087
    for label, expected in HAND_EXPECTED.items():
        spec = parse_metrics([label])[0]
        assert spec(HAND_RANKED, HAND_GRADES) == pytest.approx(expected, abs=1e-12), label


def test_hand_computed_first_relevant_late() -> None:
    ranked = ["a", "b", "c", "d"]
    grades = {"c": 2, "z": 1, "b": 0}
    assert MetricSpec("mrr", 2)(ranked, grades) == 0.0
    assert MetricSpec("mrr", 3)(ranked, grades) == pytest.approx(1 / 3)
    assert MetricSpec("hit_rate", 2)(ranked, grades) == 0.0
    assert MetricSpec("hit_rate", 3)(ranked, grades) == 1.0
    assert MetricSpec("ndcg", 3)(ranked, grades) == pytest.approx((2 / 2) / (2 + 1 / math.log2(3)))
    assert MetricSpec("map", 10)(ranked, grades) == pytest.approx((1 / 3) / 2)
    assert MetricSpec("recall", 3)(ranked, grades) == 0.5
    assert MetricSpec("precision", 100)(ranked, grades) == 0.01


def test_hand_computed_cases_match_trec_eval() -> None:
    scores = {
        "hand": {d: 10.0 - i for i, d in enumerate(HAND_RANKED)},
        "late": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0},
        "none": {"a": 2.0, "b": 1.0},
    }
    qrels = Qrels({"hand": HAND_GRADES, "late": {"c": 2, "z": 1, "b": 0}, "none": {"a": 0, "b": -1}})
    _assert_parity(Run(scores), qrels)

"""eval.compare: the one paired comparison (randomization test, bootstrap interval, Holm) that
select, collection evaluation and the fine-tune verdict report.

Scores in the hand-checked cases are multiples of 1/8, so every sum is exact in float64 and
the brute-force p-values (exact fractions over all 2^n sign vectors) can be compared with ==.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from embedlab.collection.evaluate import compare_modes
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import (
    PairedComparison,
    compare_all_pairs,
    compare_pair,
    compare_to_reference,
    mean_interval,
)
from embedlab.eval.metrics import parse_metrics
from embedlab.eval.runner import EvalReport, EvalSpec, run_eval
from embedlab.eval.stats import bootstrap_ci, holm, paired_arrays, paired_randomization_test
from embedlab.select.analysis import Constraints, select
from embedlab.train.verdict import VERDICT_METRICS, compare_on_test
from tests.helpers import write_beir

# d = a - b = (1/2, 1/4, -1/4, 1/8, 3/8), sum 1.  Sign vectors s with |sum(s d)| >= 1: none flipped
# (1), d3 flipped (3/2), d3 and d4 (5/4), d2 and d3 (1, a tie), and their four mirror images: 8 of 32.
A = {"q1": 1.0, "q2": 0.75, "q3": 0.25, "q4": 0.625, "q5": 0.875}
B = {"q1": 0.5, "q2": 0.5, "q3": 0.5, "q4": 0.5, "q5": 0.5}
# every d_i = +1/4: only "no flips" and "all flipped" reach |sum| = 5/4, p = 2/32
C = {q: 0.75 for q in B}


def _brute_force_p(a: dict[str, float], b: dict[str, float]) -> Fraction:
    d = [Fraction(a[q]) - Fraction(b[q]) for q in sorted(a)]
    observed = abs(sum(d))
    signs = list(itertools.product((1, -1), repeat=len(d)))
    return Fraction(
        sum(abs(sum(s * x for s, x in zip(flip, d, strict=True))) >= observed for flip in signs), len(signs)
    )


def test_five_queries_exact_enumeration_matches_brute_force() -> None:
    assert _brute_force_p(A, B) == Fraction(1, 4) and _brute_force_p(C, B) == Fraction(1, 16)
    c = compare_pair(A, B, a="A", b="B", metric="ndcg_at_10")
    assert (c.a, c.b, c.metric, c.queries, c.test) == ("A", "B", "ndcg_at_10", 5, "randomization (exact)")
    assert c.p_value == float(_brute_force_p(A, B)) == 0.25
    assert c.p_holm == c.p_value  # a family of one
    assert (c.mean_a, c.mean_b, c.difference) == (0.7, 0.5, 0.2)  # 3.5/5, 2.5/5, 1/5 (exact: n = 5 divides evenly)
    assert c.difference_interval == bootstrap_ci([0.5, 0.25, -0.25, 0.125, 0.375], seed=0)
    assert c.ci_low <= c.difference <= c.ci_high
    constant = compare_pair(C, B, metric="m")
    assert constant.p_value == float(_brute_force_p(C, B)) == 0.0625
    assert (constant.ci_low, constant.ci_high) == (0.25, 0.25)  # every resample of a constant has its mean
    swapped = compare_pair(B, A, metric="m")
    assert swapped.difference == -c.difference and swapped.p_value == c.p_value


def test_monte_carlo_p_is_close_to_the_exact_one_and_seeded() -> None:
    rng = np.random.default_rng(7)
    a = {f"q{i}": float(v) for i, v in enumerate(rng.integers(0, 9, size=20) / 8)}
    b = {f"q{i}": float(v) for i, v in enumerate(rng.integers(0, 9, size=20) / 8)}
    exact = paired_randomization_test(*_aligned(a, b), resamples=2**20).p_value  # all 2^20 sign vectors
    c = compare_pair(a, b, metric="m", seed=3)
    assert c.test == "randomization (Monte Carlo)"
    # 10,000 draws: standard error sqrt(p (1 - p) / 10,000) <= 0.005; 4 of them, and a fixed seed
    assert abs(c.p_value - exact) <= 4 * np.sqrt(exact * (1 - exact) / 10_000) + 1e-4
    assert compare_pair(a, b, metric="m", seed=3) == c
    assert compare_pair(a, b, metric="m", seed=4).p_value != c.p_value


def _aligned(a: dict[str, float], b: dict[str, float]) -> tuple[list[float], list[float]]:
    ids = sorted(a)
    return [a[q] for q in ids], [b[q] for q in ids]


def test_holm_is_over_the_family_each_function_tests() -> None:
    systems = {"ref": B, "A": A, "C": C}
    p_a, p_c = 0.25, 0.0625  # brute force above
    against = compare_to_reference(systems, "ref", metric="m")
    assert [(c.a, c.b) for c in against] == [("A", "ref"), ("C", "ref")]
    assert [c.p_value for c in against] == [p_a, p_c]
    # m = 2: p_(1) = p_c -> 2 * 0.0625 = 0.125; p_(2) = p_a -> max(0.125, 1 * 0.25) = 0.25
    assert [c.p_holm for c in against] == [0.25, 0.125]
    pairs = compare_all_pairs(systems, metric="m")
    assert [(c.a, c.b) for c in pairs] == [("ref", "A"), ("ref", "C"), ("A", "C")]
    p_ac = float(_brute_force_p(A, C))
    assert [c.p_value for c in pairs] == [p_a, p_c, p_ac]
    assert [c.p_holm for c in pairs] == holm([p_a, p_c, p_ac])
    assert pairs[1].p_holm == 3 * p_c  # the smallest of m = 3 p-values, times 3
    assert (
        compare_all_pairs({"only": A}, metric="m") == [] and compare_to_reference({"ref": A}, "ref", metric="m") == []
    )


def test_alignment_is_by_query_id_not_by_order() -> None:
    shuffled = dict(reversed(list(A.items())))
    assert compare_pair(shuffled, B, a="A", b="B", metric="m") == compare_pair(A, B, a="A", b="B", metric="m")
    pooled_a = {("d1", q): v for q, v in A.items()} | {("d2", q): v for q, v in C.items()}
    pooled_b = {("d1", q): v for q, v in B.items()} | {("d2", q): v for q, v in B.items()}
    assert compare_pair(pooled_a, pooled_b, metric="m").queries == 10
    assert mean_interval(shuffled) == bootstrap_ci([A[q] for q in sorted(A)], seed=0)


def test_different_query_sets_are_a_clear_error() -> None:
    with pytest.raises(EmbedlabError, match=r"'A' and 'B' were scored on different queries \(ndcg_at_10\)") as err:
        compare_pair(A, {**B, "q6": 0.5}, a="A", b="B", metric="ndcg_at_10")
    assert "'q6' in the second" in str(err.value)
    with pytest.raises(EmbedlabError, match="'C' and 'ref' were scored on different queries"):
        compare_to_reference({"ref": B, "C": {q: 0.75 for q in list(B)[:4]}}, "ref", metric="m")
    with pytest.raises(EmbedlabError, match="reference system 'best' has no scores"):
        compare_to_reference({"ref": B}, "best", metric="m")


# --- the three callers give the numbers of a direct call ------------------------------------------


def _dataset(folder: Path, seed: int) -> Path:
    """24 queries (ids q0..q23, so id order differs from file order) whose relevant documents share
    a few random words with them: hashing encoders of different widths rank them differently."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(60)]
    corpus, queries, qrels = [], [], []
    for i in range(24):
        key = rng.sample(words, 5)
        corpus.append({"_id": f"d{i}", "title": "", "text": " ".join(key[:3] + rng.sample(words, 6))})
        queries.append({"_id": f"q{i}", "text": " ".join(key)})
        qrels.append((f"q{i}", f"d{i}", 1))
    for j in range(24, 80):
        corpus.append({"_id": f"d{j}", "title": "", "text": " ".join(rng.sample(words, 8))})
    return write_beir(folder, corpus=corpus, queries=queries, qrels=qrels)


MODELS = (
    ModelSpec(model="hashing", dim=8, label="narrow"),
    ModelSpec(model="hashing", dim=32, label="mid"),
    ModelSpec(model="hashing", dim=256, label="wide"),
)


def _report(datasets: tuple[Path, ...], models: tuple[ModelSpec, ...], metrics: tuple[str, ...]) -> EvalReport:
    spec = EvalSpec(
        datasets=tuple(map(str, datasets)),
        models=models,
        metrics=tuple(parse_metrics(metrics)),
        use_cache=False,
        latency_queries=2,
    )
    return run_eval(spec)


def test_select_collection_and_verdict_report_a_direct_call(tmp_path: Path) -> None:
    data = (_dataset(tmp_path / "one", 1), _dataset(tmp_path / "two", 2))
    report = _report(data, MODELS, ("ndcg@10", "recall@100"))
    assert all(r.ok for r in report.results)
    per = {(r.model, r.dataset): r.evaluation.per_query for r in report.results if r.evaluation is not None}

    # select: qualifying candidates against the best, queries of both datasets pooled by (dataset, id)
    selection = select(report, Constraints(), seed=5)
    assert selection.best is not None and len(selection.comparisons) == 2
    pooled = {
        m.label: {(d, q): v for d in report.datasets for q, v in per[(m.label, d)]["ndcg_at_10"].items()}
        for m in MODELS
    }
    others = [c.model for c in selection.comparisons]
    direct = compare_to_reference(
        {k: pooled[k] for k in [selection.best, *others]}, selection.best, metric="ndcg_at_10", seed=5
    )
    assert [
        (c.model, c.best, c.mean_difference, c.ci_low, c.ci_high, c.p_value, c.p_holm) for c in selection.comparisons
    ] == [(d.a, d.b, d.difference, d.ci_low, d.ci_high, d.p_value, d.p_holm) for d in direct]
    # ... and the numbers select computed before eval.compare existed (same seed, same arrays)
    keys = sorted(pooled[selection.best])
    old = [
        paired_randomization_test(
            np.array([pooled[o][k] for k in keys]), np.array([pooled[selection.best][k] for k in keys]), seed=5
        )
        for o in others
    ]
    assert [(c.mean_difference, c.p_value) for c in selection.comparisons] == [(t.statistic, t.p_value) for t in old]
    assert [c.p_holm for c in selection.comparisons] == holm([t.p_value for t in old])
    assert any(c.p_value < 1.0 for c in selection.comparisons)  # the candidates do differ

    # collection eval: every pair of modes
    first = [r for r in report.results if r.dataset == next(iter(report.datasets))]
    modes = compare_modes(first, "ndcg_at_10", seed=2)
    assert modes == compare_all_pairs(
        {r.model: per[(r.model, r.dataset)]["ndcg_at_10"] for r in first}, metric="ndcg_at_10", seed=2
    )
    assert [(c.a, c.b) for c in modes] == [("narrow", "mid"), ("narrow", "wide"), ("mid", "wide")]
    assert all(isinstance(c, PairedComparison) and c.queries == 24 for c in modes)
    scores = {r.model: r.evaluation.per_query["ndcg_at_10"] for r in first if r.evaluation is not None}
    for c in modes:  # ... and the numbers of collection eval's former code
        x, y = paired_arrays(scores[c.a], scores[c.b])
        interval = bootstrap_ci(x - y, seed=2)
        assert (c.mean_a, c.mean_b, c.ci_low, c.ci_high) == (x.mean(), y.mean(), interval.low, interval.high)
        assert c.p_value == paired_randomization_test(x, y, seed=2).p_value
        # it reported mean(a) - mean(b); now mean(a - b), the tested statistic: the same sum, other rounding
        assert c.difference == pytest.approx(x.mean() - y.mean(), rel=1e-12, abs=1e-15)
    assert {
        "a",
        "b",
        "metric",
        "mean_a",
        "mean_b",
        "difference",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "queries",
    } <= set(vars(modes[0]))  # comparisons.json keeps its keys

    # fine-tune verdict: tuned (a) against base (b), one metric at a time
    verdict = compare_on_test(data[0], base=MODELS[0], tuned=MODELS[2], use_cache=False, latency_queries=2, seed=9)
    again = _report((data[0],), (MODELS[0], MODELS[2]), VERDICT_METRICS)
    base, tuned = (r.evaluation.per_query for r in again.results if r.evaluation is not None)
    assert [m.metric for m in verdict.metrics] == ["ndcg_at_10", "mrr_at_10", "recall_at_100"]
    for m in verdict.metrics:
        pair = compare_pair(tuned[m.metric], base[m.metric], metric=m.metric, seed=9)
        assert (m.delta, m.p_value, m.test) == (pair.difference_interval, pair.p_value, pair.test)
        assert (m.base, m.tuned) == (mean_interval(base[m.metric], seed=9), mean_interval(tuned[m.metric], seed=9))
        ids = sorted(base[m.metric])  # ... and the numbers of the verdict's former code
        a, b = np.array([tuned[m.metric][q] for q in ids]), np.array([base[m.metric][q] for q in ids])
        assert m.delta == bootstrap_ci(a - b, seed=9) and m.base == bootstrap_ci(b, seed=9)
        assert m.p_value == paired_randomization_test(a, b, seed=9).p_value

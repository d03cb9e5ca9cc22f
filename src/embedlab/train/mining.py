"""Hard-negative mining with the base model, through the shared embedding cache.

For each training query the base model ranks the passage pool (exact inner-product top-k,
``embedlab.index``); for each (query, positive) example the candidates at ranks
1..``rank_to`` are taken in rank order and each lands in exactly one audit bucket:

1. ``skipped_positive``: a known positive of the query (or the positive's exact text);
2. ``skipped_rank``: ranked above ``rank_from`` (the very top is where unjudged relevant
   passages hide);
3. ``skipped_margin``: score > ``margin`` x score(query, positive) -- NV-Retriever's
   "TopK-PercPos" filter (Moreira et al. 2024, arXiv:2407.15831): a candidate the base model
   scores almost as high as the positive is likely a false negative;
4. ``not_needed``: passed the embedding filters after ``per_query`` negatives were kept;
5. ``skipped_cross_encoder``: with a re-ranker given, ce(query, candidate) >=
   ce(query, positive) - ``cross_encoder_margin`` (checked lazily, in rank order);
6. ``kept``.

So ``candidates = skipped_positive + skipped_rank + skipped_margin + skipped_cross_encoder +
not_needed + kept``.

False-negative estimate (held-out positives): a query with several known positives is a
natural experiment.  For each example (q, A) and each *other* positive B of q ranked inside
the window, ask whether the filters would have let B through as a negative of A had B been
unjudged.  ``false_negative_rate = passed / probes``: the share of relevant passages inside
the window that the filters fail to catch, i.e. P(kept | relevant, in window).  It is
``None`` when no query has a second positive in the window.  It is an estimate of the
filters' miss rate, not of how many unjudged relevant passages exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from embedlab.cache.store import EmbeddingCache
from embedlab.data.types import Run
from embedlab.encoders.base import Encoder
from embedlab.errors import EmbedlabError
from embedlab.index.exact import ExactIndex
from embedlab.search.rerank import Reranker
from embedlab.train.data import TrainExample, TrainingSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningConfig:
    per_query: int = 1
    rank_from: int = 10
    rank_to: int = 30
    margin: float = 0.95
    cross_encoder: str | None = None
    cross_encoder_margin: float = 0.0

    def check(self) -> None:
        if self.per_query < 0:
            raise EmbedlabError("--hard-negatives must be >= 0", found=str(self.per_query))
        if not 1 <= self.rank_from <= self.rank_to:
            raise EmbedlabError(
                "bad mining rank window",
                found=f"{self.rank_from}-{self.rank_to}",
                expected="1 <= FROM <= TO, e.g. 10-30",
            )
        if not 0 < self.margin <= 1.5:
            raise EmbedlabError("bad mining margin", found=str(self.margin), expected="0 < margin <= 1.5, e.g. 0.95")


@dataclass(frozen=True)
class MiningAudit:
    examples: int
    already_had: int  # examples whose given negatives were enough (not mined)
    candidates: int
    skipped_positive: int
    skipped_rank: int
    skipped_margin: int
    skipped_cross_encoder: int
    not_needed: int
    kept: int
    examples_without_negative: int
    false_negative_probes: int
    false_negative_passed: int

    @property
    def false_negative_rate(self) -> float | None:
        return self.false_negative_passed / self.false_negative_probes if self.false_negative_probes else None

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "false_negative_rate": self.false_negative_rate}


@dataclass
class _Counts:
    candidates: int = 0
    positive: int = 0
    rank: int = 0
    margin: int = 0
    cross_encoder: int = 0
    not_needed: int = 0
    kept: int = 0
    probes: int = 0
    passed: int = 0


def mine_hard_negatives(
    train: TrainingSet,
    encoder: Encoder,
    *,
    config: MiningConfig,
    cache: EmbeddingCache | None,
    reranker: Reranker | None = None,
    show_progress: bool = False,
) -> tuple[TrainingSet, MiningAudit]:
    """``train`` with mined negatives added to each example (up to ``config.per_query`` in all),
    and the audit of every candidate considered."""
    todo, empty, (doc_ids, doc_texts) = _todo(train, config)
    if not todo:
        return train, empty
    log.info("mining hard negatives: %d passages, %d queries", len(doc_ids), len({e.query_id for e in todo}))
    docs = encoder.encode(doc_texts, role="document", cache=cache, show_progress=show_progress)
    queries = {e.query_id: e.query for e in todo}
    query_ids = list(queries)
    qvecs = encoder.encode([queries[q] for q in query_ids], role="query", cache=cache)
    scores, indices = ExactIndex(docs, doc_ids).search(qvecs, config.rank_to)
    row = {q: i for i, q in enumerate(query_ids)}
    where = {d: i for i, d in enumerate(doc_ids)}

    def ranked(example: TrainExample) -> tuple[list[tuple[int, float]], float]:
        r = row[example.query_id]
        pos_score = float(qvecs[r] @ docs[where[example.positive_id]])
        return [(int(j), float(s)) for j, s in zip(indices[r], scores[r], strict=True)], pos_score

    return _mine(train, todo, doc_ids, doc_texts, ranked, config, reranker, empty)


def mine_from_run(
    train: TrainingSet, run: Run, *, config: MiningConfig, reranker: Reranker | None = None
) -> tuple[TrainingSet, MiningAudit]:
    """Mining from any first stage's ranking of the passage pool (BM25, a hybrid, a pipeline):
    ``run`` holds each training query's ranking, cut here at ``config.rank_to``.

    The margin filter needs score(query, positive) on the run's scale: the positive's score in
    the run, else the lowest score of the query's ranking (the positive ranks below all of
    them, so this is an upper bound; as with exact dense scores, every candidate that outranks
    the positive is then above ``margin`` x its score unless scores are negative).
    """
    todo, empty, (doc_ids, doc_texts) = _todo(train, config)
    if not todo:
        return train, empty
    where = {d: i for i, d in enumerate(doc_ids)}

    def ranked(example: TrainExample) -> tuple[list[tuple[int, float]], float]:
        ranking = run.ranking(example.query_id)
        scores = dict(ranking)
        floor = min(scores.values(), default=0.0)
        top = [(where[d], s) for d, s in ranking[: config.rank_to] if d in where]
        return top, scores.get(example.positive_id, floor)

    return _mine(train, todo, doc_ids, doc_texts, ranked, config, reranker, empty)


def _todo(
    train: TrainingSet, config: MiningConfig
) -> tuple[list[TrainExample], MiningAudit, tuple[list[str], list[str]]]:
    """The examples that need negatives, the audit if none does, and the pool (ids, texts)."""
    config.check()
    todo = [e for e in train.examples if len(e.negatives) < config.per_query]
    empty = MiningAudit(len(train.examples), len(train.examples) - len(todo), *([0] * 10))
    if not todo:
        return todo, empty, ([], [])
    ids, texts = zip(*train.iter_corpus(), strict=True)
    return todo, empty, (list(ids), list(texts))


def _mine(
    train: TrainingSet,
    todo: list[TrainExample],
    doc_ids: list[str],
    doc_texts: list[str],
    ranked_for: Callable[[TrainExample], tuple[list[tuple[int, float]], float]],
    config: MiningConfig,
    reranker: Reranker | None,
    empty: MiningAudit,
) -> tuple[TrainingSet, MiningAudit]:
    """The filters and the audit over each example's ranked candidates ``(pool row, score)``."""
    where = set(doc_ids)
    positives = train.positives()
    counts = _Counts()
    mined: dict[int, list[int]] = {}
    for n, example in enumerate(todo):
        if example.positive_id not in where:
            raise EmbedlabError(f"positive {example.positive_id!r} is not in the passage pool", path=example.source)
        ranked, pos_score = ranked_for(example)
        need = config.per_query - len(example.negatives)
        mined[n] = _select(example, ranked, pos_score, need, doc_ids, doc_texts, positives, config, reranker, counts)
        _probe(example, ranked, pos_score, doc_ids, doc_texts, positives, config, reranker, counts)
    examples = list(train.examples)
    position = {id(e): i for i, e in enumerate(examples)}
    without = 0
    for n, example in enumerate(todo):
        chosen = mined[n]
        without += not chosen
        examples[position[id(example)]] = example.with_negatives(
            tuple(doc_ids[j] for j in chosen), tuple(doc_texts[j] for j in chosen)
        )
    audit = MiningAudit(
        examples=len(train.examples),
        already_had=empty.already_had,
        candidates=counts.candidates,
        skipped_positive=counts.positive,
        skipped_rank=counts.rank,
        skipped_margin=counts.margin,
        skipped_cross_encoder=counts.cross_encoder,
        not_needed=counts.not_needed,
        kept=counts.kept,
        examples_without_negative=without,
        false_negative_probes=counts.probes,
        false_negative_passed=counts.passed,
    )
    mined_set = TrainingSet(tuple(examples), train.format, train.source, train.passages, train.dataset, train.given_ids)
    return mined_set, audit


def _select(
    example: TrainExample,
    ranked: list[tuple[int, float]],
    pos_score: float,
    need: int,
    doc_ids: list[str],
    doc_texts: list[str],
    positives: dict[str, set[str]],
    config: MiningConfig,
    reranker: Reranker | None,
    counts: _Counts,
) -> list[int]:
    chosen: list[int] = []
    known = positives.get(example.query_id, set())
    for rank, (j, score) in enumerate(ranked, start=1):
        counts.candidates += 1
        if doc_ids[j] in known or doc_texts[j] == example.positive or doc_ids[j] in example.negative_ids:
            counts.positive += 1
        elif rank < config.rank_from:
            counts.rank += 1
        elif score > config.margin * pos_score:
            counts.margin += 1
        elif len(chosen) >= need:
            counts.not_needed += 1
        elif reranker is not None and not _reranker_passes(reranker, example, doc_texts[j], config):
            counts.cross_encoder += 1
        else:
            counts.kept += 1
            chosen.append(j)
    return chosen


def _probe(
    example: TrainExample,
    ranked: list[tuple[int, float]],
    pos_score: float,
    doc_ids: list[str],
    doc_texts: list[str],
    positives: dict[str, set[str]],
    config: MiningConfig,
    reranker: Reranker | None,
    counts: _Counts,
) -> None:
    """Held-out positives: would the filters have kept another known positive as a negative?"""
    others = positives.get(example.query_id, set()) - {example.positive_id}
    for rank, (j, score) in enumerate(ranked, start=1):
        if doc_ids[j] not in others or rank < config.rank_from:
            continue
        counts.probes += 1
        passes = score <= config.margin * pos_score
        if passes and reranker is not None:
            passes = _reranker_passes(reranker, example, doc_texts[j], config)
        counts.passed += passes


def _reranker_passes(reranker: Reranker, example: TrainExample, text: str, config: MiningConfig) -> bool:
    pos, cand = reranker.score(example.query, [example.positive, text])
    return cand < pos - config.cross_encoder_margin

"""Evaluate ``monitor.toml`` rules over the logged searches: one :class:`Verdict` per rule.

A rule looks at the searches of its last ``window`` (ending ``now``) that are not part of the
reference.  With fewer than ``min_volume`` of them it gives no verdict (``status = "low volume"``,
never an alert: a p-value on five queries alarms on noise).  Online metrics compare the window's
value with ``above`` / ``below``; drift tests compare the window with the reference (the first N
logged searches, or a queries file) and alert when ``p < p_value``:

- ``query_drift``: :func:`~embedlab.monitor.drift.mmd_test` on the query embeddings (the
  collection's own encoder, role "query");
- ``query_centroid``: :func:`~embedlab.monitor.drift.centroid_test` on the same embeddings;
- ``out_of_domain``: share of searches whose best score is below the reference's 5% quantile for
  their mode, exact binomial tail against 5% (needs a logged reference: scores of the same modes);
- ``vocabulary_drift``: per-query share of terms the corpus's BM25 vocabulary lacks, live > reference
  (one-sided permutation test);
- ``corpus_drift``: the last ``index update``'s added chunks against the previous generation (MMD,
  computed by the update and stored in the live manifest); its volume is the chunks added, its
  window is not used (the test belongs to the update, not to a time window).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from embedlab.collection.manifest import CorpusDrift
from embedlab.errors import EmbedlabError
from embedlab.monitor import drift
from embedlab.monitor.events import Search
from embedlab.monitor.online import Options, group_metrics, low_score_flags, low_score_thresholds, reformulated
from embedlab.monitor.rules import MonitorFile, Rule

STATE_FILE = "monitor-state.json"  # beside feedback.sqlite: the last check, read by the server's /metrics


@dataclass(frozen=True)
class Verdict:
    rule: str
    metric: str
    window: str
    volume: int
    status: str  # "alert", "ok" or "low volume"
    value: float | None = None
    p_value: float | None = None
    limit: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Context:
    """What drift tests need from the collection, loaded once and only when a rule needs it."""

    embed: Callable[[list[str]], np.ndarray]
    vocabulary: set[str] | None
    terms_of: Callable[[str], list[str]] | None
    reference_queries: list[str] | None = None  # from a queries file (else: the logged reference)
    corpus_drift: CorpusDrift | None = None  # the live generation's update test (None: none was run)


def collection_context(collection: str, *, root: str | Path | None, queries_file: Path | None) -> Context:
    from embedlab.collection.collection import open_collection

    opened = open_collection(collection, root=root, verify=False)
    lexical = opened.lexical
    vocabulary = set(lexical.model.vocab_dict) if getattr(lexical, "model", None) is not None else None
    reference_queries = None
    if queries_file is not None:
        from embedlab.data.beir import read_queries

        reference_queries = list(read_queries(queries_file).values())

    def embed(texts: list[str]) -> np.ndarray:
        return np.asarray(opened.encoder.encode(texts, role="query"), dtype=np.float64)

    return Context(
        embed=embed,
        vocabulary=vocabulary,
        terms_of=lexical.analyzer.terms if vocabulary is not None else None,
        reference_queries=reference_queries,
        corpus_drift=opened.manifest.corpus_drift,
    )


def split_reference(searches: Sequence[Search], config: MonitorFile) -> tuple[list[Search], list[Search]]:
    """(reference, the rest): the first ``reference.first`` searches, or none with a queries file."""
    first = config.reference.first
    if first is None:
        return [], list(searches)
    return list(searches[:first]), list(searches[first:])


def evaluate(
    searches: Sequence[Search],
    config: MonitorFile,
    *,
    context: Callable[[], Context],
    now: float | None = None,
    options: Options | None = None,
    seed: int = 0,
) -> list[Verdict]:
    """Every rule's verdict (see the module docstring); ``context`` is called once, if a test needs it."""
    now = time.time() if now is None else now
    options = options or Options()
    reference, rest = split_reference(searches, config)
    needs_searches = any(rule.metric != "corpus_drift" for rule in config.rule)
    if needs_searches and config.reference.first is not None and len(reference) < config.reference.first:
        raise EmbedlabError(
            "not enough logged searches for the reference",
            found=f"{len(reference)}",
            expected=f"at least reference.first = {config.reference.first}",
            hint="wait for more traffic, or lower [reference] first",
        )
    thresholds = low_score_thresholds(reference, quantile=options.low_quantile)
    refs = reformulated(searches, within_s=options.reformulation_s)
    loaded: list[Context] = []

    def ctx() -> Context:
        if not loaded:
            loaded.append(context())
        return loaded[0]

    out = []
    for rule in config.rule:
        live = [s for s in rest if now - rule.window_s <= s.ts <= now]
        if rule.metric == "corpus_drift":
            out.append(_corpus_verdict(rule, ctx().corpus_drift))
        elif len(live) < rule.min_volume:
            out.append(_verdict(rule, len(live), "low volume", limit=f">= {rule.min_volume} searches"))
        elif rule.p_value is None:
            value = group_metrics(live, options=options, reformulations=refs, thresholds=thresholds)[rule.metric]
            out.append(_threshold_verdict(rule, value, len(live)))
        elif (test := _drift(rule, reference, live, thresholds, ctx, options=options, seed=seed)) is None:
            out.append(_verdict(rule, len(live), "low volume", limit="no reference scores"))
        else:
            status = "alert" if test.p_value < rule.p_value else "ok"
            out.append(
                _verdict(
                    rule, len(live), status, value=test.statistic, p_value=test.p_value, limit=f"p < {rule.p_value}"
                )
            )
    return out


def _verdict(
    rule: Rule, volume: int, status: str, *, value: float | None = None, p_value: float | None = None, limit: str = ""
) -> Verdict:
    return Verdict(rule.label, rule.metric, rule.window, volume, status, value, p_value, limit)


def _corpus_verdict(rule: Rule, test: CorpusDrift | None) -> Verdict:
    if test is None:
        return _verdict(rule, 0, "low volume", limit="no update tested (first build, or too few added chunks)")
    if test.chunks_added < rule.min_volume:
        return _verdict(rule, test.chunks_added, "low volume", limit=f">= {rule.min_volume} added chunks")
    status = "alert" if test.p_value < (rule.p_value or 0.0) else "ok"
    return _verdict(
        rule, test.chunks_added, status, value=test.statistic, p_value=test.p_value, limit=f"p < {rule.p_value}"
    )


def _threshold_verdict(rule: Rule, value: float | None, volume: int) -> Verdict:
    if value is None:
        return _verdict(rule, volume, "low volume", limit="metric undefined")
    if rule.above is not None:
        return _verdict(rule, volume, "alert" if value > rule.above else "ok", value=value, limit=f"> {rule.above}")
    assert rule.below is not None
    return _verdict(rule, volume, "alert" if value < rule.below else "ok", value=value, limit=f"< {rule.below}")


def _drift(
    rule: Rule,
    reference: list[Search],
    live: list[Search],
    thresholds: dict[str, float],
    ctx: Callable[[], Context],
    *,
    options: Options,
    seed: int,
) -> drift.Test | None:
    if rule.metric == "out_of_domain":
        flags = low_score_flags(live, thresholds)
        if not flags:
            return None
        return drift.binomial_excess(sum(flags), len(flags), quantile=options.low_quantile)
    context = ctx()
    ref_queries = context.reference_queries or [s.query for s in reference]
    live_queries = [s.query for s in live]
    if len(ref_queries) < 2:
        return None
    if rule.metric == "vocabulary_drift":
        if context.vocabulary is None or context.terms_of is None:
            raise EmbedlabError("vocabulary drift needs the collection's BM25 index", found="a collection without one")
        shares = [
            drift.unknown_term_shares(q, context.vocabulary, context.terms_of) for q in (ref_queries, live_queries)
        ]
        return drift.mean_shift_test(shares[0], shares[1], seed=seed)
    x, y = context.embed(ref_queries), context.embed(live_queries)
    if rule.metric == "query_centroid":
        return drift.centroid_test(x, y, seed=seed)
    return drift.mmd_test(x, y, seed=seed)

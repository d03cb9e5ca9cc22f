"""The dev queries a setting is tuned on, and the disjoint queries it is reported on.

Choosing a setting on the queries it is then scored on reports the best of many tries as if
it were one, an optimistic bias (the winner's curse; Cawley and Talbot, "On over-fitting in
model selection and subsequent selection bias in performance evaluation", JMLR 11, 2010).  So
the dev queries are either the dataset's own train split (``qrels/train.tsv``; its queries
that also appear in the test split are dropped from dev) or a seeded random part of the test
queries, which are then left out of every reported figure.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from embedlab.data.beir import Dataset, load_dataset, resolve_dataset
from embedlab.data.types import Qrels
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import mean_interval
from embedlab.eval.metrics import MetricSpec
from embedlab.search.pipeline import PipelineSpec

log = logging.getLogger(__name__)
DEV_MODES = ("auto", "train", "part")
MIN_QUERIES = 2  # a paired test needs at least two queries on each side


@dataclass(frozen=True, kw_only=True)
class TuneSpec:
    """What every ``tune`` mode takes: the pipeline, the data, the metric tuned and the dev split."""

    pipeline: PipelineSpec
    dataset: str
    metric: MetricSpec
    report_metrics: tuple[MetricSpec, ...]
    dev: str = "auto"
    dev_fraction: float = 0.3
    seed: int = 0
    use_cache: bool = True
    cache_dir: Path | None = None
    show_progress: bool = False


def intervals(per_query: dict[str, dict[str, float]], *, seed: int) -> dict[str, tuple[float, float]]:
    """Per metric key, the 95% bootstrap interval of the mean (:func:`embedlab.eval.compare.mean_interval`)."""
    out = {}
    for key, scores in per_query.items():
        interval = mean_interval(scores, seed=seed)
        out[key] = (interval.low, interval.high)
    return out


@dataclass(frozen=True)
class Split:
    """``dev``/``reported``: query id -> text, with their judgments; ``source`` says where dev came from."""

    dataset: Dataset  # the test split (its corpus is the one searched)
    dev: dict[str, str]
    dev_qrels: Qrels
    reported: dict[str, str]
    reported_qrels: Qrels
    source: str  # "train split" or "part of test (fraction F, seed S)"
    images: dict[str, Path] = field(default_factory=dict)  # query id -> image file, for an image task's queries

    @property
    def queries(self) -> dict[str, str]:
        """Every query to retrieve once: dev and reported together."""
        return {**self.dev, **self.reported}


def split_queries(dataset: str, *, dev: str = "auto", fraction: float = 0.3, seed: int = 0) -> Split:
    """``dev``: ``train`` (the train split; error without one), ``part`` (a seeded ``fraction`` of
    the test queries, left out of the reported ones) or ``auto`` (train when it exists)."""
    if dev not in DEV_MODES:
        raise EmbedlabError(f"unknown dev split {dev!r}", expected=" | ".join(DEV_MODES))
    if not 0.0 < fraction < 1.0:
        raise EmbedlabError("invalid dev fraction", found=f"{fraction:g}", expected="a number between 0 and 1")
    test = load_dataset(dataset, split="test")
    has_train = (resolve_dataset(dataset) / "qrels" / "train.tsv").is_file()
    if dev == "train" and not has_train:
        raise EmbedlabError(
            "the dataset has no train split to tune on",
            path=resolve_dataset(dataset) / "qrels" / "train.tsv",
            hint="use --dev part (a seeded part of the test queries, left out of the reported figures)",
        )
    if dev == "train" or (dev == "auto" and has_train):
        train = load_dataset(dataset, split="train")
        overlap = set(train.queries) & set(test.queries)
        if overlap:
            log.warning("%d queries are judged in both train and test: dropped from dev", len(overlap))
        dev_ids = sorted(set(train.queries) - overlap)
        out = _split(test, {q: train.queries[q] for q in dev_ids}, train.qrels, sorted(test.queries), "train split")
        dev_images = {q: train.query_images[q] for q in dev_ids if q in train.query_images}
        out = replace(out, images={**dev_images, **out.images})
    else:
        ids = sorted(test.queries)
        chosen = set(random.Random(seed).sample(ids, round(len(ids) * fraction)))
        out = _split(
            test,
            {q: test.queries[q] for q in ids if q in chosen},
            test.qrels,
            [q for q in ids if q not in chosen],
            f"part of test (fraction {fraction:g}, seed {seed})",
        )
    for label, queries in (("dev", out.dev), ("reported", out.reported)):
        if len(queries) < MIN_QUERIES:
            raise EmbedlabError(
                f"too few {label} queries to tune on",
                found=f"{len(queries)} ({out.source})",
                expected=f"at least {MIN_QUERIES}",
                hint="change --dev-fraction, or use a dataset with more judged queries",
            )
    return out


def _split(test: Dataset, dev: dict[str, str], dev_qrels: Qrels, reported: list[str], source: str) -> Split:
    dev_judged = Qrels({q: dev_qrels.judgments[q] for q in dev})
    kept = Qrels({q: test.qrels.judgments[q] for q in reported})
    images = {q: test.query_images[q] for q in [*dev, *reported] if q in test.query_images}
    return Split(test, dev, dev_judged, {q: test.queries[q] for q in reported}, kept, source, images)

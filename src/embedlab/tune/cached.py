"""Candidate retrieval done once: each first-stage retriever answers every query once, and any
number of fusion settings are then computed from those cached ranked lists (a grid of 60
settings costs 60 cheap fusions, not 60 retrievals).

``retrieve`` indexes the corpus through the one embedding cache, as ``embedlab eval`` does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from embedlab import settings
from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Dataset
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.encoders.spec import ModelSpec
from embedlab.search.build import build_retriever, check_retrievable
from embedlab.search.fusion import fuse
from embedlab.search.pipeline import Fusion


@dataclass(frozen=True)
class CachedRuns:
    """Each retriever's ranked list per query (cut at ``depth``), with the seconds it took."""

    names: tuple[str, ...]
    runs: tuple[Run, ...]
    depth: int
    seconds: dict[str, float]

    def subset(self, query_ids: Sequence[str]) -> CachedRuns:
        """The same lists for some queries only (dev or reported)."""
        wanted = set(query_ids)
        runs = tuple(Run({q: s for q, s in run.scores.items() if q in wanted}, name=run.name) for run in self.runs)
        return CachedRuns(self.names, runs, self.depth, self.seconds)

    def fused(self, fusion: Fusion, *, k: int, name: str = "fused") -> Run:
        return fuse(
            list(self.runs),
            k=k,
            rrf_k=fusion.rrf_k,
            weights=fusion.weights,
            depth=min(fusion.candidates, self.depth),
            name=name,
            method=fusion.method,
        )


def retrieve(
    models: Sequence[ModelSpec],
    dataset: Dataset,
    queries: dict[str, str],
    *,
    depth: int,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    show_progress: bool = False,
) -> CachedRuns:
    """Index ``dataset``'s corpus with each model and answer ``queries`` with its top ``depth``."""
    for model in models:  # every name checked before any work
        check_retrievable(model)
    cache = EmbeddingCache(cache_dir or settings.cache_dir()) if use_cache else None
    runs: list[Run] = []
    seconds: dict[str, float] = {}
    try:
        for model in models:
            started = time.perf_counter()
            retriever = build_retriever(model)
            retriever.index(dataset.iter_documents(), cache=cache, stats=EncodeStats(), show_progress=show_progress)
            runs.append(retriever.search(queries, depth, cache=cache, stats=EncodeStats()))
            seconds[model.name] = time.perf_counter() - started
    finally:
        if cache is not None:
            cache.close()
    return CachedRuns(tuple(m.name for m in models), tuple(runs), depth, seconds)

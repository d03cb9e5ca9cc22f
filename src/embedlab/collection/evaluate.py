"""Chunk-level evaluation: score a collection's search, in any mode, against a dataset's qrels.

The collection must have been built from the dataset's corpus (``embedlab index build
--dataset NAME``): each file is one document.  For every judged query the collection is
searched exactly as ``embedlab search`` / ``serve`` would (same code, same options), for
the best ``chunk_depth`` chunks; a document's score is its best chunk's score (MaxP,
Dai & Callan 2019), and documents are ranked by it (ties: document id).  The document
run is then scored by the eval core like any model's, so chunk size, overlap, hybrid
weights and re-ranking are chosen by measurement.

Hybrid search fuses the top ``chunk_depth`` chunks of each side here (the server's
default is 100): with documents split into several chunks, 100 chunks can hold fewer
than the 100 documents that Recall@100 needs.

Modes are compared on per-query nDCG@10 (else the first metric) by ``eval.compare``: a two-sided
paired randomization test, Holm-adjusted over all pairs, and a bootstrap interval of the difference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedlab import __version__
from embedlab.collection.collection import info, open_collection
from embedlab.collection.corpus import document_ids
from embedlab.data.beir import load_dataset
from embedlab.data.types import Run
from embedlab.encoders.spec import ModelSpec
from embedlab.errors import EmbedlabError
from embedlab.eval.compare import PairedComparison, compare_all_pairs
from embedlab.eval.evaluate import evaluate
from embedlab.eval.measure import hardware, library_versions, peak_rss_bytes, percentile_ms
from embedlab.eval.metrics import MetricSpec
from embedlab.eval.runner import EvalReport, EvalSpec, ModelResult
from embedlab.payloads import Environment, Measurements
from embedlab.progress import progress_bar

if TYPE_CHECKING:
    from embedlab.search.rerank import Reranker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectionEval:
    report: EvalReport
    comparisons: list[PairedComparison]


def _document_run(
    collection,
    queries: dict[str, str],
    ids: dict[str, str],
    *,
    mode: str,
    depth: int,
    chunk_depth: int,
    rrf_k: float,
    weights: tuple[float, float],
    reranker: Reranker | None,
    rerank_depth: int,
    show_progress: bool,
) -> tuple[Run, list[float], dict[str, float]]:
    ranked: dict[str, dict[str, float]] = {}
    totals: list[float] = []
    stages: dict[str, float] = {}
    bar = progress_bar(total=len(queries), desc=f"search {mode}", unit="queries", enabled=show_progress)
    for query_id, text in queries.items():
        bar.update(1)
        response = collection.search(
            text,
            k=chunk_depth,
            mode=mode,
            rrf_k=rrf_k,
            weights=weights,
            reranker=reranker,
            rerank_depth=rerank_depth,
            candidates=chunk_depth,
            snippets=False,
        )
        best: dict[str, float] = {}
        for hit in response.hits:  # best first, so a document's first hit is its best chunk
            doc = ids.get(hit.path)
            if doc is not None and doc not in best:
                best[doc] = hit.score
        ranked[query_id] = dict(sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))[:depth])
        totals.append(response.latency_ms["total"] / 1000.0)
        for stage, ms in response.latency_ms.items():
            stages[stage] = stages.get(stage, 0.0) + ms
    bar.close()
    mean_stages = {k: round(v / max(1, len(queries)), 3) for k, v in stages.items()}
    return Run(ranked, name=mode), totals, mean_stages


def evaluate_collection(
    name: str,
    dataset_name: str,
    *,
    modes: tuple[str, ...],
    metrics: tuple[MetricSpec, ...],
    split: str = "test",
    root: str | Path | None = None,
    chunk_depth: int = 1000,
    rrf_k: float = 60.0,
    weights: tuple[float, float] = (1.0, 1.0),
    reranker: Reranker | None = None,
    rerank_depth: int = 20,
    seed: int = 0,
    show_progress: bool = False,
) -> CollectionEval:
    """Every mode of collection ``name`` on ``dataset_name``'s ``split`` qrels; see the module docstring."""
    if not modes:
        raise EmbedlabError("no search mode to evaluate", expected="one or more of dense, bm25, hybrid")
    dataset = load_dataset(dataset_name, split=split)
    depth = max(m.k for m in metrics)
    description = info(name, root=root)
    ids = document_ids(str(description["source_folder"]))
    corpus_ids = set(ids.values())
    judged = {d for docs in dataset.qrels.judgments.values() for d in docs}
    if not judged & corpus_ids:
        raise EmbedlabError(
            f"collection {name!r} holds none of {dataset.name!r}'s judged documents",
            hint="build the collection from this dataset: `embedlab index build --dataset "
            f"{dataset.name} --collection {name} --model MODEL`",
        )
    started = time.perf_counter()
    collection = open_collection(name, root=root)
    load_s = time.perf_counter() - started
    results: list[ModelResult] = []
    try:
        spec_dict = dict(description["model_spec"])
        for mode in modes:
            log.info("%s / %s on %s", name, mode, dataset.name)
            started = time.perf_counter()
            run, totals, stages = _document_run(
                collection,
                dataset.queries,
                ids,
                mode=mode,
                depth=depth,
                chunk_depth=chunk_depth,
                rrf_k=rrf_k,
                weights=weights,
                reranker=reranker,
                rerank_depth=rerank_depth,
                show_progress=show_progress,
            )
            seconds = time.perf_counter() - started
            evaluation = evaluate(run, dataset.qrels, metrics)
            label = f"{name}/{mode}" + (f"+{reranker.name}" if reranker is not None else "")
            counts, chunking = description["counts"], description["chunking"]
            measurements: Measurements = {
                "load_seconds": load_s,
                "corpus": {
                    "documents": dataset.doc_count,
                    "chunks": counts["chunks"],
                    "seconds": 0.0,
                    "encoded": 0,
                    "cache_hits": 0,
                    "docs_per_second": None,
                    "source": f"collection {name} generation {description['generation']}",
                },
                "queries": {"count": len(dataset.queries), "seconds": seconds},
                "latency": {
                    "samples": len(totals),
                    "p50_ms": percentile_ms(totals, 50),
                    "p95_ms": percentile_ms(totals, 95),
                    "mean_ms": float(np.mean(totals) * 1000.0),
                    "stages_mean_ms": stages,
                    "what": f"collection search of {chunk_depth} chunks per query, no snippets",
                },
                "size": {"dim": description["dim"], "index_bytes": description["size_bytes"]},
                "memory": {"peak_rss_bytes": peak_rss_bytes()},
                "conditions": {
                    "mode": mode,
                    "chunk_tokens": chunking["max_tokens"],
                    "overlap": chunking["overlap"],
                    "chunk_depth": chunk_depth,
                    "rrf_k": rrf_k,
                    "weights": list(weights),
                    "reranker": reranker.name if reranker is not None else None,
                    "document_score": "best chunk (MaxP)",
                },
            }
            results.append(
                ModelResult(
                    dataset=dataset.name,
                    model=label,
                    spec={**spec_dict, "collection": name},
                    scores=evaluation.mean,
                    evaluation=evaluation,
                    run=run,
                    fingerprint=dict(description["encoder"]),
                    measurements=measurements,
                )
            )
    finally:
        collection.close()
    spec = EvalSpec(
        datasets=(dataset.name,), models=(ModelSpec.model_validate(spec_dict),), metrics=metrics, split=split, seed=seed
    )
    environment: Environment = {
        "embedlab": __version__,
        "libraries": library_versions(),
        "hardware": hardware(),
        "seed": seed,
        "collection": {k: description[k] for k in ("name", "generation", "chunking", "counts", "index")},
    }
    report = EvalReport(
        spec=spec, datasets={dataset.name: dataset.manifest()}, results=results, environment=environment
    )
    main = "ndcg_at_10" if any(m.key == "ndcg_at_10" for m in metrics) else metrics[0].key
    return CollectionEval(report=report, comparisons=compare_modes(results, main, seed=seed))


def compare_modes(results: list[ModelResult], metric: str, *, seed: int = 0) -> list[PairedComparison]:
    """Every two results on ``metric`` (per query), Holm-adjusted over all pairs (``eval.compare``)."""
    return compare_all_pairs(
        {r.model: r.evaluation.per_query[metric] for r in results if r.evaluation is not None}, metric=metric, seed=seed
    )

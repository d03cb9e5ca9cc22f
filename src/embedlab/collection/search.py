"""Searching a collection: dense, BM25 or hybrid (RRF), optionally re-ranked, with snippets and timings.

- ``dense``: the query is encoded (role "query", never cached: what a user waits for)
  and the nearest chunk vectors are found (exact or HNSW, see ``vectors.py``).
- ``bm25``: Lucene BM25 over the chunk texts; only chunks sharing a term with the query.
- ``hybrid``: the top ``candidates`` (100) of each, fused by reciprocal rank fusion,
  ``w_dense / (rrf_k + rank_dense) + w_bm25 / (rrf_k + rank_bm25)`` (Cormack et al. 2009,
  see :mod:`embedlab.search.fusion`), or (``fusion`` minmax / zscore) by the weighted sum of
  normalised scores.
- re-ranking (optional): a :class:`~embedlab.search.rerank.Reranker` re-scores the top
  ``max(k, rerank_depth)`` results of the first stage.

Ties are broken by chunk id (the first-stage order, for the re-ranker).  The latency
breakdown (ms) has ``encode``, ``search`` (dense and BM25), ``fuse``, ``rerank``, ``fetch``
(chunk rows and snippets) and ``total``; stages that did not run are 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from embedlab.collection.snippet import Snippet, highlights, make_snippet, mark
from embedlab.errors import EmbedlabError
from embedlab.registry import Registry
from embedlab.search.fusion import METHODS, check_fusion, fuse_ranked
from embedlab.search.rerank import stage_scores as mixed_scores

if TYPE_CHECKING:
    from embedlab.collection.chunkstore import ChunkRow
    from embedlab.collection.collection import Collection
    from embedlab.search.pipeline import PipelineSpec
    from embedlab.search.rerank import Reranker

MODES: Registry[str] = Registry("search mode")
for _mode in ("dense", "bm25", "hybrid"):
    MODES.add(_mode, _mode)
MAX_K = 1000
MAX_QUERY_CHARS = 4096


@dataclass(frozen=True)
class Hit:
    """One result: where it is (file, page, character offsets in the page text) and why it matched."""

    rank: int
    chunk_id: int
    path: str
    page: int
    char_start: int
    char_end: int
    score: float  # the final stage's score (cosine, BM25, RRF or re-ranker)
    scores: dict[str, float]  # every stage's score: dense, bm25, rrf, rerank
    text: str
    snippet_start: int  # offsets in ``text``
    snippet_end: int
    highlights: tuple[tuple[int, int], ...]  # every query-term span in ``text`` (not only the snippet's)

    @property
    def snippet(self) -> str:
        return self.text[self.snippet_start : self.snippet_end]

    def marked_snippet(self, before: str = "**", after: str = "**") -> str:
        inside = tuple((a, b) for a, b in self.highlights if a >= self.snippet_start and b <= self.snippet_end)
        return mark(self.text, Snippet(self.snippet_start, self.snippet_end, inside), before=before, after=after)

    def to_dict(self) -> dict[str, object]:
        return {
            "rank": self.rank,
            "chunk_id": self.chunk_id,
            "path": self.path,
            "page": self.page,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "score": self.score,
            "scores": dict(self.scores),
            "text": self.text,
            "snippet_start": self.snippet_start,
            "snippet_end": self.snippet_end,
            "highlights": [list(span) for span in self.highlights],
            "snippet": self.snippet,
            "marked_snippet": self.marked_snippet(),  # highlights as **bold** Markdown
        }


@dataclass(frozen=True)
class SearchResponse:
    collection: str
    generation: int
    query: str
    mode: str
    k: int
    hits: tuple[Hit, ...]
    latency_ms: dict[str, float]
    chunks_searched: int  # after the path filter
    reranker: str | None = None
    options: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "collection": self.collection,
            "generation": self.generation,
            "query": self.query,
            "mode": self.mode,
            "k": self.k,
            "reranker": self.reranker,
            "options": self.options,
            "chunks_searched": self.chunks_searched,
            "latency_ms": self.latency_ms,
            "hits": [hit.to_dict() for hit in self.hits],
        }


def _check(query: object, k: object, mode: object, candidates: object, rerank_depth: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise EmbedlabError("empty query", expected="some words to search for")
    if len(query) > MAX_QUERY_CHARS:
        raise EmbedlabError("query is too long", found=f"{len(query)} characters", expected=f"<= {MAX_QUERY_CHARS}")
    limits = (("k", k, MAX_K), ("candidates", candidates, 10_000), ("rerank_depth", rerank_depth, MAX_K))
    for label, value, top in limits:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise EmbedlabError(f"invalid {label}", found=repr(value), expected=f"a whole number from 1 to {top}")
    if not isinstance(mode, str):
        raise EmbedlabError("invalid search mode", found=repr(mode), expected="dense, bm25 or hybrid")
    return MODES.get(mode)


@dataclass(frozen=True)
class Query:
    """One search request: the arguments of :func:`search` (batched callers pass many)."""

    query: str
    k: int = 10
    mode: str = "hybrid"
    rrf_k: float = 60.0
    weights: tuple[float, float] = (1.0, 1.0)
    path_filter: str | None = None
    reranker: Reranker | None = None
    rerank_depth: int = 20
    candidates: int = 100
    snippets: bool = True
    fusion: str = "rrf"  # or minmax / zscore (embedlab.search.fusion)
    rerank_fuse: float = 0.0  # fuse=weighted:W of the re-rank stage (0: its score alone)


@dataclass(frozen=True)
class _Plan:
    query: Query
    mode: str
    weights: tuple[float, ...]
    rows: np.ndarray | None
    searched: int
    depth: int  # results kept after the first stage (k, or the re-rank depth)
    first_depth: int  # results asked of each first-stage index

    @property
    def dense(self) -> bool:
        return self.mode in ("dense", "hybrid") and self.searched > 0


def _plan(collection: Collection, q: Query) -> _Plan:
    mode = _check(q.query, q.k, q.mode, q.candidates, q.rerank_depth)
    weights = check_fusion(q.rrf_k, q.weights, 2)
    if q.fusion not in METHODS or not 0.0 <= q.rerank_fuse <= 1.0:
        raise EmbedlabError(
            "invalid fusion", found=f"{q.fusion!r}, rerank_fuse={q.rerank_fuse!r}", expected="rrf|minmax|zscore, 0..1"
        )
    if q.path_filter is not None and (not isinstance(q.path_filter, str) or not q.path_filter):
        raise EmbedlabError("invalid path filter", found=repr(q.path_filter), expected="a glob such as 'papers/*.pdf'")
    rows = collection.rows_matching(q.path_filter)
    depth = max(q.k, q.rerank_depth) if q.reranker is not None else q.k
    return _Plan(
        query=q,
        mode=mode,
        weights=weights,
        rows=rows,
        searched=len(collection) if rows is None else len(rows),
        depth=depth,
        first_depth=max(depth, q.candidates) if mode == "hybrid" else depth,
    )


def search(
    collection: Collection,
    query: str,
    *,
    k: int = 10,
    mode: str = "hybrid",
    rrf_k: float = 60.0,
    weights: tuple[float, float] = (1.0, 1.0),
    path_filter: str | None = None,
    reranker: Reranker | None = None,
    rerank_depth: int = 20,
    candidates: int = 100,
    snippets: bool = True,
    fusion: str = "rrf",
    rerank_fuse: float = 0.0,
) -> SearchResponse:
    """Search ``collection``; ``weights`` are (dense, bm25) for hybrid fusion (``fusion``: rrf, minmax or
    zscore; ``rerank_fuse``: the first stage's share of the re-ranked order); ``path_filter`` is a glob
    on file paths relative to the library folder; ``snippets=False`` leaves highlights and snippets
    out (each hit's snippet is then its whole text), for evaluation runs over many hits."""
    started = time.perf_counter()
    q = Query(
        query=query,
        k=k,
        mode=mode,
        rrf_k=rrf_k,
        weights=weights,
        path_filter=path_filter,
        reranker=reranker,
        rerank_depth=rerank_depth,
        candidates=candidates,
        snippets=snippets,
        fusion=fusion,
        rerank_fuse=rerank_fuse,
    )
    plan = _plan(collection, q)
    dense = None
    timings = dict.fromkeys(("encode", "search", "fuse", "rerank", "fetch", "total"), 0.0)
    if plan.dense:
        t = time.perf_counter()
        vector = collection.encoder.encode([query], role="query")[0]
        timings["encode"] = _ms(t)
        t = time.perf_counter()
        dense = collection.dense.search_one(vector, plan.first_depth, rows=plan.rows)
        timings["search"] = _ms(t)
    return _execute(collection, plan, dense, timings, started)


def search_batch(collection: Collection, queries: Sequence[Query]) -> list[SearchResponse | EmbedlabError]:
    """Many searches as one batch: every dense query is encoded in one encoder call and searched in
    one index call (per path filter); the rest runs per query.  Each query gets its response or
    its own error (a bad query does not fail the others).  Timings: ``encode`` and ``search`` are
    the batch's (what each query waited for), the other stages its own; ``batch`` is the size."""
    started = time.perf_counter()
    out: list[SearchResponse | EmbedlabError | None] = [None] * len(queries)
    plans: list[tuple[int, _Plan]] = []
    for i, q in enumerate(queries):
        try:
            plans.append((i, _plan(collection, q)))
        except EmbedlabError as err:
            out[i] = err
    dense = [(i, p) for i, p in plans if p.dense]
    hits: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    encode_ms = search_ms = 0.0
    if dense:
        t = time.perf_counter()
        vectors = collection.encoder.encode([p.query.query for _, p in dense], role="query")
        encode_ms = _ms(t)
        t = time.perf_counter()
        groups: dict[str | None, list[int]] = {}
        for n, (_, p) in enumerate(dense):
            groups.setdefault(p.query.path_filter, []).append(n)
        for members in groups.values():
            plan0 = dense[members[0]][1]
            want = max(dense[n][1].first_depth for n in members)
            scores, found = collection.dense.search(vectors[members], want, rows=plan0.rows)
            for row, n in enumerate(members):
                keep = found[row] >= 0
                cut = dense[n][1].first_depth
                hits[dense[n][0]] = (scores[row][keep][:cut], found[row][keep][:cut])
        search_ms = _ms(t)
    for i, plan in plans:
        timings = dict.fromkeys(("encode", "search", "fuse", "rerank", "fetch", "total"), 0.0)
        timings["encode"], timings["search"] = (encode_ms, search_ms) if i in hits else (0.0, 0.0)
        try:
            out[i] = _execute(collection, plan, hits.get(i), timings, started, batch=len(queries))
        except EmbedlabError as err:
            out[i] = err
    return [r if r is not None else EmbedlabError("query not answered") for r in out]


def _execute(
    collection: Collection,
    plan: _Plan,
    dense: tuple[np.ndarray, np.ndarray] | None,
    timings: dict[str, float],
    started: float,
    *,
    batch: int = 1,
) -> SearchResponse:
    """Everything after the dense index: BM25, fusion, fetch, re-ranking, snippets."""
    q, mode, rows, depth, first_depth = plan.query, plan.mode, plan.rows, plan.depth, plan.first_depth
    query, k, reranker, snippets = q.query, q.k, q.reranker, q.snippets
    searched, weights_used = plan.searched, plan.weights
    stage_scores: dict[int, dict[str, float]] = {}
    ranked: list[tuple[int, float]] = []  # (row, score) of the first stage, best first

    dense_ranked: list[tuple[int, float]] = []
    if dense is not None:
        scores, found = dense
        for s, r in zip(scores, found, strict=True):
            stage_scores.setdefault(int(r), {})["dense"] = float(s)
            dense_ranked.append((int(r), float(s)))
        ranked = [(int(r), float(s)) for s, r in zip(scores, found, strict=True)]
    if mode in ("bm25", "hybrid") and searched:
        t = time.perf_counter()
        scores, found = collection.lexical.search_one(query, first_depth, rows=rows)
        timings["search"] += _ms(t)
        for s, r in zip(scores, found, strict=True):
            stage_scores.setdefault(int(r), {})["bm25"] = float(s)
        ranked = [(int(r), float(s)) for s, r in zip(scores, found, strict=True)]
        if mode == "hybrid":
            t = time.perf_counter()
            # rows are in chunk-id order, so ties (score, then row) are ties by chunk id
            lexical = [(int(r), float(s)) for s, r in zip(scores, found, strict=True)]
            fused = fuse_ranked([dense_ranked, lexical], method=q.fusion, rrf_k=q.rrf_k, weights=weights_used)
            ranked = fused[:depth]
            for r, s in ranked:
                stage_scores[r][q.fusion] = s
            timings["fuse"] = _ms(t)
    ranked = ranked[:depth]

    t = time.perf_counter()
    chunk_ids = [int(collection.ids[r]) for r, _ in ranked]
    rows_by_id = collection.store.chunks(chunk_ids)
    timings["fetch"] = _ms(t)
    if reranker is not None and ranked:
        t = time.perf_counter()
        texts = [rows_by_id[cid].text for cid in chunk_ids]
        new_scores = [float(v) for v in reranker.score(query, texts)]
        if len(new_scores) != len(texts) or not all(math.isfinite(v) for v in new_scores):
            raise EmbedlabError(
                f"re-ranker {reranker.name!r} returned {len(new_scores)} scores for "
                f"{len(texts)} texts (or a non-finite score)"
            )
        new_scores = mixed_scores([s for _, s in ranked], new_scores, weight=q.rerank_fuse)
        for (r, _), s in zip(ranked, new_scores, strict=True):
            stage_scores[r]["rerank"] = s
        order = sorted(range(len(ranked)), key=lambda i: (-new_scores[i], i))
        ranked = [(ranked[i][0], new_scores[i]) for i in order]
        timings["rerank"] = _ms(t)
    t = time.perf_counter()
    hits = tuple(
        _hit(collection, rank, rows_by_id[int(collection.ids[r])], score, stage_scores[r], query if snippets else None)
        for rank, (r, score) in enumerate(ranked[:k], start=1)
    )
    timings["fetch"] += _ms(t)
    timings["total"] = _ms(started)
    options = {
        "rrf_k": q.rrf_k,
        "weights": list(weights_used),
        "path_filter": q.path_filter,
        "candidates": q.candidates,
        "rerank_depth": q.rerank_depth if reranker is not None else None,
        "fusion": q.fusion,
        "rerank_fuse": q.rerank_fuse if reranker is not None else None,
    }
    if batch > 1:
        options["batch"] = batch
    return SearchResponse(
        collection=collection.name,
        generation=collection.generation,
        query=query,
        mode=mode,
        k=k,
        hits=hits,
        latency_ms={key: round(v, 3) for key, v in timings.items()},
        chunks_searched=searched,
        reranker=reranker.name if reranker is not None else None,
        options=options,
    )


def _ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000.0


def _hit(
    collection: Collection, rank: int, row: ChunkRow, score: float, scores: dict[str, float], query: str | None
) -> Hit:
    marks = highlights(row.text, query, collection.lexical.analyzer) if query is not None else ()
    snippet = make_snippet(row.text, marks) if query is not None else Snippet(0, len(row.text), ())
    return Hit(
        rank=rank,
        chunk_id=row.id,
        path=row.path,
        page=row.page,
        char_start=row.char_start,
        char_end=row.char_end,
        score=float(score),
        scores=dict(scores),
        text=row.text,
        snippet_start=snippet.start,
        snippet_end=snippet.end,
        highlights=marks,
    )


@dataclass(frozen=True)
class PipelineOptions:
    """A pipeline spec as the arguments of :func:`search` for one collection."""

    mode: str
    rrf_k: float
    weights: tuple[float, float]
    candidates: int
    reranker: str | None
    rerank_depth: int
    fusion: str = "rrf"
    rerank_fuse: float = 0.0


def pipeline_options(pipeline: PipelineSpec, *, dense_model: str) -> PipelineOptions:
    """Map a pipeline onto a collection: its first-stage models are ``bm25`` and the collection's
    own dense model (named by its model name or ``dense``); at most one re-rank stage.

    ``bm25 + dense | rrf:k=30,weights=1/2 >> word-overlap@50`` is hybrid search with RRF k=30,
    weight 1 for BM25 and 2 for dense, re-ranked to depth 50."""
    stages: list[str] = []
    for model in pipeline.first:
        if model.model == "bm25":
            stages.append("bm25")
        elif model.model in ("dense", dense_model):
            stages.append("dense")
        else:
            raise EmbedlabError(
                f"pipeline model {model.model!r} is not in this collection",
                expected=f"'bm25' and/or the collection's model ({dense_model!r} or 'dense')",
            )
        if model.model != "bm25" and model.flat().keys() - {"model"}:
            raise EmbedlabError(
                f"pipeline model {model.name!r} has options; a collection's model is fixed",
                hint="name it without options",
            )
    if len(set(stages)) != len(stages):
        raise EmbedlabError("a pipeline names the same first stage twice", found=str(pipeline))
    if len(pipeline.rerank) > 1:
        raise EmbedlabError("a collection search takes at most one re-rank stage", found=str(pipeline))
    given = pipeline.fusion.weights or (1.0,) * len(stages)
    weight = dict(zip(stages, given, strict=True))
    mode = "hybrid" if len(stages) == 2 else stages[0]
    stage = pipeline.rerank[0] if pipeline.rerank else None
    return PipelineOptions(
        mode=mode,
        rrf_k=pipeline.fusion.rrf_k,
        weights=(weight.get("dense", 1.0), weight.get("bm25", 1.0)),
        candidates=pipeline.fusion.candidates,
        reranker=stage.reranker if stage else None,
        rerank_depth=stage.depth if stage else 20,
        fusion=pipeline.fusion.method,
        rerank_fuse=stage.fuse if stage else 0.0,
    )

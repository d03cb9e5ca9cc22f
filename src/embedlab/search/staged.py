"""A :class:`~embedlab.search.pipeline.PipelineSpec` run as a retriever over a corpus (eval, select).

Each first-stage model is its own retriever (dense: encoder + vector index; ``bm25``: the
lexical index) over the same documents; with several, each answers with its top
``fusion.candidates`` and the rankings are fused (RRF or normalised scores); then each re-rank
stage re-scores the top ``depth`` with the document texts (a cross-encoder, ``word-overlap``, or a
``bi:MODEL`` bi-encoder, whose passage vectors are encoded here at index time through the
embedding cache, as a dense index's are) and orders them
by its score or by a weighted mix with the previous stage's (``fuse=weighted:W``).  Below a
re-ranked depth the previous order is kept, with scores strictly below every re-ranked score,
so a ``Run`` (ordered by score) keeps the pipeline's order.

Images: a document with an image file is re-ranked as that file, and image queries go through
:meth:`PipelineRetriever.search_images` (one first stage with an image tower); only a ``bi:``
stage reads images (with its own towers: a cheap backbone's top ``depth`` re-scored by an
aligned or larger model, ``efficientnet-lite0 >> bi:ALIGNED@50``); a text re-ranker given an
image is one line.

The documents are held in memory (their texts are needed by the re-rankers, and each
first-stage retriever reads them once): fine for evaluation corpora, not for a 50M corpus.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import cast

from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Document
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo
from embedlab.search.fusion import fuse
from embedlab.search.pipeline import PipelineSpec
from embedlab.search.rerank import BiEncoderReranker, Reranker, load_reranker, stage_scores
from embedlab.search.retriever import Retriever


class PipelineRetriever(Retriever):
    def __init__(self, spec: PipelineSpec, stages: list[Retriever], *, rerankers: list[Reranker] | None = None) -> None:
        self.spec = spec
        self.label = spec.name
        self.stages = stages
        self.rerankers: list[Reranker] = (
            rerankers if rerankers is not None else [load_reranker(stage.reranker) for stage in spec.rerank]
        )
        self.texts: dict[str, str | Path] = {}  # what a re-ranker reads: the text, or an image document's file

    def variant(self, spec: PipelineSpec, *, rerankers: list[Reranker] | None = None) -> PipelineRetriever:
        """The same indexed first stage with other re-rank settings (``tune depth``: one index, many
        depths); ``rerankers``: loaded ones to use (default: this one's)."""
        if spec.first != self.spec.first or len(spec.rerank) != len(self.spec.rerank):
            raise ValueError("a variant keeps the first stage and the number of re-rank stages")
        other = PipelineRetriever(spec, self.stages, rerankers=rerankers if rerankers is not None else self.rerankers)
        other.texts = self.texts
        return other

    def index(
        self,
        documents: Iterable[Document],
        *,
        cache: EmbeddingCache | None,
        stats: EncodeStats,
        show_progress: bool = False,
    ) -> None:
        docs = list(documents)
        self.texts = {d.id: d.image if d.image is not None else d.content for d in docs}
        for stage in self.stages:  # each stage counts its own texts, so a hybrid counts the corpus twice
            stage.index(iter(docs), cache=cache, stats=stats, show_progress=show_progress)
        for reranker in self.rerankers:  # a bi-encoder stage's passage vectors, ahead like an index's
            if isinstance(reranker, BiEncoderReranker):
                reranker.precompute(list(self.texts.values()), cache=cache, stats=stats, show_progress=show_progress)

    def _first(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        if len(self.stages) == 1:
            return self.stages[0].search(queries, k, cache=cache, stats=stats)
        depth = max(k, self.spec.fusion.candidates)
        runs = [stage.search(queries, depth, cache=cache, stats=stats) for stage in self.stages]
        return fuse(
            runs,
            k=max(k, depth),
            rrf_k=self.spec.fusion.rrf_k,
            weights=self.spec.fusion.weights,
            depth=depth,
            name=self.label,
            method=self.spec.fusion.method,
        )

    def _rerank(self, run: Run, queries: dict[str, str] | dict[str, Path], k: int) -> Run:
        out: dict[str, dict[str, float]] = {}
        for query_id in run.query_ids:
            ranking = run.ranking(query_id)
            for stage, reranker in zip(self.spec.rerank, self.rerankers, strict=True):
                top = ranking[: stage.depth]
                items = [self.texts[d] for d, _ in top]
                query = queries[query_id]
                if getattr(reranker, "reads_images", False):  # a bi-encoder, or a wrapper of one: items may be files
                    scores = [float(s) for s in cast(BiEncoderReranker, reranker).score(query, items)]
                else:
                    scores = [
                        float(s) for s in reranker.score(_text(query, reranker), [_text(t, reranker) for t in items])
                    ]
                scores = stage_scores([s for _, s in top], scores, weight=stage.fuse)
                order = sorted(range(len(top)), key=lambda i: (-scores[i], i))
                reranked = [(top[i][0], scores[i]) for i in order]
                floor = min(scores, default=0.0) - 1.0
                rest = [(d, floor - (i + 1) * 1e-6) for i, (d, _) in enumerate(ranking[stage.depth :])]
                ranking = reranked + rest
            out[query_id] = dict(ranking[:k])
        return Run(out, name=self.label)

    def search(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        return self.reranked(self.first_stage(queries, k, cache=cache, stats=stats), queries, k, cache=cache)

    def first_stage(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        """The candidates the re-rank stages read: the first stage's top max(k, deepest depth)."""
        return self._first(queries, self._depth(k), cache=cache, stats=stats)

    def _depth(self, k: int) -> int:
        return max([k, *(stage.depth for stage in self.spec.rerank)])

    def reranked(
        self, run: Run, queries: dict[str, str] | dict[str, Path], k: int, *, cache: EmbeddingCache | None
    ) -> Run:
        """``run`` (a :meth:`first_stage` at least as deep as this pipeline's stages) re-ranked, top ``k``."""
        for reranker in self.rerankers:  # bi-encoder stages read passage vectors from the cache
            if isinstance(reranker, BiEncoderReranker):
                reranker.cache = cache
        try:
            return self._rerank(run, queries, k) if self.rerankers else run
        finally:
            for reranker in self.rerankers:
                if isinstance(reranker, BiEncoderReranker):
                    reranker.cache = None

    def search_one(self, text: str, k: int) -> list[tuple[str, float]]:
        run = self.search({"q": text}, k, cache=None, stats=EncodeStats())
        return run.ranking("q")[:k]

    def modalities(self) -> frozenset[str]:
        """Image queries need a single first stage with an image tower (BM25 and fusion read words)."""
        return self.stages[0].modalities() if len(self.stages) == 1 else frozenset({"text"})

    def search_images(
        self, images: dict[str, Path], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats
    ) -> Run:
        """The two-stage image pipeline: the first stage's image search, its top ``depth`` re-scored
        (a ``bi:`` stage encodes the query image and the candidate images with its own towers)."""
        return self.reranked(self.first_stage_images(images, k, cache=cache, stats=stats), images, k, cache=cache)

    def first_stage_images(
        self, images: dict[str, Path], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats
    ) -> Run:
        """:meth:`first_stage` for image queries: the one first stage's image search."""
        if len(self.stages) != 1:
            raise EmbedlabError(
                f"pipeline {self.label!r} fuses several first stages; image queries take one",
                expected="one image model first, e.g. 'efficientnet-lite0 >> bi:MODEL@50'",
            )
        return self.stages[0].search_images(images, self._depth(k), cache=cache, stats=stats)

    def search_image_one(self, image: Path, k: int) -> list[tuple[str, float]]:
        run = self.search_images({"q": image}, k, cache=None, stats=EncodeStats())
        return run.ranking("q")[:k]

    def describe(self) -> dict[str, object]:
        return {
            "pipeline": str(self.spec),
            "stages": [stage.describe() for stage in self.stages],
            "fusion": {
                "method": self.spec.fusion.method,
                "k": self.spec.fusion.rrf_k if self.spec.fusion.method == "rrf" else None,
                "weights": list(self.spec.fusion.weights or [1.0] * len(self.stages)),
                "candidates": self.spec.fusion.candidates,
            }
            if len(self.stages) > 1
            else None,
            "rerank": [
                {"reranker": r.name, "depth": s.depth, "fuse": s.fuse}
                for r, s in zip(self.rerankers, self.spec.rerank, strict=True)
            ],
        }

    def size_info(self) -> SizeInfo:
        infos = [stage.size_info() for stage in self.stages]

        def total(key: str) -> int:
            return sum(int(value) for info in infos if isinstance(value := info.get(key), int | float))

        return {
            "parameters": total("parameters"),
            "weights_bytes": total("weights_bytes"),
            "index_bytes": total("index_bytes"),
            # the dense stage's vector dimension (a BM25 stage's "dim" is its vocabulary size)
            "dim": next((i["dim"] for i in infos if not str(i.get("index", "")).startswith("sparse")), infos[0]["dim"]),
            "index": " + ".join(str(info.get("index")) for info in infos),
            "stages": infos,
        }

    def conditions(self) -> Conditions:
        return (
            self.stages[0].conditions()
            if len(self.stages) == 1
            else {"stages": [stage.conditions() for stage in self.stages]}
        )


def _text(item: str | Path, reranker: Reranker) -> str:
    """What a text re-ranker reads; an image (query or document) is one line: only ``bi:`` reads images."""
    if isinstance(item, Path):
        raise EmbedlabError(
            f"re-ranker {reranker.name!r} reads text; image queries and documents need a bi-encoder stage",
            expected="'bi:MODEL@DEPTH' with an image or CLIP/SigLIP model",
        )
    return item

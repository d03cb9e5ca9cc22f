"""The retriever contract: index a corpus once, then answer queries as a ``Run``.

Every model kind (dense encoders, BM25) is a retriever, so evaluation, selection and
serving treat them alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from embedlab.cache.store import EmbeddingCache
from embedlab.data.beir import Document
from embedlab.data.types import Run
from embedlab.encoders.base import EncodeStats
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo


class Retriever(ABC):
    label: str

    @abstractmethod
    def index(
        self,
        documents: Iterable[Document],
        *,
        cache: EmbeddingCache | None,
        stats: EncodeStats,
        show_progress: bool = False,
    ) -> None:
        """Read (and encode) the whole corpus."""

    @abstractmethod
    def search(self, queries: dict[str, str], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats) -> Run:
        """All queries at once (batched, cache allowed)."""

    @abstractmethod
    def search_one(self, text: str, k: int) -> list[tuple[str, float]]:
        """One query, end to end, never cached: what a user waits for (latency probes)."""

    def modalities(self) -> frozenset[str]:
        """What it can read, for documents and queries alike: "text", "image"."""
        return frozenset({"text"})

    def search_images(
        self, images: dict[str, Path], k: int, *, cache: EmbeddingCache | None, stats: EncodeStats
    ) -> Run:
        """Image queries (id -> file), all at once; only retrievers with an image tower take them."""
        raise EmbedlabError(f"{self.label} cannot take image queries", hint="use an image or CLIP/SigLIP model")

    def search_image_one(self, image: Path, k: int) -> list[tuple[str, float]]:
        """One image query, end to end, never cached (latency probes)."""
        raise EmbedlabError(f"{self.label} cannot take image queries", hint="use an image or CLIP/SigLIP model")

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """The fingerprint: every setting that changes results."""

    @abstractmethod
    def size_info(self) -> SizeInfo:
        """Parameters, bytes on disk, dim, index memory."""

    @abstractmethod
    def conditions(self) -> Conditions:
        """Device, threads, batch size... next to every speed figure."""


def to_run(query_ids: list[str], scores: np.ndarray, indices: np.ndarray, doc_ids: list[str], name: str) -> Run:
    results: dict[str, dict[str, float]] = {}
    for row, query_id in enumerate(query_ids):
        results[query_id] = {doc_ids[j]: float(s) for s, j in zip(scores[row], indices[row], strict=True) if j >= 0}
    return Run(results, name=name)

"""The encoder contract: subclasses implement ``encode_batch``; the base derives the rest.

Derived once here, for every backend: roles and prompts (E5/BGE-style prefixes),
de-duplication, length-sorted batching (similar lengths share a batch, so dynamic
padding wastes little), L2 normalisation, the embedding cache, progress and timing.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from embedlab.cache.store import EmbeddingCache, text_key
from embedlab.errors import EmbedlabError
from embedlab.payloads import Conditions, SizeInfo
from embedlab.progress import progress_bar

Role = Literal["query", "document"]
UNITS: dict[str, str] = {"query": "queries", "document": "passages"}  # progress units people use
log = logging.getLogger(__name__)


@dataclass
class EncodeStats:
    """What one or more ``encode`` calls did; filled in by the base class."""

    texts: int = 0
    encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    batches: int = 0
    spaces: set[str] = field(default_factory=set)

    @property
    def per_second(self) -> float | None:
        return self.encoded / self.seconds if self.encoded and self.seconds > 0 else None


@dataclass(frozen=True)
class Fingerprint:
    """Everything that changes a vector. Its hash (with role and prompt) is the cache space."""

    kind: str
    model: str
    weights: str
    backend: str
    pooling: str
    normalize: bool
    max_length: int
    precision: str
    query_prompt: str = ""
    document_prompt: str = ""

    def for_role(self, role: Role) -> dict[str, object]:
        values = {k: v for k, v in self.__dict__.items() if k not in {"query_prompt", "document_prompt"}}
        values["role"] = role
        values["prompt"] = self.prompt(role)
        return values

    def prompt(self, role: Role) -> str:
        return self.query_prompt if role == "query" else self.document_prompt

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class Encoder(ABC):
    """Texts (or, for image models, image files) in, float32 vectors out (one row per input)."""

    fingerprint: Fingerprint
    dim: int
    batch_size: int = 32
    modalities: frozenset[str] = frozenset({"text"})  # "text", "image": what the model can encode

    @abstractmethod
    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """Encode texts exactly as given (prompts already added), un-normalised, float32."""

    def encode_role_batch(self, texts: list[str], role: Role) -> np.ndarray:
        """Encode texts for a role.  Most backends need no role (the base has already added the
        role's prompt); backends that apply their own role handling (e.g. an engine that adds
        E5's "query: "/"passage: " itself) override this.  The role is part of the cache key."""
        return self.encode_batch(texts)

    def size_info(self) -> SizeInfo:
        """Parameters, bytes on disk and the like; backends fill in what they know."""
        return {"dim": self.dim}

    def conditions(self) -> Conditions:
        """The settings that speed figures depend on (device, threads, batch size...)."""
        return {"batch_size": self.batch_size, "max_length": self.fingerprint.max_length}

    def encode(
        self,
        texts: Sequence[str],
        *,
        role: Role,
        cache: EmbeddingCache | None = None,
        stats: EncodeStats | None = None,
        show_progress: bool = False,
        use_prompt: bool = True,
        bulk: Callable[[list[str]], np.ndarray] | None = None,
    ) -> np.ndarray:
        """Texts -> vectors through the cache (see :meth:`_encode_keyed`).  ``bulk``: encodes all the
        texts the cache lacks in one call, elsewhere (Ray actors,
        :class:`embedlab.distributed.ray_engine.RayTextEncoder`), with the prompt already applied."""
        if "text" not in self.modalities:
            raise EmbedlabError(
                f"model {self.fingerprint.model!r} cannot encode text (it encodes images only)",
                hint="use a text model, or a two-tower (CLIP/SigLIP) model for text and images",
            )
        prompt = self.fingerprint.prompt(role) if use_prompt else ""
        inputs = [prompt + t for t in texts]
        return self._encode_keyed(
            inputs,
            [text_key(t) for t in inputs],
            lambda rows: self.encode_role_batch([inputs[i] for i in rows], role),
            bulk=None if bulk is None else lambda rows: bulk([inputs[i] for i in rows]),
            description=self.fingerprint.for_role(role),
            unit=UNITS[role],
            longest_first=[len(t) for t in inputs],
            cache=cache,
            stats=stats,
            show_progress=show_progress,
        )

    def encode_images(
        self,
        paths: Sequence[Path],
        *,
        role: Role,
        cache: EmbeddingCache | None = None,
        stats: EncodeStats | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Image files -> vectors through the image tower (rules: :mod:`embedlab.encoders.images`)."""
        from embedlab.encoders.images import encode_images

        return encode_images(self, paths, role=role, cache=cache, stats=stats, show_progress=show_progress)

    def encode_image_batch(self, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed images (n, 3, H, W) float32 -> un-normalised vectors; image models override."""
        raise EmbedlabError(f"model {self.fingerprint.model!r} cannot encode images")

    def _encode_keyed(
        self,
        inputs: Sequence[object],
        keys: list[bytes],
        run_batch: Callable[[list[int]], np.ndarray],
        *,
        bulk: Callable[[list[int]], np.ndarray] | None = None,
        description: dict[str, object],
        unit: str,
        longest_first: list[int],
        cache: EmbeddingCache | None,
        stats: EncodeStats | None,
        show_progress: bool,
    ) -> np.ndarray:
        """The one encode loop (texts and images): cache lookup in the space ``description`` names,
        de-duplication by key, batches of similar size (``longest_first``), cache writes per batch.
        ``bulk`` (rows -> vectors) replaces the batches: every row still to encode in one call."""
        stats = stats if stats is not None else EncodeStats()
        out = np.zeros((len(inputs), self.dim), dtype=np.float32)
        stats.texts += len(inputs)
        if not inputs:
            return out
        space = None
        if cache is not None:
            space = cache.space(description, self.dim)
            stats.spaces.add(space)
            out, found = cache.get(space, keys, self.dim)
            stats.cache_hits += int(found.sum())
            todo = [i for i in range(len(inputs)) if not found[i]]
        else:
            todo = list(range(len(inputs)))
        first: dict[bytes, int] = {}
        for i in todo:
            first.setdefault(keys[i], i)
        unique = sorted(first.values(), key=lambda i: longest_first[i], reverse=True)
        started = time.perf_counter()
        # bulk: one call for every row (elsewhere: its time is not this encoder's, so no timing record)
        size, run = (max(1, len(unique)), bulk) if bulk is not None else (self.batch_size, run_batch)
        with progress_bar(total=len(unique), desc="embed", unit=unit, enabled=show_progress) as bar:
            for start in range(0, len(unique), size):
                rows = unique[start : start + size]
                batch_started = time.perf_counter()
                vectors = self._finish(run(rows))
                out[rows] = vectors
                if cache is not None and space is not None:
                    cache.put(space, [keys[i] for i in rows], vectors)
                    if bulk is None:
                        elapsed = time.perf_counter() - batch_started
                        cache.record_timing(space, len(rows), elapsed, dict(self.conditions()))
                stats.batches += 1
                bar.update(len(rows))
        stats.encoded += len(unique)
        stats.seconds += time.perf_counter() - started
        for i in todo:  # duplicates within the call share the first copy's vector
            if first[keys[i]] != i:
                out[i] = out[first[keys[i]]]
        return out

    def _finish(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise RuntimeError(
                f"{type(self).__name__} encoded a batch to shape {vectors.shape}, expected (n, {self.dim})"
            )
        if self.fingerprint.normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors

"""Re-ranking: a second, more expensive stage that re-scores the top candidates of a search.

A :class:`Reranker` scores (query, text) pairs; higher is better.  The search applies it
to its top N candidates and orders them by the new score (ties: the first stage's order).

- :class:`CrossEncoderReranker`: a cross-encoder (query and passage read together, e.g.
  ``cross-encoder/ms-marco-MiniLM-L-6-v2``, or one trained by ``embedlab finetune --kind
  cross-encoder``) from a local folder, loaded on first use with
  ``transformers.AutoModelForSequenceClassification``; its scores equal
  ``sentence_transformers.CrossEncoder(folder).predict`` for folders saved with an identity
  activation (tested).
- :class:`BiEncoderReranker` (``bi:MODEL``): a (larger) bi-encoder from the model registry
  re-scoring the candidates by the inner product of its query and passage embeddings (e.g.
  all-mpnet-base-v2 over all-MiniLM-L6-v2's top 100): passages go through the embedding cache
  when one is given, so a passage seen for several queries is encoded once.
- :class:`WordOverlapReranker`: deterministic and model-free (the share of the query's
  terms found in the text), for tests and as a cheap example.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from embedlab.cache.store import EmbeddingCache
    from embedlab.encoders.base import Encoder, EncodeStats


@runtime_checkable
class Reranker(Protocol):
    """Scores texts for a query; one float per text, higher is more relevant."""

    name: str

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


class WordOverlapReranker:
    """Score = share of the query's distinct terms (BM25 analysis: stemmed, no stop words) in the text.

    Ties are common by design (scores are fractions); the search keeps the first-stage order
    among them.
    """

    name = "word-overlap"

    def __init__(self) -> None:
        from embedlab.index.lexical import TermAnalyzer

        self._analyzer = TermAnalyzer()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        wanted = set(self._analyzer.terms(query))
        if not wanted:
            return [0.0] * len(texts)
        return [len(wanted & set(self._analyzer.terms(text))) / len(wanted) for text in texts]


class CrossEncoderReranker:
    """A sequence-classification cross-encoder from a local folder (``config.json``, weights, tokenizer).

    Score = the single logit of a one-label model (MS MARCO cross-encoders), else the logit
    of the last label ("relevant") of a multi-label one.  Loaded lazily and once, thread-safe.
    """

    def __init__(
        self, folder: str | Path, *, max_length: int | None = None, batch_size: int = 16, device: str = "cpu"
    ) -> None:
        self.folder = Path(folder)
        check_cross_encoder_folder(self.folder, role="re-ranker")
        self.name = f"cross-encoder:{self.folder.name}"
        self.max_length = max_length  # None: the tokenizer's own limit (what CrossEncoder.predict uses), <= 512
        self.batch_size = batch_size
        self.device = device
        self._model: Any = None  # transformers' model and tokenizer, loaded on first use
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is not None:
                return self._tokenizer, self._model
            try:
                import torch  # noqa: F401
                from transformers import AutoModelForSequenceClassification, AutoTokenizer
            except ImportError:
                raise EmbedlabError(
                    "cross-encoder re-ranking needs torch and transformers", hint="pip install torch transformers"
                ) from None
            try:
                tokenizer = AutoTokenizer.from_pretrained(str(self.folder))
                model = AutoModelForSequenceClassification.from_pretrained(str(self.folder))
            except (OSError, ValueError) as err:
                raise EmbedlabError(
                    f"cannot load the cross-encoder ({' '.join(str(err).split())[:200]})", path=self.folder
                ) from None
            model.eval()
            model.to(self.device)
            self._tokenizer, self._model = tokenizer, model
            return tokenizer, model

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        import torch

        tokenizer, model = self._load()
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = list(texts[start : start + self.batch_size])
                inputs = tokenizer(
                    [query] * len(batch),
                    batch,
                    padding=True,
                    truncation=True,
                    max_length=self.max_length or min(MAX_LENGTH, tokenizer.model_max_length),
                    return_tensors="pt",
                ).to(self.device)
                logits = model(**inputs).logits
                column = logits[:, 0] if logits.shape[1] == 1 else logits[:, -1]
                out.extend(float(v) for v in column.float().cpu())
        return out


MAX_LENGTH = 512  # tokenizers without a limit report model_max_length = 1e30


def check_cross_encoder_folder(folder: Path, *, role: str, allow_embedding: bool = False) -> None:
    """One clear line when ``folder`` cannot serve as a cross-encoder: no ``config.json``, or an
    embedding model (bi-encoder) where a re-ranker is wanted.  ``allow_embedding``: a training
    base may be an embedding model (it gets a new classification head)."""
    from embedlab.encoders.resolve import folder_kind

    if not (folder / "config.json").is_file():
        raise EmbedlabError(
            "not a cross-encoder folder (no config.json)",
            path=folder,
            expected="a local folder saved by transformers (config.json, weights, tokenizer)",
            hint="train one with `embedlab finetune --kind cross-encoder`, or copy one "
            "(e.g. cross-encoder/ms-marco-MiniLM-L-6-v2) here",
        )
    if not allow_embedding and folder_kind(folder) == "embedding":
        raise EmbedlabError(
            f"the {role} folder is a bi-encoder (embedding model), not a cross-encoder",
            path=folder,
            expected="a sequence-classification model (config.json architectures: *ForSequenceClassification)",
            hint=f"to re-score with embeddings write 'bi:{folder}@DEPTH'; "
            "to make a cross-encoder from it: embedlab finetune --kind cross-encoder --base ...",
        )


class BiEncoderReranker:
    """Score = <query embedding, passage embedding> of an embedding model (the dense retriever's
    score, so a model gives the same scores as a re-ranker as it does as a first stage).

    A passage's vector does not depend on the query, so a pipeline encodes its corpus ahead, at
    index time (:meth:`precompute`, through the embedding cache), as a dense index does: re-scoring
    then costs one query encoding and ``depth`` dot products.  Passages not pre-encoded (a
    collection's chunks when serving) are encoded per query, and not kept.
    """

    reads_images = True  # queries and passages may be image files (``Path``): its model's towers read them

    PREFIX = "bi:"

    def __init__(self, model: str) -> None:
        from embedlab.encoders.registry import check_model_exists, entry_for
        from embedlab.encoders.spec import parse_model_spec

        self.spec = parse_model_spec(model)
        check_model_exists(self.spec)  # a cross-encoder folder given as bi: is one line there
        entry = entry_for(self.spec)
        if entry is not None and entry.lexical:
            raise EmbedlabError(
                f"'{self.PREFIX}{model}' is a lexical model, not a bi-encoder",
                expected=f"{self.PREFIX}EMBEDDING-MODEL, e.g. bi:all-mpnet-base-v2",
            )
        self.name = f"{self.PREFIX}{self.spec.name}"
        self.cache: EmbeddingCache | None = None  # set by the caller (evaluation); None when serving
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()
        self._vectors: dict[str | tuple[str, str], np.ndarray] = {}  # text, or ("image", path) -> vector

    def encoder(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                from embedlab.encoders.registry import load_encoder

                self._encoder = load_encoder(self.spec)
            return self._encoder

    def precompute(
        self,
        texts: Sequence[str | Path],
        *,
        cache: EmbeddingCache | None,
        stats: EncodeStats,
        show_progress: bool = False,
    ) -> None:
        """Encode passages ahead (kept in memory: 4 x dim bytes each); a ``Path`` is an image document."""
        unique = [t for t in dict.fromkeys(texts) if _key(t) not in self._vectors]
        self._vectors.update(self._encode(unique, cache=cache, stats=stats, show_progress=show_progress))

    def _encode(
        self, items: list[str | Path], *, cache: EmbeddingCache | None, stats: EncodeStats | None, show_progress: bool
    ) -> dict[str | tuple[str, str], np.ndarray]:
        """Documents -> vectors by key: texts through the text tower, image files through the image tower."""
        out: dict[str | tuple[str, str], np.ndarray] = {}
        encoder = self.encoder()
        texts = [t for t in items if isinstance(t, str)]
        images = [t for t in items if isinstance(t, Path)]
        if texts:
            vectors = encoder.encode(texts, role="document", cache=cache, stats=stats, show_progress=show_progress)
            out.update(zip(texts, vectors, strict=True))
        if images:
            vectors = encoder.encode_images(
                images, role="document", cache=cache, stats=stats, show_progress=show_progress
            )
            out.update(zip(map(_key, images), vectors, strict=True))
        return out

    def score(self, query: str | Path, texts: Sequence[str | Path]) -> list[float]:
        """Inner products with the query's vector; a ``Path`` query or document is an image file (a
        two-stage image pipeline: a cheap backbone's top ``depth`` re-scored by an aligned tower)."""
        if not texts:
            return []
        encoder = self.encoder()
        if isinstance(query, Path):
            q = encoder.encode_images([query], role="query")[0]
        else:
            q = encoder.encode([query], role="query")[0]
        missing = [t for t in dict.fromkeys(texts) if _key(t) not in self._vectors]
        fresh = self._encode(missing, cache=self.cache, stats=None, show_progress=False) if missing else {}
        docs = np.stack([self._vectors[_key(t)] if _key(t) in self._vectors else fresh[_key(t)] for t in texts])
        return [float(v) for v in docs @ q]


def _key(item: str | Path) -> str | tuple[str, str]:
    """A document's key among a bi-encoder's kept vectors: its text, or ("image", path)."""
    return item if isinstance(item, str) else ("image", str(item))


def stage_scores(previous: Sequence[float], new: Sequence[float], *, weight: float) -> list[float]:
    """A re-rank stage's ordering score: the re-ranker's own (``weight`` 0, ``fuse=last``), or
    ``weight * minmax(previous) + (1 - weight) * minmax(new)`` over the re-scored candidates
    (``fuse=weighted:W``).  Min-max puts both on [0, 1] (a cosine and a logit are not comparable
    as they are); see :func:`embedlab.search.fusion.normalised` for the reference."""
    from embedlab.search.fusion import normalised

    if weight == 0:
        return [float(v) for v in new]
    a, b = normalised(previous, "minmax"), normalised(new, "minmax")
    return [weight * x + (1.0 - weight) * y for x, y in zip(a, b, strict=True)]


def load_reranker(name: str) -> Reranker:
    """``word-overlap``, ``bi:MODEL`` or a local cross-encoder folder."""
    if name == WordOverlapReranker.name:
        return WordOverlapReranker()
    if name.startswith(BiEncoderReranker.PREFIX):
        return BiEncoderReranker(name[len(BiEncoderReranker.PREFIX) :])
    path = Path(name).expanduser()
    if path.is_dir():
        return CrossEncoderReranker(path)
    raise EmbedlabError(
        f"unknown re-ranker {name!r}",
        expected=f"{WordOverlapReranker.name!r}, a local cross-encoder folder or bi:MODEL",
        hint=f"an embedding model re-scores as 'bi:{name}'; train a cross-encoder with "
        "`embedlab finetune --kind cross-encoder`",
    )

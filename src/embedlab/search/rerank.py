"""Re-ranking: a second, more expensive stage that re-scores the top candidates of a search.

A :class:`Reranker` scores (query, text) pairs; higher is better.  The search applies it
to its top N candidates and orders them by the new score (ties: the first stage's order).

- :class:`CrossEncoderReranker`: a cross-encoder (query and passage read together, e.g.
  ``cross-encoder/ms-marco-MiniLM-L-6-v2``, or one trained by ``embedlab finetune --kind
  cross-encoder``) from a local folder, loaded on first use with
  ``transformers.AutoModelForSequenceClassification``; its scores equal
  ``sentence_transformers.CrossEncoder(folder).predict`` for folders saved with an identity
  activation (tested).
- :class:`WordOverlapReranker`: deterministic and model-free (the share of the query's
  terms found in the text), for tests and as a cheap example.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from embedlab.errors import EmbedlabError


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


def load_reranker(name: str) -> Reranker:
    """``word-overlap`` or a local cross-encoder folder."""
    if name == WordOverlapReranker.name:
        return WordOverlapReranker()
    path = Path(name).expanduser()
    if path.is_dir():
        return CrossEncoderReranker(path)
    raise EmbedlabError(
        f"unknown re-ranker {name!r}",
        expected=f"{WordOverlapReranker.name!r} or a local cross-encoder folder",
        hint="no cross-encoder is available offline here; see README 'Search a document library'",
    )

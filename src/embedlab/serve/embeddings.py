"""``POST /v1/embeddings`` and ``GET /v1/models``, compatible with OpenAI's API (what LangChain,
LlamaIndex and most RAG stacks speak; the official ``openai`` client works against it).

Each served model (``embedlab serve --model NAME``, and a collection's own model) answers to two
ids: ``NAME`` embeds documents (the model's document prompt) and ``NAME:query`` embeds queries
(its query prompt), so a RAG stack embeds its questions the way the collection was indexed.

Request: ``input`` (a string or a list of up to ``max_inputs`` non-empty strings; token arrays
are refused: send text), ``model``, ``encoding_format`` (``float``, or ``base64``: the
little-endian float32 bytes), ``dimensions`` (keep the first N dimensions, re-normalised when the
model normalises: meaningful for Matryoshka-trained models, e.g. ``embedlab finetune
--matryoshka``; for others it is a plain truncation that loses quality), ``user`` (ignored).
Texts longer than the model's maximum length are truncated to it, as sentence-transformers
does; ``usage.prompt_tokens`` counts the tokens actually embedded (the model's tokenizer,
special tokens included; whitespace-separated words for models without one).

Errors are OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400
``invalid_request_error`` for bad input, 404 ``model_not_found``, 401 for a missing key, 413 for
a body over the limit, 503 ``server_busy`` with ``Retry-After`` when the batching queue is full.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pydantic_core
from pydantic import BaseModel, ConfigDict, ValidationError

from embedlab.encoders.base import Encoder, Role

QUERY_SUFFIX = ":query"
MAX_INPUTS = 2048
_WORDS = re.compile(r"\S+")


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        kind: str = "invalid_request_error",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.param, self.kind, self.code = message, status, param, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def openai_error_body(message: str, *, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    return OpenAIError(message, kind=kind, code=code).body()


@dataclass
class ServedModel:
    """A model served on /v1/embeddings: its public id, its encoder, how it counts tokens."""

    id: str
    encoder: Encoder

    @property
    def max_tokens(self) -> int:
        return int(self.encoder.fingerprint.max_length)

    def count_tokens(self, texts: list[str]) -> int:
        tokenizer = getattr(self.encoder, "tokenizer", None)
        if tokenizer is not None and hasattr(tokenizer, "encode_batch"):  # truncates like the encoder
            return sum(len(e.ids) for e in tokenizer.encode_batch([t.strip() for t in texts]))
        return sum(min(len(_WORDS.findall(t)), self.max_tokens) for t in texts)


class EmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


@dataclass(frozen=True)
class EmbeddingJob:
    """What one request asks of a model's batcher."""

    texts: list[str]
    role: Role


def parse_request(
    raw: Any, models: dict[str, ServedModel], *, max_inputs: int = MAX_INPUTS
) -> tuple[EmbeddingsRequest, ServedModel, EmbeddingJob]:
    """Validate a request body (already JSON-decoded); :class:`OpenAIError` names the bad field."""
    try:
        request = EmbeddingsRequest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise OpenAIError(f"{where}: {first['msg']}", param=where) from None
    model, role = resolve_model(request.model, models)
    texts = _texts(request.input, max_inputs=max_inputs)
    if request.dimensions is not None and not 1 <= request.dimensions <= model.encoder.dim:
        raise OpenAIError(
            f"dimensions must be between 1 and {model.encoder.dim} for {model.id!r}, got {request.dimensions}",
            param="dimensions",
        )
    return request, model, EmbeddingJob(texts=texts, role=role)


def resolve_model(name: str, models: dict[str, ServedModel]) -> tuple[ServedModel, Role]:
    if name in models:
        return models[name], "document"
    if name.endswith(QUERY_SUFFIX) and name[: -len(QUERY_SUFFIX)] in models:
        return models[name[: -len(QUERY_SUFFIX)]], "query"
    known = ", ".join(sorted(model_ids(models))) or "none"
    raise OpenAIError(
        f"The model {name!r} does not exist on this server (served: {known})",
        status=404,
        param="model",
        code="model_not_found",
    )


def model_ids(models: dict[str, ServedModel]) -> list[str]:
    return [i for m in models for i in (m, m + QUERY_SUFFIX)]


def _texts(value: Any, *, max_inputs: int) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise OpenAIError("input must be a string or a list of strings", param="input")
    if not items:
        raise OpenAIError("input must not be an empty list", param="input")
    if len(items) > max_inputs:
        raise OpenAIError(
            f"input has {len(items)} items; this server takes at most {max_inputs} per request", param="input"
        )
    for n, item in enumerate(items):
        if isinstance(item, int | list):
            raise OpenAIError("token arrays are not supported: send the text", param=f"input.{n}")
        if not isinstance(item, str):
            raise OpenAIError(f"input.{n} must be a string, got {type(item).__name__}", param=f"input.{n}")
        if not item.strip():
            raise OpenAIError(f"input.{n} is empty", param=f"input.{n}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise OpenAIError(f"input.{n} is not valid Unicode (a lone surrogate)", param=f"input.{n}") from None
    return items


def response_body(
    request: EmbeddingsRequest, model: ServedModel, job: EmbeddingJob, vectors: np.ndarray
) -> dict[str, Any]:
    if request.dimensions is not None:
        vectors = vectors[:, : request.dimensions]
        if model.encoder.fingerprint.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    data = []
    for index, row in enumerate(vectors):
        embedding: list[float] | str = (
            base64.b64encode(row.tobytes()).decode("ascii") if request.encoding_format == "base64" else row.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = model.count_tokens(job.texts)
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def to_json(body: dict[str, Any]) -> bytes:
    """The response bytes, rendered by pydantic-core's serializer (Rust) instead of ``json.dumps``.

    Why: a response carries hundreds of floats per text, and rendering them was the event loop's
    largest single cost under load (a 384-float response: 153 us with ``json.dumps``, 18 us here,
    measured on this project's 2-core CI machine; py-spy put ``json.dumps`` at a quarter of the
    loop thread's samples).  Floats come out as the shortest repr that round-trips, as with
    ``json.dumps``, so clients read back the same float32 values.
    """
    return pydantic_core.to_json(body)


def models_body(models: dict[str, ServedModel], *, created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": created, "owned_by": "embedlab"} for i in model_ids(models)],
    }

"""A deterministic fake encoder for tests: feature hashing of lower-cased word tokens.

It behaves like a crude bag-of-words model (texts sharing words get similar vectors), so
search and metrics mean something in tests, with no weights to load.  Options: ``dim``
(64) and ``delay_ms``, a fixed sleep per batch so tests can control latency.

Not offered to users: importing this module registers the model ``hashing``, which the
tests do through ``EMBEDLAB_PLUGINS=embedlab.encoders.fake`` (tests/conftest.py).
"""

from __future__ import annotations

import hashlib
import re
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.encoders.base import Encoder, Fingerprint
from embedlab.encoders.registry import register_model
from embedlab.encoders.spec import ModelSpec
from embedlab.payloads import SizeInfo

_WORD = re.compile(r"\w+")


class HashingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dim: int = Field(default=64, gt=0)
    delay_ms: float = Field(default=0.0, ge=0)


class HashingEncoder(Encoder):
    def __init__(self, spec: ModelSpec) -> None:
        options = HashingOptions.model_validate(spec.options)
        self.dim = options.dim
        self.delay = options.delay_ms / 1000.0
        self.batch_size = spec.batch_size
        self.fingerprint = Fingerprint(
            kind="hashing",
            model=spec.model,
            weights=f"hashing-v1-{self.dim}",
            backend="numpy",
            pooling=spec.pooling or "sum",
            normalize=spec.normalize if spec.normalize is not None else True,
            max_length=spec.max_length or 512,
            precision="fp32",
            query_prompt=spec.query_prompt,
            document_prompt=spec.document_prompt,
        )

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        if self.delay:
            time.sleep(self.delay)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in _WORD.findall(text.lower())[: self.fingerprint.max_length]:
                digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
        return out

    def size_info(self) -> SizeInfo:
        return {"dim": self.dim, "parameters": 0, "weights_bytes": 0, "source": "built in"}


register_model("hashing", options=HashingOptions)(HashingEncoder)

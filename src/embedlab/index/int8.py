"""``int8``: scalar quantization, one byte per dimension (4x smaller than float32).

Each dimension's range ``[low, high]`` is calibrated on the indexed vectors and cut into 256
levels: ``code = round((x - low) / step) - 128`` with ``step = (high - low) / 255``.  By default
the range is the dimension's minimum and maximum (``range_quantile=1``): no value is clipped,
so every coordinate is off by at most half a step (~1/510 of its range), and the rare extreme
coordinates, which are what separates documents along that dimension, stay right.  A lower
quantile (e.g. 0.999) shrinks the step a little at the cost of clipping those tails; it is an
option for vectors with a few huge outliers.

Search is the float query against the decoded codes, computed without decoding the matrix:
``q . x^ = (q * step) . code + q . (low + 128 * step)``, block by block (bounded memory).
With ``rescore=N`` the float rows are kept as well (memory then grows by 4 bytes per
dimension) and the best ``max(N, k)`` int8 candidates are re-scored exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.index.base import register_index
from embedlab.index.coded import CodedIndex, rescore
from embedlab.index.exact import blocked_top_k

ENCODE_BLOCK = 65_536  # rows quantized at once (bounds the float temporaries)


def calibrate(vectors: np.ndarray, *, quantile: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension ``(low, step)``: the range [min, max] (or the quantile range) in 255 steps."""
    if quantile >= 1.0:
        low = vectors.min(axis=0).astype(np.float32)
        high = vectors.max(axis=0).astype(np.float32)
    else:
        low = np.quantile(vectors, 1.0 - quantile, axis=0).astype(np.float32)
        high = np.quantile(vectors, quantile, axis=0).astype(np.float32)
    step = ((high - low) / 255.0).astype(np.float32)
    step[step <= 0] = 1.0  # a constant dimension: every code is -128, decoded exactly to ``low``
    return low, step


def quantize(vectors: np.ndarray, low: np.ndarray, step: np.ndarray) -> np.ndarray:
    codes = np.empty(vectors.shape, np.int8)
    for start in range(0, len(vectors), ENCODE_BLOCK):
        block = np.asarray(vectors[start : start + ENCODE_BLOCK], np.float32)
        levels = np.clip(np.rint((block - low) / step), 0, 255)
        codes[start : start + ENCODE_BLOCK] = (levels - 128).astype(np.int8)
    return codes


def dequantize(codes: np.ndarray, low: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (codes.astype(np.float32) + 128.0) * step + low


def int8_top_k(
    queries: np.ndarray, codes: np.ndarray, low: np.ndarray, step: np.ndarray, k: int, id_order: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the float queries against the decoded codes, decoded one block at a time."""
    dim = codes.shape[1]
    scaled = queries * step
    bias = scaled.sum(axis=1) * 128.0 + queries @ low
    augmented = np.ascontiguousarray(np.concatenate([scaled, bias[:, None]], axis=1), dtype=np.float32)

    def score(qb: np.ndarray, start: int, stop: int) -> np.ndarray:
        return qb[:, :dim] @ codes[start:stop].T.astype(np.float32) + qb[:, dim:]

    return blocked_top_k(augmented, len(codes), k, score, id_order=id_order, doc_block=8192)


class Int8Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    range_quantile: float = Field(default=1.0, ge=0.9, le=1.0)  # 1: each dimension's [min, max]
    rescore: int = Field(default=0, ge=0, le=100_000)  # 0: no float copy, no rescoring


@register_index
class Int8Index(CodedIndex):
    kind = "int8"
    Options = Int8Options
    FILE = "int8.npz"

    @property
    def _opts(self) -> Int8Options:
        assert isinstance(self.options, Int8Options)  # Options narrows the base type (not an input check)
        return self.options

    @property
    def keeps_vectors(self) -> bool:
        return self._opts.rescore > 0

    def _encode(self) -> None:
        if len(self.vectors):
            self.low, self.step = calibrate(self.vectors, quantile=self._opts.range_quantile)
        else:
            self.low = self.step = np.ones(self.vectors.shape[1], np.float32)
        self.codes = quantize(self.vectors, self.low, self.step)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"codes": self.codes, "low": self.low, "step": self.step}

    def _restore(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        self.codes = self._expect_rows(arrays["codes"].astype(np.int8, copy=False), path, "codes")
        self.low, self.step = arrays["low"].astype(np.float32), arrays["step"].astype(np.float32)

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        codes = self.codes if rows is None else self.codes[rows]
        order = self.id_order if rows is None or self.id_order is None else self.id_order[rows]
        depth = max(k, self._opts.rescore)
        scores, found = int8_top_k(queries, codes, self.low, self.step, depth, order)
        if rows is not None:
            found = rows[found]
        if not self._opts.rescore:
            return scores, found
        return rescore(queries, found, k, lambda at: self.vectors[at], id_order=self.id_order, count=len(self))

    @property
    def memory_bytes(self) -> int:
        floats = self.vectors.nbytes if self.keeps_vectors else 0
        return int(self.codes.nbytes + floats + self.fixed_bytes)

    @property
    def fixed_bytes(self) -> int:
        return int(self.low.nbytes + self.step.nbytes)

"""``binary``: one sign bit per dimension (32x smaller than float32), searched by Hamming
distance in a FAISS binary index, then re-scored.

The first stage packs ``x > 0`` into bits (``faiss.IndexBinaryFlat``, exhaustive Hamming
distance) and keeps the ``rescore`` nearest documents (default ``max(10 * k, 100)``); those
are re-scored with the *float* query against the documents' int8 codes
(``rescore_with=int8``, :mod:`embedlab.index.int8`, 1 byte per dimension more) or their
float32 rows (``rescore_with=float``, 4 bytes per dimension more), and the best ``k`` kept.
That is the recipe of sentence-transformers' ``quantize_embeddings`` + rescoring (Shakir,
Aarsen and Lee, "Binary and Scalar Embedding Quantization", 2024): the bits find the
neighbourhood cheaply, the float query against finer document vectors orders it.
``rescore=0`` returns the Hamming ranking itself, with ``dim - 2 * hamming`` (the inner
product of the +-1 sign vectors) as the score.

FAISS keeps, among documents at the same Hamming distance at the cut-off, those with the
lowest row positions; the final order is score desc, id asc as everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from embedlab.index.base import register_index
from embedlab.index.coded import CodedIndex, rescore
from embedlab.index.faiss_index import faiss_module, one_faiss_thread_if_small
from embedlab.index.int8 import calibrate, dequantize, quantize

PACK_BLOCK = 65_536


def sign_bits(vectors: np.ndarray) -> np.ndarray:
    """``x > 0`` packed 8 dimensions per byte (a dimension count not divisible by 8 is padded
    with zero bits, the same for documents and queries, so Hamming distances are unchanged)."""
    parts = [
        np.packbits(np.asarray(vectors[start : start + PACK_BLOCK]) > 0, axis=1)
        for start in range(0, len(vectors), PACK_BLOCK)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, (vectors.shape[1] + 7) // 8), np.uint8)


class BinaryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rescore: int | None = Field(default=None, ge=0, le=100_000)  # None: max(10 k, 100); 0: Hamming only
    rescore_with: Literal["int8", "float"] = "int8"


@register_index
class BinaryIndex(CodedIndex):
    kind = "binary"
    Options = BinaryOptions
    FILE = "binary.npz"

    @property
    def _opts(self) -> BinaryOptions:
        assert isinstance(self.options, BinaryOptions)  # Options narrows the base type (not an input check)
        return self.options

    @property
    def _rescoring(self) -> bool:
        return self._opts.rescore != 0

    @property
    def keeps_vectors(self) -> bool:
        return self._rescoring and self._opts.rescore_with == "float"

    def _depth(self, k: int) -> int:
        if not self._rescoring:
            return k
        return max(k, self._opts.rescore if self._opts.rescore is not None else max(10 * k, 100))

    def _encode(self) -> None:
        self.dim = self.vectors.shape[1]
        self._index_codes(sign_bits(self.vectors))
        self.store: np.ndarray | None = None
        if self._rescoring and self._opts.rescore_with == "int8":
            if len(self.vectors):
                self.low, self.step = calibrate(self.vectors)
            else:
                self.low = self.step = np.ones(self.dim, np.float32)
            self.store = quantize(self.vectors, self.low, self.step)

    def _index_codes(self, codes: np.ndarray) -> None:
        self.index: Any = faiss_module().IndexBinaryFlat(8 * codes.shape[1])
        self.index.add(np.ascontiguousarray(codes))

    def _codes(self) -> np.ndarray:
        faiss = faiss_module()
        size = self.index.ntotal * self.index.code_size
        flat = faiss.rev_swig_ptr(self.index.xb.data(), size) if size else np.zeros(0, np.uint8)
        return np.array(flat, dtype=np.uint8).reshape(self.index.ntotal, self.index.code_size)

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"bits": self._codes(), "dim": np.asarray([self.dim], np.int64)}
        if self.store is not None:
            arrays.update(store=self.store, low=self.low, step=self.step)
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray], path: Path) -> None:
        self.dim = int(arrays["dim"][0])
        self._index_codes(self._expect_rows(arrays["bits"].astype(np.uint8, copy=False), path, "bits"))
        self.store = None
        if self._rescoring and self._opts.rescore_with == "int8":
            self.store = self._expect_rows(arrays["store"].astype(np.int8, copy=False), path, "int8 store")
            self.low, self.step = arrays["low"].astype(np.float32), arrays["step"].astype(np.float32)

    def _search(self, queries: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        faiss = faiss_module()
        depth = min(self._depth(k), len(self) if rows is None else len(rows))
        bits = sign_bits(queries)
        with one_faiss_thread_if_small(bits.size * len(self)):
            if rows is None:
                hamming, found = self.index.search(bits, depth)
            else:
                selector = faiss.IDSelectorBatch(rows.astype(np.int64))
                params = faiss.SearchParameters(sel=selector)
                hamming, found = self.index.search(bits, depth, params=params)
                del params, selector  # the selector must outlive the search
        if not self._rescoring:
            return (self.dim - 2 * hamming).astype(np.float32), found
        store = self.store
        if store is None:
            return rescore(queries, found, k, lambda at: self.vectors[at], id_order=self.id_order, count=len(self))
        return rescore(
            queries,
            found,
            k,
            lambda at: dequantize(store[at], self.low, self.step),
            id_order=self.id_order,
            count=len(self),
        )

    @property
    def memory_bytes(self) -> int:
        """The packed bits, plus the rescoring store that is kept (int8 codes or float rows)."""
        total = self.index.ntotal * self.index.code_size + self.fixed_bytes
        if self.store is not None:
            total += self.store.nbytes
        if self.keeps_vectors:
            total += self.vectors.nbytes
        return int(total)

    @property
    def fixed_bytes(self) -> int:
        return int(self.low.nbytes + self.step.nbytes) if self.store is not None else 0

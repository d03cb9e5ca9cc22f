"""Pooling heads over token embeddings (the same formulas as sentence-transformers).

mean: sum_t(h_t * m_t) / max(sum_t m_t, 1e-9); cls: h_0; max: max_t over unmasked tokens.
"""

from __future__ import annotations

import numpy as np


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    if mode == "cls":
        return hidden[:, 0, :]
    weights = mask[:, :, None].astype(hidden.dtype)
    if mode == "mean":
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    if mode == "max":
        return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    raise ValueError(f"unknown pooling {mode!r}")


def model_pooling(folder) -> str:
    """The pooling a sentence-transformers folder declares (mean when it declares none)."""
    import json

    config = folder / "1_Pooling" / "config.json"
    if not config.is_file():
        return "mean"
    data = json.loads(config.read_text())
    for mode in ("cls", "max", "mean"):
        key = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens"}[
            mode
        ]
        if data.get(key):
            return mode
    return "mean"

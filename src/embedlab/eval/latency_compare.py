"""Is model B slower than model A?  One rule for every report that compares two latencies.

Two p50s timed minutes apart on a shared machine differ by milliseconds for the same model
(measured: a fine-tune and its base, same architecture, 14.8 vs 10.1 ms p50).  So:

1. Models with the same *shape* -- backend, precision, maximum length, pooling, index kind,
   embedding dimension and parameter count (:func:`same_shape`) -- do the same arithmetic per
   query (a fine-tune and its base; not a quantized, distilled or re-indexed variant); a
   difference in their latencies is not reported from two separate probes.
2. Instead they are timed **interleaved** (:func:`interleaved_samples`): on the same queries,
   A then B on even queries and B then A on odd ones, so load spikes, frequency changes and
   cache state hit both alike and neither always goes first.
3. The per-query pairs are tested with the two-sided paired randomization (sign-flip) test of
   the mean log-latency difference (:func:`embedlab.eval.stats.paired_randomization_test`;
   logs because latency noise is multiplicative and right-skewed, Fisher 1935 / Smucker et al.
   2007 for the test).  p >= alpha: "same latency (p = ...)"; otherwise "B is slower by X ms"
   with X = the median per-query difference (:class:`LatencyComparison`).
4. A significant difference under ``MIN_RATIO`` (10%) is still "same latency": measured, the
   same fine-tuned weights against the same base, exported the same way, timed interleaved in
   two runs of ``embedlab finetune`` on a busy 2-core VM, gave B/A = 1.013 (p = 0.67) and
   1.062 (p = 0.0001): within one process two sessions of one graph can differ by a few
   percent (where their weights landed in memory), which is not a property of the model.

Models of different shape keep their own probes' p50/p95 (their difference is real arithmetic),
but :func:`interleaved_samples` and :func:`compare_latency` apply to them as well.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embedlab.eval.stats import paired_randomization_test

if TYPE_CHECKING:
    from embedlab.encoders.spec import ModelSpec

# from the encoder fingerprint; the index kind too where a report records it (an int8 or binary
# index searches at another cost with the same encoder)
SHAPE_KEYS = ("backend", "precision", "max_length", "pooling", "index", "index_options")
SIZE_KEYS = ("dim", "parameters")  # from size_info
ALPHA = 0.05
MIN_RATIO = 0.10  # smallest relative change reported (point 4 of the module docstring)


def same_shape(
    fingerprint_a: Mapping[str, object],
    fingerprint_b: Mapping[str, object],
    size_a: Mapping[str, object],
    size_b: Mapping[str, object],
) -> bool:
    """Same backend, precision, max length, pooling, dimension and (known) parameter count."""
    if any(fingerprint_a.get(k) != fingerprint_b.get(k) for k in SHAPE_KEYS):
        return False
    if any(size_a.get(k) != size_b.get(k) for k in SIZE_KEYS):
        return False
    return bool(size_a.get("parameters")) or fingerprint_a.get("backend") is not None


@dataclass(frozen=True)
class LatencyComparison:
    a: str
    b: str
    samples: int
    median_a_ms: float
    median_b_ms: float
    difference_ms: float  # median over queries of (B - A)
    ratio: float  # exp(mean(log B - log A)): B's time as a multiple of A's
    p_value: float
    alpha: float
    how: str = "interleaved per-query probe (ABBA), paired sign-flip test on log latency"

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def different(self) -> bool:
        return self.significant and abs(math.log(self.ratio)) > math.log1p(MIN_RATIO)

    def summary(self) -> str:
        """``same latency (p = 0.41)`` or ``<b> is slower by 3.2 ms (p = 0.0001)``."""
        if self.significant and not self.different:
            return f"same latency (within {MIN_RATIO:.0%}: x{self.ratio:.3f}, p = {self.p_value:.2g})"
        if not self.different:
            return f"same latency (p = {self.p_value:.2g})"
        word = "slower" if self.difference_ms > 0 else "faster"
        return f"{self.b} is {word} by {abs(self.difference_ms):.1f} ms (p = {self.p_value:.2g})"

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "different": self.different, "summary": self.summary()}


def interleaved_samples(
    call_a: Callable[[str], object],
    call_b: Callable[[str], object],
    texts: Sequence[str],
    *,
    samples: int,
    seed: int = 0,
    warmup: int = 3,
) -> tuple[list[float], list[float]]:
    """Seconds per call of A and of B on the same ``samples`` texts (seeded choice, as the
    single-model probe makes it), in ABBA order; ``warmup`` calls of each first, untimed."""
    rng = random.Random(seed)
    pool = list(texts)
    chosen = (
        [pool[rng.randrange(len(pool))] for _ in range(samples)] if len(pool) < samples else rng.sample(pool, samples)
    )
    for text in chosen[:warmup]:
        call_a(text)
        call_b(text)
    times_a: list[float] = []
    times_b: list[float] = []
    for i, text in enumerate(chosen):
        order = ((call_a, times_a), (call_b, times_b)) if i % 2 == 0 else ((call_b, times_b), (call_a, times_a))
        for call, times in order:
            started = time.perf_counter()
            call(text)
            times.append(time.perf_counter() - started)
    return times_a, times_b


def compare_latency(
    seconds_a: Sequence[float] | np.ndarray,
    seconds_b: Sequence[float] | np.ndarray,
    *,
    a: str = "A",
    b: str = "B",
    alpha: float = ALPHA,
    seed: int = 0,
) -> LatencyComparison:
    """B against A on paired per-query timings (same queries, same order); see the module docstring."""
    ta, tb = np.asarray(seconds_a, dtype=float), np.asarray(seconds_b, dtype=float)
    if ta.shape != tb.shape or ta.size == 0:
        raise ValueError(f"paired latencies need equal, non-empty samples ({ta.size} vs {tb.size})")
    tiny = 1e-9  # a timer tick of 0 would make log undefined; 1 ns is below any real call
    la, lb = np.log(np.maximum(ta, tiny)), np.log(np.maximum(tb, tiny))
    test = paired_randomization_test(lb, la, seed=seed)
    return LatencyComparison(
        a=a,
        b=b,
        samples=int(ta.size),
        median_a_ms=float(np.median(ta) * 1000.0),
        median_b_ms=float(np.median(tb) * 1000.0),
        difference_ms=float(np.median(tb - ta) * 1000.0),
        ratio=float(math.exp(float(np.mean(lb - la)))),
        p_value=float(test.p_value),
        alpha=alpha,
    )


def probe_pair(
    call_a: Callable[[str], object],
    call_b: Callable[[str], object],
    texts: Sequence[str],
    *,
    a: str,
    b: str,
    samples: int,
    seed: int = 0,
    alpha: float = ALPHA,
) -> LatencyComparison:
    """:func:`interleaved_samples` then :func:`compare_latency`."""
    times_a, times_b = interleaved_samples(call_a, call_b, texts, samples=samples, seed=seed)
    return compare_latency(times_a, times_b, a=a, b=b, alpha=alpha, seed=seed)


def probe_models(
    a: ModelSpec,
    b: ModelSpec,
    *,
    dataset: str | Path,
    split: str,
    samples: int,
    seed: int = 0,
    alpha: float = ALPHA,
    labels: tuple[str, str] | None = None,
) -> LatencyComparison:
    """Two models encoding the same queries of ``dataset`` one at a time, interleaved.  Query
    encoding only: models of the same shape search the same corpus with the same dimension and
    index kind, so the search that follows costs both the same."""
    from embedlab.data.beir import load_dataset
    from embedlab.encoders.registry import load_encoder

    queries = list(load_dataset(dataset, split=split).queries.values())
    enc_a, enc_b = load_encoder(a), load_encoder(b)
    name_a, name_b = labels or (a.name, b.name)
    return probe_pair(
        lambda text: enc_a.encode([text], role="query"),
        lambda text: enc_b.encode([text], role="query"),
        queries,
        a=name_a,
        b=name_b,
        samples=samples,
        seed=seed,
        alpha=alpha,
    )

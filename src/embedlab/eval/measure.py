"""Measurements of the machine at hand: latency percentiles, memory, environment.

Everything here is measured, never estimated, and comes with the conditions under which
it was measured.
"""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from embedlab.payloads import Hardware, Latency

LIBRARIES = (
    "embedlab",
    "numpy",
    "torch",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "sentence-transformers",
    "bm25s",
    "faiss-cpu",
    "pydantic",
)


def percentile_ms(samples: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation, numpy's default) of seconds, in ms."""
    return float(np.percentile(np.asarray(samples) * 1000.0, q))


def latency_probe(
    call: Callable[[str], object], texts: list[str], *, samples: int, seed: int, warmup: int = 3
) -> Latency:
    """Time ``call`` on single texts, one at a time (what a user waits for per query)."""
    if not texts or samples <= 0:
        return {"samples": 0}
    rng = random.Random(seed)
    chosen = (
        [texts[rng.randrange(len(texts))] for _ in range(samples)]
        if len(texts) < samples
        else rng.sample(texts, samples)
    )
    for text in chosen[:warmup]:
        call(text)
    timings = []
    for text in chosen:
        started = time.perf_counter()
        call(text)
        timings.append(time.perf_counter() - started)
    return {
        "samples": len(timings),
        "p50_ms": percentile_ms(timings, 50),
        "p95_ms": percentile_ms(timings, 95),
        "mean_ms": float(np.mean(timings) * 1000.0),
        "warmup": warmup,
    }


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> Hardware:
    import psutil

    info: Hardware = {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_bytes": int(psutil.virtual_memory().total),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": None,
    }
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def library_versions() -> dict[str, str]:
    found: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found

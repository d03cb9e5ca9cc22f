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

from embedlab.eval.load import quietness, wait_until_quiet, watch
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
    call: Callable[[str], object],
    texts: list[str],
    *,
    samples: int,
    seed: int,
    warmup: int = 3,
    repeat: int = 1,
    wait_quiet_s: float = 0.0,
) -> Latency:
    """Time ``call`` on single texts, one at a time (what a user waits for per query), with the
    machine's load during the timing (:func:`embedlab.eval.load.watch`).

    ``repeat`` > 1 runs the whole probe that many times and keeps the quietest one (the least
    CPU taken by other processes and the hypervisor): other work on the machine only ever adds
    to a latency, so the quietest repetition is the best estimate of the model's own cost.
    ``wait_quiet_s`` > 0: before each repetition, wait up to that long for a quiet second
    (:func:`embedlab.eval.load.wait_until_quiet`); the seconds waited are recorded.
    """
    if not texts or samples <= 0:
        return {"samples": 0}
    probes = []
    waited = 0.0
    for _ in range(max(1, repeat)):
        waited += wait_until_quiet(wait_quiet_s)[0]
        with watch() as load:
            latency = _probe_once(call, texts, samples=samples, seed=seed, warmup=warmup)
        probes.append((load.result(), latency))
    kept = min(range(len(probes)), key=lambda i: (quietness(probes[i][0]), probes[i][1]["p95_ms"]))
    quietest, latency = probes[kept]
    latency["machine"] = quietest
    if wait_quiet_s > 0:
        latency["waited_quiet_s"] = round(waited, 2)
    if len(probes) > 1:
        latency["repeats"] = len(probes)
        latency["kept_repeat"] = kept + 1
        latency["p95_ms_per_repeat"] = [p[1]["p95_ms"] for p in probes]
    return latency


def _probe_once(call: Callable[[str], object], texts: list[str], *, samples: int, seed: int, warmup: int) -> Latency:
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

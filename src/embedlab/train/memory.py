"""Resident memory of a fine-tune run, per phase, and what keeps it bounded.

Two readings, because neither alone says where the memory went:

- **peak** (``getrusage(RUSAGE_SELF).ru_maxrss``): the most the process has ever held.  It is
  what ``/usr/bin/time -v`` reports and what runs a laptop out of memory, but it only grows, so
  a phase's own cost is its *rise*: the peak at its end minus the peak at its start (0 when
  the phase stayed below an earlier phase's peak).
- **current** (``/proc/self/statm``, resident pages x page size; psutil elsewhere): what the
  process holds *now*, at the end of the phase.  It shows memory a phase left behind for the
  next (a model, a corpus, an allocator that did not give freed memory back).

Why the allocator matters (measured on all-MiniLM-L6-v2, one MNRL step of 32 SciFact claims +
64 abstracts at 256 tokens, gradient checkpointing on, 2-core Xeon): with glibc's default
malloc the step's peak was 4.16 GB, with large blocks taken from ``mmap`` (``M_MMAP_THRESHOLD``
fixed at 4 MiB) 1.89 GB for the same, bit-identical gradients.  glibc raises its mmap
threshold each time a large block is freed (up to 32 MiB), after which the step's many
attention-sized tensors come from the heap and fragment it; a fixed threshold turns that
adjustment off (mallopt(3)), so freed tensors go back to the system at once.
:func:`bound_allocator` sets it (glibc only; elsewhere it does nothing) for the rest of the
process's life (the CLI's, or the Python caller's of ``finetune``); :func:`release` runs the
garbage collector and ``malloc_trim`` between phases.  Its cost is a page fault per page of each
large tensor, paid again at every allocation (measured below, README "Fine-tuning memory").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from embedlab.eval.measure import current_rss_bytes, peak_rss_bytes

if TYPE_CHECKING:
    from embedlab.train.loop import TrainConfig

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt(3) parameter number in glibc's malloc.h
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024  # measured: see the module docstring
GB = 1024**3  # GB in this module, its tables and --max-memory: 2^30 bytes (ru_maxrss is in KiB)
HEADROOM = 0.9  # share of --max-memory the rule plans for (plan_step docstring)


@dataclass(frozen=True)
class PhaseMemory:
    phase: str
    peak_bytes: int  # ru_maxrss at the end of the phase: the process's peak so far
    rise_bytes: int  # how much this phase raised the peak (0: it stayed below an earlier one)
    current_bytes: int | None  # resident at the end of the phase (None where it cannot be read)
    seconds: float


def rss_now() -> int | None:
    """Resident bytes now: ``/proc/self/statm`` (field 2, pages) on Linux, psutil elsewhere."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            return current_rss_bytes()
        except Exception:  # psutil missing or refused: no current reading, the peak still stands
            return None


class MemoryLog:
    """Phases in order: :meth:`mark` closes the phase that started at the previous mark."""

    def __init__(self) -> None:
        self.phases: list[PhaseMemory] = []
        self._peak = self.start_peak = peak_rss_bytes()
        self._time = time.perf_counter()

    def mark(self, phase: str) -> PhaseMemory:
        peak, now = peak_rss_bytes(), time.perf_counter()
        rss = rss_now()
        point = PhaseMemory(phase, peak, max(0, peak - self._peak), rss, now - self._time)
        self._peak, self._time = peak, now
        self.phases.append(point)
        log.info("memory after %s: peak %s GB (+%s), now %s", phase, _gb(peak), _gb(point.rise_bytes), _gb(rss))
        return point

    def mark_first(self, phase: str) -> None:
        """Mark ``phase`` the first time only (the dev evaluation before any training step)."""
        if all(p.phase != phase for p in self.phases):
            self.mark(phase)

    @property
    def peak_bytes(self) -> int:
        return max([self.start_peak, *(p.peak_bytes for p in self.phases)])

    def as_dict(self) -> dict[str, object]:
        return {
            "peak_rss_bytes": self.peak_bytes,
            "start_peak_rss_bytes": self.start_peak,
            "phases": [p.__dict__ for p in self.phases],
            "allocator": allocator_state(),
            "how": "peak: getrusage ru_maxrss (monotone; rise = the phase's increase of it); "
            "current: /proc/self/statm resident pages at the phase's end",
        }


def memory_rows(memory: Mapping[str, Any]) -> list[dict[str, str]]:
    """Table rows for the card, the report and the terminal: one per phase, then the total."""
    rows = [
        {
            "phase": str(p["phase"]),
            "peak RSS (GB)": _gb(p["peak_bytes"]),
            "rise (GB)": _gb(p["rise_bytes"]),
            "RSS at end (GB)": _gb(p["current_bytes"]),
            "seconds": f"{p['seconds']:.0f}",
        }
        for p in memory.get("phases") or []
    ]
    total = _gb(memory.get("peak_rss_bytes"))
    rows.append({"phase": "whole run", "peak RSS (GB)": total, "rise (GB)": "", "RSS at end (GB)": "", "seconds": ""})
    return rows


MEMORY_COLUMNS = ["phase", "peak RSS (GB)", "rise (GB)", "RSS at end (GB)", "seconds"]
MEMORY_NOTE = (
    "Peak RSS: the process's resident peak so far (getrusage ru_maxrss, what /usr/bin/time -v reports); "
    "rise: how much the phase raised it; RSS at end: resident when the phase ended (/proc/self/statm)."
)


def _gb(value: object) -> str:
    return f"{value / GB:.2f}" if isinstance(value, int) else "n/a"


_ALLOCATOR: dict[str, object] = {"mmap_threshold_bytes": None}


def bound_allocator(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (see the module docstring); False where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    if ok:
        _ALLOCATOR["mmap_threshold_bytes"] = threshold
    return ok


def allocator_state() -> dict[str, object]:
    return dict(_ALLOCATOR)


def release() -> None:
    """Free what the finished phase left unreferenced and give the heap's free top back."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (musl has neither: not glibc)
    except (OSError, AttributeError):
        return None
    return libc


# --- --max-memory: the training step's texts per forward pass -------------------------------

ACTIVATION_FACTOR = 3.6  # K below, fitted to the measurement in the module docstring


@dataclass(frozen=True)
class StepPlan:
    """What ``--max-memory`` chose, and the figures it chose from (recorded in finetune.json)."""

    budget_bytes: int
    fixed_bytes: int  # resident before training + gradients, AdamW moments and the best copy
    per_text_bytes: int
    texts_per_step: int  # queries + positives + negatives of one batch
    texts_per_forward: int  # what fits; == texts_per_step when the plain step fits
    loss: str
    mini_batch_size: int


def per_text_bytes(*, layers: int, hidden: int, intermediate: int, heads: int, length: int) -> int:
    """Activation bytes one text of ``length`` tokens costs a checkpointed step (fp32):

        4 * (layers * T * d  +  K * (h * T^2 + T * (d + d_ff)))

    the first term is the hidden state kept at every layer boundary (what gradient checkpointing
    keeps), the second one layer recomputed with its gradients during the backward pass
    (attention scores, probabilities and dropout mask: h * T^2 each; projections and the
    feed-forward: T * (d + d_ff)); K = ``ACTIVATION_FACTOR`` = 3.6 is fitted to the measured
    step (64 abstracts at T = 256 on all-MiniLM-L6-v2: 1.35 GB above the loaded model = 21 MB
    a text).  An estimate for sizing, not a guarantee: the dev evaluation and the verdict have
    their own peaks, recorded per phase."""
    kept = layers * length * hidden
    recomputed = ACTIVATION_FACTOR * (heads * length * length + length * (hidden + intermediate))
    return int(4 * (kept + recomputed))


def plan_step(
    *,
    max_memory_gb: float,
    resident_bytes: int,
    parameters: int,
    per_text: int,
    batch_size: int,
    texts_per_example: int,
    loss: str,
    mini_batch_size: int,
) -> StepPlan:
    """The largest forward pass that fits ``max_memory_gb``: the batch's texts at once when
    they fit (the loss unchanged), else ``cached-mnrl`` with that many texts per mini-batch
    (same loss value and gradients, computed in pieces; :mod:`embedlab.train.loop`).

    fixed = resident now + 16 bytes a parameter (gradient, AdamW's two moments, the best
    checkpoint's copy); texts per forward = floor((0.9 x budget - fixed) / per_text).  The 10%
    headroom: without it a 1.3 GB budget gave a 1.36 GB training peak (SciFact smoke slice,
    cached-mnrl with 25 texts per mini-batch).  It bounds the training step only; the verdict's
    ONNX export and encoding have their own peak (1.6 GB on that slice), recorded per phase."""
    from embedlab.errors import EmbedlabError

    budget = int(max_memory_gb * GB)
    fixed = resident_bytes + 16 * parameters
    fits = (int(HEADROOM * budget) - fixed) // per_text
    texts = batch_size * texts_per_example
    if fits < 1:
        raise EmbedlabError(
            f"--max-memory {max_memory_gb:g} GB is below what training needs",
            found=f"{fixed / GB:.2f} GB before the first text, {per_text / GB * 1024:.0f} MB a text",
            expected=f"at least {(fixed + per_text) / HEADROOM / GB:.2f} GB",
            hint="raise --max-memory or lower --max-length",
        )
    if fits >= texts:
        return StepPlan(budget, fixed, per_text, texts, texts, loss, mini_batch_size)
    if loss not in ("mnrl", "cached-mnrl"):
        raise EmbedlabError(
            f"--max-memory {max_memory_gb:g} GB needs mini-batches, which only mnrl has",
            found=f"--loss {loss}: {texts} texts a step, {fits} fit",
            hint="use --loss mnrl, a smaller --batch-size or a larger --max-memory",
        )
    return StepPlan(budget, fixed, per_text, texts, int(fits), "cached-mnrl", int(fits))


def budget_config(config: TrainConfig, model: Any, *, texts_per_example: int) -> tuple[TrainConfig, StepPlan | None]:
    """``config`` with the loss and mini-batch ``--max-memory`` calls for (unchanged without it)."""
    if config.max_memory_gb is None:
        return config, None
    hf = model[0].auto_model.config
    per_text = per_text_bytes(
        layers=hf.num_hidden_layers,
        hidden=hf.hidden_size,
        intermediate=getattr(hf, "intermediate_size", 4 * hf.hidden_size),
        heads=hf.num_attention_heads,
        length=config.max_length or model.max_seq_length,
    )
    release()
    plan = plan_step(
        max_memory_gb=config.max_memory_gb,
        resident_bytes=rss_now() or peak_rss_bytes(),
        parameters=sum(p.numel() for p in model.parameters()),
        per_text=per_text,
        batch_size=config.batch_size,
        texts_per_example=texts_per_example,
        loss=config.loss,
        mini_batch_size=config.mini_batch_size,
    )
    log.info(
        "--max-memory %g GB: %d of %d texts per forward pass -> loss %s, mini-batch %d",
        config.max_memory_gb,
        plan.texts_per_forward,
        plan.texts_per_step,
        plan.loss,
        plan.mini_batch_size,
    )
    return replace(config, loss=plan.loss, mini_batch_size=plan.mini_batch_size), plan

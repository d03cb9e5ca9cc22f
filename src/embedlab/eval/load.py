"""How busy the machine was while something was timed: load average, CPU steal, and the CPU
other processes took, so that a latency measured on a loaded machine says so.

A latency is the model's own cost *plus* whatever the machine was doing meanwhile: a p95 of
109 ms on a busy machine is 18.8 ms on a quiet one.  Three signals, each cheap to read:

- **load average** (``os.getloadavg``, 1 minute): runnable + uninterruptible tasks, an
  exponentially damped average (time constant 1 minute), so it lags a burst by tens of seconds;
- **steal** (``/proc/stat``, Linux): the share of CPU time the hypervisor gave to other guests,
  ``Δsteal / Δtotal`` over the timed window (the ``st`` column of ``top``/``vmstat``);
- **other processes** (``/proc/stat`` minus this process's ``os.times``): the share of all CPUs'
  time that went to work other than ours during the window,
  ``(Δ(total − idle − iowait − steal) − Δown) / Δtotal`` — it sees a burst at once.

The machine counts as **busy** when the load average exceeds ``0.75 × CPUs``, steal exceeds 5%,
or other processes took more than 25% of the machine during the timing (the last only when the
window spans at least ``MIN_JIFFIES`` clock ticks: ``/proc/stat`` counts in 10 ms ticks).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from embedlab.payloads import MachineLoad

LOAD_PER_CPU = 0.75
MAX_STEAL = 0.05
MAX_OTHER = 0.25
MIN_JIFFIES = 10


def usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _load_average() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):  # Windows
        return None


def _cpu_ticks() -> tuple[int, int, int] | None:
    """(total, busy, steal) clock ticks summed over all CPUs since boot, from ``/proc/stat``.

    Fields: user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    already inside user/nice, so the total is the first eight.
    """
    try:
        with open("/proc/stat") as handle:
            first = handle.readline().split()
    except OSError:
        return None
    if not first or first[0] != "cpu" or len(first) < 9:
        return None
    values = [int(v) for v in first[1:9]]
    total = sum(values)
    idle, iowait, steal = values[3], values[4], values[7]
    return total, total - idle - iowait - steal, steal


def _own_ticks() -> float:
    times = os.times()
    return (times.user + times.system) * os.sysconf("SC_CLK_TCK")


@dataclass
class LoadWatch:
    """Readings at the start of a timed window; :meth:`result` closes it."""

    cpus: int = field(default_factory=usable_cpus)
    started: float = field(default_factory=time.perf_counter)
    load_start: float | None = field(default_factory=_load_average)
    ticks_start: tuple[int, int, int] | None = field(default_factory=_cpu_ticks)
    own_start: float = field(default_factory=_own_ticks)
    ended: MachineLoad | None = None

    def stop(self) -> MachineLoad:
        ticks, own = _cpu_ticks(), _own_ticks()
        load_end = _load_average()
        loads = [x for x in (self.load_start, load_end) if x is not None]
        out: MachineLoad = {
            "seconds": time.perf_counter() - self.started,
            "cpus": self.cpus,
            "load_average_1m": max(loads) if loads else None,
            "steal_percent": None,
            "other_cpu_percent": None,
        }
        if ticks is not None and self.ticks_start is not None:
            total = ticks[0] - self.ticks_start[0]
            if total > 0:
                out["steal_percent"] = 100.0 * (ticks[2] - self.ticks_start[2]) / total
                if total >= MIN_JIFFIES:
                    others = (ticks[1] - self.ticks_start[1]) - (own - self.own_start)
                    out["other_cpu_percent"] = min(100.0, max(0.0, 100.0 * others / total))
        out["busy_because"] = busy_because(out)
        out["busy"] = bool(out["busy_because"])
        self.ended = out
        return out

    def result(self) -> MachineLoad:
        if self.ended is None:
            raise RuntimeError("the load watch is still running")
        return self.ended


@contextmanager
def watch() -> Iterator[LoadWatch]:
    """Measure the machine's load over the ``with`` block (read it with ``.result()`` after)."""
    w = LoadWatch()
    try:
        yield w
    finally:
        w.stop()


def busy_because(load: MachineLoad) -> str:
    """Why the machine counts as busy ("" when it does not); thresholds in the module docstring."""
    reasons = []
    average, cpus = load.get("load_average_1m"), load["cpus"]
    if average is not None and average > LOAD_PER_CPU * cpus:
        reasons.append(f"load average {average:.2f} on {cpus} CPUs (> {LOAD_PER_CPU:g} per CPU)")
    steal = load.get("steal_percent")
    if steal is not None and steal > 100 * MAX_STEAL:
        reasons.append(f"CPU steal {steal:.1f}% (> {100 * MAX_STEAL:g}%)")
    other = load.get("other_cpu_percent")
    if other is not None and other > 100 * MAX_OTHER:
        reasons.append(f"other processes took {other:.0f}% of the CPUs (> {100 * MAX_OTHER:g}%)")
    return "; ".join(reasons)


def quietness(load: MachineLoad) -> tuple[bool, float, float]:
    """Sort key, quietest first: not busy, then the least CPU lost to others, then load average."""
    lost = (load.get("other_cpu_percent") or 0.0) + (load.get("steal_percent") or 0.0)
    return bool(load.get("busy")), lost, load.get("load_average_1m") or 0.0


def wait_until_quiet(
    max_seconds: float, *, window_s: float = 1.0, sleep: Callable[[float], None] = time.sleep
) -> tuple[float, MachineLoad | None]:
    """Wait, up to ``max_seconds``, for one ``window_s`` window in which the machine is quiet.

    Quiet here means the *instantaneous* signals are below their thresholds: other processes
    took at most ``MAX_OTHER`` of the CPUs and steal was at most ``MAX_STEAL`` over the window.
    The 1-minute load average is left out on purpose: it lags a burst that has ended by tens of
    seconds, so waiting on it would wait for history, not for the machine.  Returns the seconds
    waited and the last window's readings (``None`` when nothing was waited for); when the
    machine never got quiet the caller times anyway, and the busy timing is flagged as before.
    """
    if max_seconds <= 0:
        return 0.0, None
    window_s = min(window_s, max_seconds)  # never wait longer than asked, even for one window
    started = time.perf_counter()
    last: MachineLoad | None = None
    while True:
        with watch() as w:
            sleep(window_s)
        last = w.result()
        other, steal = last.get("other_cpu_percent"), last.get("steal_percent")
        quiet = (other is None or other <= 100 * MAX_OTHER) and (steal is None or steal <= 100 * MAX_STEAL)
        waited = time.perf_counter() - started
        if quiet or waited + window_s > max_seconds:
            return waited, last


def describe(load: MachineLoad) -> str:
    """One line for a conditions list: ``load 1.20/2 CPUs, steal 0.0%, others 12% (quiet)``."""
    parts = []
    if load.get("load_average_1m") is not None:
        parts.append(f"load {load['load_average_1m']:.2f}/{load['cpus']} CPUs")
    if load.get("steal_percent") is not None:
        parts.append(f"steal {load['steal_percent']:.1f}%")
    if load.get("other_cpu_percent") is not None:
        parts.append(f"others {load['other_cpu_percent']:.0f}%")
    verdict = f"BUSY: {load['busy_because']}" if load.get("busy") else "quiet"
    return f"{', '.join(parts) or 'load not measurable here'} ({verdict})"

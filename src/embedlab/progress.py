"""Progress that follows the log level and the terminal.

On a terminal: a tqdm bar, as users of sentence-transformers expect. Without one (CI logs, ``nohup``,
stderr redirected to a file) a bar prints nothing useful -- a 14-minute ``index build`` printed nothing
between two lines -- so a one-line log message through the ``embedlab`` logger takes its place: counts,
rate in the caller's unit ("passages/s") and an ETA, at most every :data:`LOG_EVERY_S` seconds and only
when the work has passed another :data:`LOG_STEP` of the total since the last line (whichever comes later),
so a long run writes about ten lines and a short one none.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Protocol, TextIO

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0
LOG_STEP = 0.10


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...

    def __enter__(self) -> Progress: ...

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> object: ...


def progress_bar(*, total: int, desc: str, unit: str, enabled: bool, stream: TextIO | None = None) -> Progress:
    """A bar on a terminal, periodic log lines elsewhere, nothing when not ``enabled`` or logging is above INFO.

    ``unit`` is a plural noun people use ("passages", "queries", "files"); ``stream`` is where a bar
    would go (default stderr) and decides terminal or not."""
    target = sys.stderr if stream is None else stream
    show = enabled and logging.getLogger("embedlab").getEffectiveLevel() <= logging.INFO
    if show and not _is_tty(target):
        return LogProgress(total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show, leave=False, unit=f" {unit}", dynamic_ncols=True, file=target)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stream-like object without a terminal
        return False


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``1 h 05 min``: the way people say a wait."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class LogProgress:
    """Progress as log lines: ``desc: 300/1000 passages (30%), 12.5 passages/s, ETA 56 s``.

    A line is written when both :data:`LOG_EVERY_S` seconds have passed since the last one and the count
    has reached the next multiple of :data:`LOG_STEP` x total (short of the total); ``close`` writes the final
    line, with the time taken, only if the work lasted at least :data:`LOG_EVERY_S` (a short step stays
    quiet). Times come from ``time.monotonic``."""

    def __init__(self, *, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.count = 0
        self.started = self.last_time = time.monotonic()
        self.next_step = 1
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last_time < LOG_EVERY_S or not 0 < self.count < self.total:
            return  # too soon, or finished: the last line is close()'s, with the time taken
        step = int(self.count / self.total / LOG_STEP + 1e-9)  # 10%-steps reached so far
        if step < self.next_step:
            return
        self.next_step = step + 1
        self.last_time = now
        log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        share = f" ({100 * self.count / self.total:.0f}%)" if self.total > 0 else ""
        text = f"{self.desc}: {self.count}/{self.total} {self.unit}{share}, {_rate(rate)} {self.unit}/s"
        if self.count < self.total and rate > 0:
            text += f", ETA {duration((self.total - self.count) / rate)}"
        return text

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = time.monotonic()
        if now - self.started >= LOG_EVERY_S:
            log.info("%s, done in %s", self.line(now), duration(now - self.started))

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _rate(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"

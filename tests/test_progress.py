"""Progress without a terminal: periodic one-line log messages (counts, rate, ETA) instead of a bar,
driven by a fake clock so the 30 s / 10 % rule is checked exactly."""

from __future__ import annotations

import io
import logging

import pytest

import embedlab.progress as progress
from embedlab.progress import LogProgress, duration, progress_bar


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress.time, "monotonic", fake)  # only this module's clock is read
    return fake


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "embedlab.progress"]


def test_non_tty_logs_every_30_s_and_10_percent_whichever_comes_later(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="embedlab")
    bar = progress_bar(total=1000, desc="embed", unit="passages", enabled=True, stream=io.StringIO())
    assert isinstance(bar, LogProgress)
    with bar:
        clock.now += 10
        bar.update(500)  # 50 % but only 10 s: too soon
        clock.now += 25
        bar.update(10)  # 35 s, 51 %: a line
        clock.now += 5
        bar.update(50)  # 5 s after it: too soon
        clock.now += 40
        bar.update(5)  # 45 s after it, but 56.5 % has not reached the next step (60 %): quiet
        clock.now += 40
        bar.update(135)  # 70 %, 85 s after the last line: a line
        clock.now += 40
        bar.update(300)  # 100 %: left to close(), which adds the time taken
    # 510 / 35 s = 14.57/s, ETA 490 / 14.57 = 33.6 s; 700 / 120 s = 5.83/s, ETA 300 / 5.83 = 51.4 s;
    # 1000 / 160 s = 6.25/s, printed with one decimal (round half to even: 6.2)
    assert _lines(caplog) == [
        "embed: 510/1000 passages (51%), 14.6 passages/s, ETA 34 s",
        "embed: 700/1000 passages (70%), 5.8 passages/s, ETA 51 s",
        "embed: 1000/1000 passages (100%), 6.2 passages/s, done in 2 min 40 s",
    ]


def test_a_short_step_writes_nothing(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="embedlab")
    with progress_bar(total=3, desc="search dense", unit="queries", enabled=True, stream=io.StringIO()) as bar:
        for _ in range(3):
            clock.now += 1
            bar.update(1)
    assert _lines(caplog) == []


def test_disabled_or_quiet_logging_writes_nothing(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="embedlab")
    for enabled in (True, False):
        bar = progress_bar(total=10, desc="index", unit="files", enabled=enabled, stream=io.StringIO())
        assert not isinstance(bar, LogProgress)  # a disabled tqdm: silent
        with bar:
            clock.now += 100
            bar.update(10)
    assert _lines(caplog) == []


def test_a_terminal_gets_a_tqdm_bar_with_the_unit(caplog: pytest.LogCaptureFixture) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    caplog.set_level(logging.INFO, logger="embedlab")
    screen = Terminal()
    with progress_bar(total=4, desc="index", unit="files", enabled=True, stream=screen) as bar:
        assert not isinstance(bar, LogProgress)
        bar.update(4)
    assert "index" in screen.getvalue() and "files/s" in screen.getvalue() and "txt" not in screen.getvalue()


@pytest.mark.parametrize(
    ("seconds", "said"), [(0.4, "0 s"), (59.6, "1 min 00 s"), (200, "3 min 20 s"), (3900, "1 h 05 min")]
)
def test_durations_read_as_people_say_them(seconds: float, said: str) -> None:
    assert duration(seconds) == said

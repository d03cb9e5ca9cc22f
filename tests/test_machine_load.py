"""Latency under load: the machine's load is measured during every timing, a busy machine is
flagged (log line, report mark), and ``--repeat`` keeps the quietest run.

The busy cases start real CPU-burning processes (one more than the usable CPUs) during the probe.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from embedlab.cli.main import main
from embedlab.eval.load import busy_because, quietness, usable_cpus, wait_until_quiet
from embedlab.eval.measure import latency_probe
from embedlab.payloads import MachineLoad
from tests.helpers import single_char_dataset

BURN = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"  # ends itself if orphaned


@contextmanager
def burners() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(usable_cpus() + 1)]
    try:
        time.sleep(0.3)  # they start burning before the timing does
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _work(_: str) -> None:
    end = time.perf_counter() + 0.004
    while time.perf_counter() < end:
        pass


def test_a_cpu_burner_during_the_probe_is_seen_and_flagged() -> None:
    with burners():
        latency = latency_probe(_work, ["a", "b", "c"], samples=60, seed=0)
    machine = latency["machine"]
    # the burners are cpus + 1 processes on cpus CPUs: whatever our probe gets, they take most of it
    assert machine["other_cpu_percent"] is not None and machine["other_cpu_percent"] > 40
    assert machine["busy"] and "other processes took" in machine.get("busy_because", "")
    assert machine["cpus"] == usable_cpus() and machine["seconds"] > 0.2


def test_repeat_keeps_the_quietest_run() -> None:
    calls = {"n": 0}
    state: dict[str, list[subprocess.Popen[bytes]]] = {}

    def work(text: str) -> None:
        calls["n"] += 1
        if calls["n"] == 3 + 60:  # the first repetition (3 warm-up + 60 timed) is over: stop burning
            for proc in state["procs"]:
                proc.kill()
                proc.wait()
            time.sleep(0.2)
        _work(text)

    with burners() as procs:
        state["procs"] = procs
        latency = latency_probe(work, ["a", "b"], samples=60, seed=0, repeat=2)
    assert latency["repeats"] == 2 and len(latency["p95_ms_per_repeat"]) == 2
    assert latency["kept_repeat"] == 2  # the repetition without the burners
    assert latency["p95_ms"] == latency["p95_ms_per_repeat"][1]


def _load(**values: float | None) -> MachineLoad:
    base: MachineLoad = {
        "seconds": 1.0,
        "cpus": 4,
        "load_average_1m": 0.5,
        "steal_percent": 0.0,
        "other_cpu_percent": 2.0,
    }
    base.update(values)  # type: ignore[typeddict-item]  # test data: keys are MachineLoad's
    return base


def test_thresholds_on_load_average_steal_and_other_processes() -> None:
    assert busy_because(_load()) == ""
    assert "load average 3.10 on 4 CPUs" in busy_because(_load(load_average_1m=3.1))  # > 0.75 x 4
    assert busy_because(_load(load_average_1m=2.9)) == ""
    assert "steal 7.5%" in busy_because(_load(steal_percent=7.5))
    assert "other processes took 30%" in busy_because(_load(other_cpu_percent=30.0))
    assert busy_because(_load(load_average_1m=None, steal_percent=None, other_cpu_percent=None)) == ""
    quiet, loud = _load(busy=False), _load(busy=True, other_cpu_percent=50.0)
    assert min([loud, quiet], key=quietness) is quiet


def test_eval_cli_flags_a_busy_machine_in_the_log_and_the_reports(tmp_path: Path, capsys) -> None:
    dataset = single_char_dataset(tmp_path / "synth", n_queries=20)
    out = tmp_path / "out"
    args = ["eval", "-d", str(dataset), "-m", "hashing:delay_ms=3", "--out", str(out), "--no-cache"]
    with burners():
        code = main([*args, "--latency-queries", "40", "--repeat", "2", "--no-progress"])
    assert code == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "machine busy while timing" in line]
    assert len(warnings) == 1 and "--repeat" in warnings[0]
    summary = json.loads((out / "summary.json").read_text())
    measured = summary["results"][0]["embedlab"]["measurements"]
    assert measured["conditions"]["machine"]["busy"] is True
    assert measured["latency"]["repeats"] == 2 and "machine" not in measured["latency"]
    page = (out / "report.html").read_text()
    assert 'class="fail busy"' in page and "WARNING: the machine was busy" in page
    markdown = (out / "report.md").read_text()
    assert "!" in markdown.split("## Results")[1].split("\n\n")[1]  # the p95 cell carries the mark
    assert "machine during timing: " in markdown and "BUSY: " in markdown


def test_wait_quiet_keeps_waiting_while_other_processes_burn_then_times_anyway() -> None:
    with burners():
        waited, load = wait_until_quiet(1.0, window_s=0.25)
    # never quiet: it waits until one more window would pass the limit (>= 3 windows of 0.25 s), no longer
    assert 0.7 <= waited <= 1.0 + 0.5  # 0.5 s: scheduling slack of the last sleep on a loaded machine
    assert load is not None and load["other_cpu_percent"] is not None and load["other_cpu_percent"] > 25
    assert wait_until_quiet(0) == (0.0, None)  # 0: no wait, no reading


def test_wait_quiet_is_recorded_and_checked(tmp_path: Path, capsys) -> None:
    dataset = single_char_dataset(tmp_path / "synth", n_queries=10)
    out = tmp_path / "out"
    args = ["eval", "-d", str(dataset), "-m", "hashing", "--out", str(out), "--no-cache", "--no-progress"]
    assert main([*args, "--latency-queries", "5", "--wait-quiet", "0.5"]) == 0
    latency = json.loads((out / "summary.json").read_text())["results"][0]["embedlab"]["measurements"]["latency"]
    assert 0 <= latency["waited_quiet_s"] <= 0.5 + 0.5  # at most the limit plus one window's slack
    capsys.readouterr()
    assert main([*args[:-4], "--out", str(tmp_path / "o2"), "--wait-quiet", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "latency_wait_quiet_s" in err[0] and "-1" in err[0]

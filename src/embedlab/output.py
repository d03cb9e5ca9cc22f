"""Where results go: checked before the work starts, written as one set at the end.

An evaluation can run for an hour; finding out only then that ``--out`` is a file, a device
or a read-only folder wastes that hour.  So every command that writes results first makes
sure the folder can be created and written (a probe file is created and removed; folders
the probe had to create are removed again, so a run that fails later leaves nothing).

The results of one run belong together (per-model JSON, runs, summary, reports): they are
written into a hidden staging folder inside ``--out`` and moved into place only when all of
them were written.  A write that fails (a full disk) removes the staging folder, so none of
this run's files appear next to an earlier run's, and the error names ``--out``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from embedlab.atomic import WriteError, fsync_dir, fsync_tree, write_error
from embedlab.errors import EmbedlabError

_STAGE_PREFIX = ".embedlab-writing-"


def output_error(path: Path, reason: str, *, option: str = "--out") -> EmbedlabError:
    return EmbedlabError(f"{option} {path}: cannot write results there: {reason}")


def _reason(err: BaseException, path: Path) -> str:
    if isinstance(err, WriteError):
        return err.reason
    converted = write_error(err, path)
    if converted is not None:
        return converted.reason
    if isinstance(err, OSError):
        where = f" ({os.fsdecode(err.filename)})" if err.filename and Path(os.fsdecode(err.filename)) != path else ""
        return f"{err.strerror or err}{where}"
    return str(err)


def check_output_folder(path: str | Path, *, option: str = "--out") -> None:
    """Fail now, with one line, unless ``path`` is (or can be made) a folder we can write in."""
    path = Path(path)
    reason = _probe(path)
    if reason is not None:
        raise output_error(path, reason, option=option)


def check_output_file(path: str | Path, *, option: str = "--out") -> None:
    """Fail now unless ``path`` can be written as a regular file (its folder writable; not a
    folder, a device or a pipe: writing there would hang, fill a device or be lost)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise output_error(path, "it is a folder" if path.is_dir() else "it is not a regular file", option=option)
    reason = _probe(path.parent)
    if reason is not None:
        raise output_error(path, reason.replace("it exists", f"{path.parent} exists"), option=option)


def _probe(path: Path) -> str | None:
    """Why ``path`` cannot be written as a folder, or None: created if missing, a probe file
    written and removed; folders made here are removed again (deepest first, only while empty)."""
    if path.exists() and not path.is_dir():
        return "it exists and is not a folder"
    created: list[Path] = []
    folder = path
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".embedlab-probe-", dir=path)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        return _reason(err, path)
    finally:
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()
    return None


@contextlib.contextmanager
def result_set(out: str | Path, *, option: str = "--out") -> Iterator[Path]:
    """Yield an empty staging folder; write the run's files into it with the layout they should
    have under ``out``.  When the block ends without error they are moved into ``out`` (each
    with an atomic rename); on any error the staging folder is removed and nothing of this run
    appears, and an error of the environment is one line naming ``out``."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=_STAGE_PREFIX, dir=out))
    except OSError as err:
        raise output_error(out, _reason(err, out), option=option) from None
    try:
        try:
            yield stage
            fsync_tree(stage)
            _move_into(stage, out)
        except (OSError, WriteError) as err:  # anything the file system said while writing here
            raise output_error(
                out, f"{_reason(err, out)}; none of this run's results were written", option=option
            ) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _move_into(stage: Path, out: Path) -> None:
    files = sorted(p for p in stage.rglob("*") if p.is_file())
    targets = [out / p.relative_to(stage) for p in files]
    for target in targets:  # checked before the first move, so a conflict moves nothing
        if target.is_dir():
            raise EmbedlabError(
                f"{target} is a folder where a result file should go", hint="remove it or choose another --out"
            )
    for source, target in zip(files, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    for folder in sorted({t.parent for t in targets}):
        fsync_dir(folder)


def moved(paths: list[Path], stage: Path, out: Path) -> list[Path]:
    """Where files written under ``stage`` ended up under ``out``."""
    return [out / p.relative_to(stage) for p in paths]

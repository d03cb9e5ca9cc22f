"""Atomic file writes: write a temporary file in the same folder, fsync, rename.

A crash at any moment leaves either the old file or the new one, never half of one.

Permissions: ``tempfile.mkstemp``/``mkdtemp`` create 0600 files and 0700 folders, which
would make every result, index and cache file private whatever the user's umask says.  The
temporary file (folder) is therefore given ``0o666 & ~umask`` (``0o777 & ~umask``) before
the rename -- what ``open()``/``mkdir()`` would have given it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from embedlab.errors import EmbedlabError


def current_umask() -> int:
    """The process umask, read without changing it where possible.

    ``os.umask`` can only be read by setting it, and it is process-wide: another thread
    creating a file in between would get the temporary value.  So Linux's
    ``/proc/self/status`` (``Umask:`` line, kernel 4.7+) is read instead, fresh each call;
    elsewhere the value is read once (set to the strictest 0o077 for that instant, so a racing
    thread's file is only ever *more* private, then restored) and cached for the process."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _umask_once()


@functools.cache
def _umask_once() -> int:
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path``; on success it replaces ``path`` atomically.  A full
    disk, a quota, a read-only file system or a denied folder is one :class:`WriteError` naming
    ``path`` and the free space (the temporary file is removed, the old ``path`` stays)."""
    with disk_errors(path), _atomic_open(path, mode, encoding=encoding) as handle:
        yield handle


@contextlib.contextmanager
def _atomic_open(path: str | Path, mode: str, *, encoding: str | None) -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())  # mkstemp made it 0600: use the umask
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a whole folder atomically: fill the empty temporary sibling this yields; on success
    its files are fsynced and it is renamed to ``target`` (when another process finished the
    same folder first, theirs is kept); on failure it is removed.  A folder at ``target`` is
    therefore always complete."""
    target = Path(target)
    with disk_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        os.chmod(work, 0o777 & ~current_umask())  # mkdtemp makes it 0700; give it the user's umask
        yield work
        with disk_errors(target):
            fsync_tree(work)
            try:
                os.replace(work, target)
            except OSError:
                if not target.is_dir():
                    raise
        fsync_dir(target.parent)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file and folder below ``folder`` (deepest first) before it becomes visible."""
    for item in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if item.is_file():
            fd = os.open(item, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            fsync_dir(item)
    fsync_dir(folder)


# ----------------------------------------------------------------------------- the environment refusing a write

# errors that say the place cannot take the data (not that the data or the code is wrong)
_ENVIRONMENT = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "the file is too large for this file system",
}
_SQLITE_FULL = 13  # primary result code (sqlite3.h): "database or disk is full"


class WriteError(EmbedlabError):
    """Data could not be written under ``path`` because of the environment: full disk, quota,
    read-only file system, permissions.  ``reason`` is the short text (with the free space
    when space ran out), for callers that report the failure under another name (``--out``)."""

    def __init__(self, path: str | Path, reason: str, *, code: int | None = None) -> None:
        self.reason = reason
        self.code = code
        hint = "free some space or choose another folder" if code in (errno.ENOSPC, errno.EDQUOT) else None
        super().__init__(f"cannot write there: {reason}", path=path, hint=hint)


def free_space(path: str | Path) -> str:
    """Free bytes on the file system holding ``path`` (its nearest existing folder), for messages."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"
    for unit in ("B", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TB"  # pragma: no cover


def write_error(err: BaseException, path: str | Path) -> WriteError | None:
    """``err`` as a :class:`WriteError` about ``path`` when the environment refused the write
    (an ``OSError`` with one of the errnos above, SQLite's "database or disk is full");
    None for anything else, which stays the error it is."""
    if isinstance(err, WriteError):
        return err
    code: int | None = None
    if isinstance(err, OSError) and err.errno in _ENVIRONMENT:
        code = err.errno
        reason = err.strerror or _ENVIRONMENT[code]
    elif isinstance(err, sqlite3.OperationalError) and (
        (getattr(err, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL or "disk is full" in str(err)
    ):
        code, reason = errno.ENOSPC, str(err)
    else:
        return None
    if code in (errno.ENOSPC, errno.EDQUOT):
        reason += f" ({free_space(path)} free there)"
    return WriteError(path, reason, code=code)


def _concerns(err: OSError, path: Path) -> bool:
    """The error is about ``path``, its folder or an ancestor (or names no file: a write to our handle)."""
    if err.filename is None:
        return True
    other = Path(os.fsdecode(err.filename)).absolute()
    here = path.absolute()
    return other == here or other.parent == here.parent or other in here.parents


@contextlib.contextmanager
def disk_errors(path: str | Path) -> Iterator[None]:
    """Turn the environment refusing a write under ``path`` into one :class:`WriteError`; errors
    about other files (a caller reading something inside the block) pass through unchanged."""
    path = Path(path)
    try:
        yield
    except (OSError, sqlite3.OperationalError) as err:
        if isinstance(err, OSError) and not _concerns(err, path):
            raise
        converted = write_error(err, path)
        if converted is None:
            raise
        raise converted from None

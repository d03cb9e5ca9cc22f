"""``embedlab`` console script, and the one place where a failure becomes an exit status.

The rule at this boundary.  Readers convert every fault they can pin to a file and a line
into an ``EmbedlabError`` themselves (``data/lines.py``, the collection and cache readers);
what is caught here is the last safety net, classified by what the exception *proves*:

Exit 2, one line ``embedlab: error: ...`` -- the input or the environment is at fault:

- ``EmbedlabError``: our own input checks (file, line, found, expected, hint).
- ``OSError`` with an errno that only the environment causes (:data:`ENVIRONMENT_ERRNOS`:
  ENOENT, EACCES, EPERM, ENOSPC, EDQUOT, EROFS, EISDIR, ENOTDIR, EEXIST, ENAMETOOLONG, ELOOP,
  EMFILE, ENFILE, EIO, EFBIG, EBUSY, ETXTBSY, EXDEV, ENXIO, ENODEV, ENOMEM, EADDRINUSE, ...):
  the line names the file(s) the OS names; for ENOSPC/EDQUOT it adds the free space of that
  file system (``shutil.disk_usage``).
- ``MemoryError``: the machine ran out of memory (the line names the command and peak memory).
- ``sqlite3.Error`` whose primary result code blames the disk or the file (FULL, IOERR,
  CANTOPEN, READONLY, PERM, BUSY, LOCKED, CORRUPT, NOTADB).

Exit 130: Ctrl-C.

Exit 70 (``EX_SOFTWARE``), the full traceback and a line asking to report it -- a bug:
everything else.  That includes ``TypeError``/``AttributeError``/``KeyError`` from our code,
and also ``ValueError``, ``UnicodeError``, ``json.JSONDecodeError``, ``zlib.error``,
``EOFError``, ``RecursionError`` or an ``OSError`` without an errno that reached this far:
they carry no file name, so they mean a reader failed to check its input, which is a bug to
fix in that reader, not to hide here.  ``-vv`` also prints the traceback of exit-2 errors.
"""

from __future__ import annotations

import argparse
import errno
import logging
import shutil
import sqlite3
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from embedlab import __version__
from embedlab.errors import EmbedlabError

log = logging.getLogger("embedlab")


def _parser() -> argparse.ArgumentParser:
    from embedlab.cli import (
        completion_cmd,
        encode_cmd,
        eval_cmd,
        finetune_cmd,
        index_cmd,
        models_cmd,
        monitor_cmd,
        select_cmd,
        serve_cmd,
        shrink_cmd,
        simulate_cmd,
        tune_cmd,
    )
    from embedlab.cli.help import use_formatter

    parser = argparse.ArgumentParser(prog="embedlab", description="Trustworthy decisions about embedding models.")
    parser.add_argument("--version", action="version", version=f"embedlab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    eval_cmd.add_parser(sub)
    select_cmd.add_parser(sub)
    shrink_cmd.add_parser(sub)
    tune_cmd.add_parser(sub)
    index_cmd.add_parser(sub)
    encode_cmd.add_parser(sub)
    finetune_cmd.add_parser(sub)
    serve_cmd.add_parser(sub)
    monitor_cmd.add_parser(sub)
    simulate_cmd.add_parser(sub)
    models_cmd.add_parser(sub)
    completion_cmd.add_parser(sub)
    use_formatter(parser)  # defaults shown, examples kept verbatim, in every sub-command's --help
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(message)s" if verbose == 0 else "%(asctime)s %(name)s %(levelname)s %(message)s")
    )
    root = logging.getLogger("embedlab")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


EXIT_INPUT = 2
EXIT_BUG = 70  # sysexits.h EX_SOFTWARE: distinct from 1 (`eval`: a model failed) and 2 (bad input)

ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOENT",
        "EACCES",
        "EPERM",
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "EISDIR",
        "ENOTDIR",
        "EEXIST",
        "ENOTEMPTY",
        "ENAMETOOLONG",
        "ELOOP",
        "EMFILE",
        "ENFILE",
        "EIO",
        "EFBIG",
        "EBUSY",
        "ETXTBSY",
        "EXDEV",
        "ENXIO",
        "ENODEV",
        "ENOMEM",
        "EADDRINUSE",
        "EADDRNOTAVAIL",
        "ECONNREFUSED",
        "ECONNRESET",
        "EPIPE",
        "ETIMEDOUT",
        "ESTALE",
        "EOVERFLOW",
    )
    if hasattr(errno, name)
)
_SQLITE_ENVIRONMENT = {
    3: "PERM",
    5: "BUSY",
    6: "LOCKED",
    8: "READONLY",
    10: "IOERR",
    11: "CORRUPT",
    13: "FULL",
    14: "CANTOPEN",
    26: "NOTADB",
}  # primary result codes (sqlite3.h)


def _human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def free_space(path: str | Path) -> str | None:
    """``"1.2 GiB free of 20.0 GiB"`` for the file system holding ``path`` (or its nearest existing parent)."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return f"{_human_bytes(usage.free)} free of {_human_bytes(usage.total)} on the file system of {folder}"


def _peak_memory() -> str | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return f"peak memory {_human_bytes(kib * 1024)}"


def classify(err: BaseException, *, command: str) -> EmbedlabError | None:
    """The one-line error for an input or environment fault; ``None`` for a bug (see the module docstring)."""
    if isinstance(err, EmbedlabError):
        return err
    if isinstance(err, OSError) and err.errno is not None and err.errno in ENVIRONMENT_ERRNOS:
        name = errno.errorcode.get(err.errno, str(err.errno))
        where = None
        if err.filename is not None:
            where = str(err.filename) + (f" -> {err.filename2}" if err.filename2 is not None else "")
        message = f"{err.strerror or err} [{name}]"
        hint = None
        if err.errno in {errno.ENOSPC, getattr(errno, "EDQUOT", -1)}:
            space = free_space(err.filename) if err.filename is not None else None
            hint = (
                f"{space}; free some space there, or write elsewhere"
                if space
                else "free some disk space (the system did not say which file was being written)"
            )
        elif where is None:
            hint = "the system did not say which file; run with -vv for the traceback"
        return EmbedlabError(message, path=where, hint=hint)
    if isinstance(err, MemoryError):
        return EmbedlabError(
            f"out of memory while running `embedlab {command}`",
            found=_peak_memory(),
            hint="use smaller inputs or batches, or a machine with more memory",
        )
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        sqlite_name = _SQLITE_ENVIRONMENT.get(code & 0xFF) if isinstance(code, int) else None
        if sqlite_name is not None:
            return EmbedlabError(
                f"database error: {err} [SQLITE_{sqlite_name}]",
                hint="a database file (embedding cache, chunks.sqlite, feedback.sqlite) is damaged, locked or "
                "on a full or read-only disk; run with -vv for the traceback",
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("embedlab: interrupted; finished work is kept (cache), no result files were written", file=sys.stderr)
        return 130
    except Exception as err:  # the boundary: every exception gets an exit status
        known = classify(err, command=args.command)
        if known is None:
            traceback.print_exc(file=sys.stderr)
            print(
                f"embedlab: internal error ({type(err).__name__}): this is a bug in embedlab {__version__}, "
                "not a problem with your input; please report it with the command line and the traceback "
                "above",
                file=sys.stderr,
            )
            return EXIT_BUG
        if not isinstance(err, EmbedlabError):
            log.debug("traceback of the error below", exc_info=err)
        print(f"embedlab: error: {' '.join(known.one_line().splitlines())}", file=sys.stderr)  # one line, always
        return EXIT_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

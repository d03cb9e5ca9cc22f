"""Which files of a library folder are read, and how: the rules that keep a hostile folder contained.

A library is whatever a user points us at, so a folder must not be able to leak files from
elsewhere, hang the indexer, or exhaust memory:

- **Links.**  A symbolic link (to a file or a folder) whose target resolves outside the
  library root is skipped ("link to outside the library"), unless the collection was built
  with ``follow_links`` (``index build --follow-links``).  Links inside the root work.  A
  folder is read at most once (by device and inode), so link loops end.  Hidden files and
  folders (name starting with ``.``) are left out silently.
- **Only regular files are opened.**  FIFOs, sockets and devices (also behind a link, e.g.
  to ``/dev/zero``) are skipped by their ``stat`` before any ``open``: opening a FIFO blocks
  and opening some devices has side effects.  The open itself is non-blocking and the type
  is checked again on the open file, so a file swapped for a FIFO meanwhile cannot hang it.
- **Caps per file** (:class:`LibraryRules`), each skipping the file with one line naming
  the cap and the option that raises it: pages per PDF (counted on the page tree before any
  text is extracted, so a page-tree bomb costs nothing), text bytes per file (the size of a
  text, Markdown or HTML file, checked before reading it; the extracted text of a PDF) and
  chunks per file.
- **Names.**  A file or folder name that is not valid UTF-8 cannot be a document id (ids are
  stored, printed and sent as JSON): it is skipped, and shown with ``\\xNN`` escapes.
- **Exclusions.**  ``--exclude`` globs and the library's ``.embedlabignore`` leave files and
  folders out on purpose (:mod:`embedlab.data.ignore`); each is listed as skipped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from embedlab.data.ignore import Excluder, compile_pattern
from embedlab.errors import EmbedlabError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAGES = 5_000
DEFAULT_MAX_TEXT_BYTES = 50_000_000
DEFAULT_MAX_CHUNKS = 50_000
OUTSIDE_LINK = "link to outside the library"


@dataclass(frozen=True)
class LibraryRules:
    """How a library folder is read; stored in a collection's manifest so that updates read alike."""

    follow_links: bool = False
    max_pages: int = DEFAULT_MAX_PAGES  # per PDF
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES  # per file
    max_chunks: int = DEFAULT_MAX_CHUNKS  # per file
    exclude: tuple[str, ...] = ()  # globs of files and folders left out (see embedlab.data.ignore)

    def __post_init__(self) -> None:
        if not isinstance(self.follow_links, bool):
            raise EmbedlabError("invalid follow_links", found=repr(self.follow_links), expected="True or False")
        if not isinstance(self.exclude, tuple) or not all(isinstance(glob, str) for glob in self.exclude):
            raise EmbedlabError("invalid exclude", found=repr(self.exclude), expected="a tuple of glob strings")
        for glob in self.exclude:
            compile_pattern(glob, source="--exclude")
        for name, option in _OPTIONS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise EmbedlabError(f"invalid {option}", found=repr(value), expected="a whole number > 0")


_OPTIONS = {"max_pages": "--max-pages", "max_text_bytes": "--max-text-mb", "max_chunks": "--max-chunks"}
DEFAULT_RULES = LibraryRules()


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) of a library that is not indexed, with the one-line reason."""

    path: Path
    reason: str


def over_cap(what: str, cap: str, limit: str, *, path: Path | None = None) -> EmbedlabError:
    """The error for a file over one of the caps: names the cap and the option that raises it."""
    return EmbedlabError(
        f"{what}, over the limit of {limit} per file",
        path=path,
        hint=f"raise it with `index build --replace {_OPTIONS[cap]} N`",
    )


def megabytes(count: int) -> str:
    """A size for a person: bytes below a kilobyte, else MB with three significant digits."""
    return f"{count} bytes" if count < 1000 else f"{count / 1_000_000:.3g} MB"


# ----------------------------------------------------------------------------- names


def printable(name: str) -> str:
    """``name`` for a terminal, a log or JSON: undecodable bytes (surrogate escapes) become ``\\xNN`` and
    control characters their escape, so a hostile name can neither break a line nor an encoder."""
    if name.isprintable():
        return name
    out = []
    for char in name:
        if "\udc80" <= char <= "\udcff":
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def display_path(path: Path, root: Path) -> str:
    """The POSIX path of ``path`` relative to ``root`` (its document id), printable."""
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = str(path)
    return printable(relative)


def _undecodable(name: str) -> bool:
    return any("\udc80" <= char <= "\udcff" for char in name)


# ----------------------------------------------------------------------------- links and file types


def _inside(target: str, root: str) -> bool:
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _not_regular(mode: int) -> str:
    return f"not a regular file ({_kind(mode)}); only regular files are read"


def _link_problem(path: Path, root_real: str, rules: LibraryRules) -> str | None:
    """Why the link ``path`` is not followed, or ``None`` when it may be."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "link loop (the link leads back to itself)"
        if err.errno == errno.ENOENT:
            return "broken link (its target does not exist)"
        return f"cannot follow link ({err.strerror or err})"
    if not rules.follow_links and not _inside(os.path.realpath(path), root_real):
        return f"{OUTSIDE_LINK} (--follow-links indexes it)"
    return None


def check_path(path: Path, root: Path, rules: LibraryRules) -> os.stat_result:
    """The ``stat`` of the regular file ``path`` of the library ``root``; an error when the rules refuse it.

    Checked before anything opens the file: the link rule (the whole path resolved, so a
    linked parent folder counts too) and the file type.
    """
    root_real = os.path.realpath(root)
    if not rules.follow_links and not _inside(os.path.realpath(path), root_real):
        raise EmbedlabError(OUTSIDE_LINK, path=path, hint="--follow-links indexes it")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise EmbedlabError("broken link (its target does not exist)", path=path) from None
        raise EmbedlabError("file not found", path=path) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise EmbedlabError("link loop (the link leads back to itself)", path=path) from None
        raise EmbedlabError(f"cannot read file ({err.strerror or err})", path=path) from None
    if stat.S_ISDIR(info.st_mode):
        raise EmbedlabError("is a folder, expected a file", path=path)
    if not stat.S_ISREG(info.st_mode):
        raise EmbedlabError(_not_regular(info.st_mode), path=path)
    return info


def open_regular(path: Path, *, root: Path, rules: LibraryRules) -> BinaryIO:
    """Open a library file for reading, only if :func:`check_path` allows it and it is still a regular file."""
    check_path(path, root, rules)
    try:
        # non-blocking: should the file have become a FIFO since the check, open() returns at once
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise EmbedlabError(f"cannot read file ({err.strerror or err})", path=path) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise EmbedlabError(_not_regular(mode), path=path)
    return os.fdopen(fd, "rb")


def read_regular(path: Path, *, root: Path, rules: LibraryRules, max_bytes: int | None = None) -> bytes:
    """The bytes of a library file (see :func:`open_regular`); over ``max_bytes`` is the text-size cap."""
    with open_regular(path, root=root, rules=rules) as handle:
        if max_bytes is not None and os.fstat(handle.fileno()).st_size > max_bytes:
            raise over_cap(
                f"file of {megabytes(os.fstat(handle.fileno()).st_size)}",
                "max_text_bytes",
                f"{megabytes(max_bytes)} of text",
                path=path,
            )
        try:
            data = handle.read(-1 if max_bytes is None else max_bytes + 1)
        except OSError as err:
            raise EmbedlabError(f"cannot read file ({err.strerror or err})", path=path) from None
    if max_bytes is not None and len(data) > max_bytes:  # it grew while being read
        raise over_cap(
            f"file of more than {megabytes(max_bytes)}", "max_text_bytes", f"{megabytes(max_bytes)} of text", path=path
        )
    return data


def file_digest(path: Path, *, root: Path, rules: LibraryRules) -> str:
    """SHA-256 of a library file's bytes, read through :func:`open_regular`."""
    digest = hashlib.sha256()
    with open_regular(path, root=root, rules=rules) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- walking a library


def library_files(folder: str | Path, *, rules: LibraryRules = DEFAULT_RULES) -> list[Path | Skipped]:
    """The regular files of a library, recursively, in sorted path order, and what was left out.

    Hidden entries are left out silently; everything else the rules refuse (links out of the
    library, special files, undecodable names, unreadable folders, folders already read) is
    a :class:`Skipped`.  Real folders are walked before linked ones, so a file reached both
    ways keeps its real path.  The folder itself must exist.
    """
    root = Path(folder)
    if not root.exists():
        raise EmbedlabError("library folder not found", path=root)
    if not root.is_dir():
        raise EmbedlabError("is a file, expected a library folder", path=root)
    root_real = os.path.realpath(root)
    excluder = Excluder.load(root, rules.exclude)
    root_stat = os.stat(root)
    seen = {(root_stat.st_dev, root_stat.st_ino)}
    entries: list[tuple[tuple[str, ...], Path | Skipped]] = []
    folders: list[Path] = [root]
    linked: list[tuple[Path, os.stat_result]] = []

    def skip(path: Path, reason: str) -> None:
        entries.append((path.relative_to(root).parts, Skipped(path=path, reason=reason)))

    while folders or linked:
        if not folders:  # every real folder is read: now the linked ones, in order
            linked.sort(key=lambda item: item[0].relative_to(root).parts)
            path, target = linked.pop(0)
            key = (target.st_dev, target.st_ino)
            if key in seen:
                skip(path, "link to a folder already read (a loop or a second way to the same folder)")
                continue
            seen.add(key)
            folders.append(path)
        current = folders.pop()
        try:
            with os.scandir(current) as scan:
                children = sorted(scan, key=lambda entry: entry.name)
        except OSError as err:
            skip(current, f"cannot read folder ({err.strerror or err})")
            continue
        for entry in children:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if _undecodable(entry.name):
                skip(path, "name is not valid UTF-8; rename it to index it")
                continue
            try:
                is_link = entry.is_symlink()
                problem = _link_problem(path, root_real, rules) if is_link else None
                info = os.stat(path) if problem is None else None
            except OSError as err:
                problem, info = f"cannot read ({err.strerror or err})", None
            excluded = (
                excluder.reason(path.relative_to(root).as_posix(), is_folder=stat.S_ISDIR(info.st_mode))
                if excluder.patterns and info is not None
                else None
            )
            if problem is not None or info is None:
                skip(path, problem or "cannot read")
            elif excluded is not None:
                skip(path, excluded)
            elif stat.S_ISDIR(info.st_mode):
                if is_link:
                    linked.append((path, info))
                elif (info.st_dev, info.st_ino) in seen:
                    skip(path, "folder already read (mounted twice?)")
                else:
                    seen.add((info.st_dev, info.st_ino))
                    folders.append(path)
            elif stat.S_ISREG(info.st_mode):
                entries.append((path.relative_to(root).parts, path))
            else:
                skip(path, _not_regular(info.st_mode))
    entries.sort(key=lambda entry: entry[0])
    out = [item for _, item in entries]
    for item in out:
        if isinstance(item, Skipped):
            logger.info("skipped %s: %s", display_path(item.path, root), item.reason)
    return out

"""Where a collection lives on disk, and how a new state replaces the old one atomically.

    <root>/<name>/
        CURRENT                  one line: the name of the live generation folder
        gen-000007/              the live generation (complete, never modified again)
            manifest.json  chunks.sqlite  vectors.npy  bm25/  [hnsw.faiss]
        .gen-000008.tmp-<pid>/   a generation being written (a crash leaves it behind)
        .lock                    held (flock) by the one build/update allowed at a time

A build or update writes a whole new generation into a temporary folder, fsyncs it,
renames it to ``gen-NNNNNN`` and then atomically replaces ``CURRENT`` (write a temporary
file, fsync, rename).  Readers only follow ``CURRENT``, so a SIGKILL at any moment leaves
either the old generation or the new one live, both complete.  Leftovers (temporary
folders, a renamed generation that ``CURRENT`` never named, the previous generation
after a switch) are removed by the next run, under the lock.

The root is ``--root``, else ``$EMBEDLAB_COLLECTIONS``, else a per-user data folder
(:func:`default_root`: ``platformdirs.user_data_dir("embedlab")/collections``, e.g.
``~/.local/share/embedlab/collections`` on Linux).  Why not ``./collections`` (the default until
0.x): a collection built in one folder was "unknown" from any other; a per-user folder is the same
wherever the command runs, as Chroma's and ``llm``'s stores are.  A collection still found in
``./collections`` is named in the "unknown collection" error with the command that reaches it.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

from embedlab.atomic import atomic_write_text
from embedlab.errors import EmbedlabError

ENV_ROOT = "EMBEDLAB_COLLECTIONS"
POINTER = "CURRENT"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_GENERATION = re.compile(r"^gen-(\d{6,})$")
_TEMP = re.compile(r"^\.gen-\d{6,}\.tmp-\d+$")
CRASH_ENV = "EMBEDLAB_CRASH_AT"


LEGACY_ROOT = Path("collections")


def default_root() -> Path:
    """The per-user collections folder used when neither ``--root`` nor ``$EMBEDLAB_COLLECTIONS`` is given."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("embedlab", appauthor=False)) / "collections"


def collections_root(root: str | Path | None = None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    value = os.environ.get(ENV_ROOT)
    return Path(value).expanduser() if value else default_root()


def _legacy_hint(name: str, root: Path) -> str | None:
    """When the old default ``./collections`` holds ``name``, how to reach or move it."""
    legacy = LEGACY_ROOT.absolute()
    if legacy == root.absolute() or not (legacy / name / POINTER).is_file():
        return None
    return (
        f"{legacy / name} was built under the old default folder ./collections: add `--root {legacy}` "
        f"(or set ${ENV_ROOT}={legacy}), or move it with `mv {legacy / name} {root.absolute()}/`"
    )


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise EmbedlabError(
            f"invalid collection name {name!r}",
            expected="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


def list_collections(root: str | Path | None = None) -> list[str]:
    """Names of the collections under ``root`` that have a live generation."""
    folder = collections_root(root)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and (p / POINTER).is_file())


def crash_point(stage: str) -> None:
    """Fault injection for the crash tests: SIGKILL this process when ``$EMBEDLAB_CRASH_AT`` names ``stage``."""
    if os.environ.get(CRASH_ENV) == stage:
        os.kill(os.getpid(), signal.SIGKILL)


class CollectionDir:
    """One collection's folder: its generations, its pointer and its lock."""

    def __init__(self, name: str, *, root: str | Path | None = None) -> None:
        self.name = check_name(name)
        self.root = collections_root(root)
        self.path = self.root / name
        self.pointer = self.path / POINTER

    def exists(self) -> bool:
        return self.pointer.is_file()

    def unknown(self) -> EmbedlabError:
        known = list_collections(self.root)
        if self.path.is_dir() and not self.exists():
            return EmbedlabError(
                f"collection {self.name!r} has no finished build yet",
                path=self.path,
                hint="run `embedlab index build` again; an interrupted build resumes from the cache",
            )
        legacy = _legacy_hint(self.name, self.root)
        if legacy is not None:
            return EmbedlabError(f"Unknown collection {self.name!r} in {self.root.absolute()}", hint=legacy)
        close = difflib.get_close_matches(self.name, known, n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        available = ", ".join(known) if known else "none"
        return EmbedlabError(
            f"Unknown collection {self.name!r} in {self.root.absolute()}. {hint}Available: {available}",
            hint=None
            if known
            else f"create one with `embedlab index build {self.name} FOLDER --model MODEL` "
            f"(root: --root or ${ENV_ROOT}; `embedlab index list` shows what exists)",
        )

    def live(self) -> Path:
        """The live generation folder; a clear error when there is none."""
        if not self.exists():
            raise self.unknown()
        try:
            target = self.pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise EmbedlabError(
                f"cannot read the collection pointer ({getattr(err, 'strerror', None) or err})",
                path=self.pointer,
                expected="a generation name like 'gen-000001'",
            ) from None
        if not _GENERATION.match(target):
            raise EmbedlabError(
                "collection pointer is damaged",
                path=self.pointer,
                found=repr(target[:40]),
                expected="a generation name like 'gen-000001'",
            )
        folder = self.path / target
        if not folder.is_dir():
            raise EmbedlabError(
                f"collection is damaged: {POINTER} names {target}, which is missing",
                path=self.path,
                hint="rebuild it with `embedlab index build --replace`",
            )
        return folder

    def generation(self, number: int) -> Path:
        return self.path / f"gen-{number:06d}"

    def temporary(self, number: int) -> Path:
        return self.path / f".gen-{number:06d}.tmp-{os.getpid()}"

    def switch(self, generation: Path) -> None:
        """Make ``generation`` the live one (an atomic rename of the pointer file)."""
        atomic_write_text(self.pointer, generation.name + "\n")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the collection's lock: one build or update at a time (released by the OS on a crash)."""
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock, as before
            yield
            return
        with open(self.path / ".lock", "a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EmbedlabError(
                    f"collection {self.name!r} is being built or updated by another process",
                    path=self.path,
                    hint="wait for it to finish, then run again",
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def remove_stale(self) -> list[str]:
        """Remove temporary folders and generations other than the live one; call with the lock held."""
        live, damaged = None, False
        if self.exists():
            try:
                live = self.live().name
            except EmbedlabError:
                damaged = True  # keep every generation: a person may want to repair the pointer
        removed = []
        for entry in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            stale_generation = _GENERATION.match(entry.name) and entry.name != live and not damaged
            if entry.is_dir() and (_TEMP.match(entry.name) or stale_generation):
                if stale_generation:
                    _discard_index(entry)
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed


def _discard_index(generation: Path) -> None:
    """Free what a stale generation's vector index holds outside its folder (a Milvus or Chroma
    server collection: each generation writes its own, see embedlab.index.external)."""
    from embedlab.collection.manifest import read_manifest
    from embedlab.index import INDEXES

    try:
        info = read_manifest(generation).index
    except EmbedlabError:  # a damaged stale generation: nothing known to free
        return
    if info.kind in INDEXES.names():
        INDEXES.get(info.kind).discard(generation, info)


def link_tree(source: Path, target: Path, *, skip: set[str]) -> None:
    """Hard-link (else copy) the files of ``source`` into ``target``: generations never change a
    file once written, so they can share unchanged ones."""
    for item in source.rglob("*"):
        rel = item.relative_to(source)
        if rel.parts[0] in skip:
            continue
        dest = target / rel
        if item.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(item, dest)
        except OSError:
            shutil.copy2(item, dest)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

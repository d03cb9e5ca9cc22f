"""What the index kinds backed by an outside vector engine share (``milvus``, ``chroma``).

Such an engine keeps its vectors in its own store: an embedded one (Milvus Lite, Chroma's
``PersistentClient``) in a folder of files it rewrites while open (write-ahead logs, lock
files, SQLite journals), or a server.  The common interface needs a saved index to be
immutable and checksummed, so an embedded store is saved as one uncompressed tar file with its
SHA-256 (:func:`pack_store`) and opened from a private working copy (:func:`unpack_store`):
two processes (``serve`` and ``index update``) never open the same store, and opening never
changes the saved file.  A server store is saved as a small JSON pointer (address, collection
name) with its SHA-256; the collection itself carries the dimension and the encoder
fingerprint, checked on load (:func:`check_stored`) so that a pointer to a collection that was
rebuilt with another model is refused instead of answering with foreign vectors.

Connections are bounded: :func:`check_reachable` opens a plain TCP connection with a timeout
before a client library is asked to (which may retry for a minute), so an unreachable address
is one line in seconds.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import tarfile
import tempfile
import weakref
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np

from embedlab.atomic import atomic_open, atomic_write_bytes
from embedlab.checksum import file_sha256
from embedlab.errors import EmbedlabError
from embedlab.index.base import IndexInfo, VectorIndex, check_index_file

log = logging.getLogger(__name__)


def check_reachable(address: str, *, default_port: int, timeout: float, engine: str) -> tuple[str, int]:
    """``(host, port)`` of ``address`` (``http://host:port``, ``host:port`` or ``host``) once a TCP
    connection to it succeeded within ``timeout`` seconds; else one line naming it."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        host, port = parts.hostname or "", parts.port or default_port
    except ValueError:
        raise EmbedlabError(f"cannot read the {engine} address", found=address, expected="http://HOST:PORT") from None
    if not host:
        raise EmbedlabError(f"cannot read the {engine} address", found=address, expected="http://HOST:PORT")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise EmbedlabError(
            f"cannot reach the {engine} server at {host}:{port} within {timeout:g} s ({err.strerror or err})",
            hint="start the server or correct the address; the timeout is the index option `timeout`",
        ) from None
    return host, port


class WorkDir:
    """A private temporary folder for an embedded store, removed with its owner (or at exit)."""

    def __init__(self, owner: object, prefix: str, *, before_removal: Callable[[Path], None] | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._finalizer = weakref.finalize(owner, _remove, self.path, before_removal)

    def remove(self) -> None:
        self._finalizer()


def _remove(path: Path, before_removal: Callable[[Path], None] | None) -> None:
    if before_removal is not None:
        try:
            before_removal(path)
        except Exception as err:  # cleanup must not raise at exit; the folder goes anyway
            log.debug("closing the store in %s: %s", path, err)
    shutil.rmtree(path, ignore_errors=True)


def pack_store(store: Path, file: Path) -> str:
    """Write the folder ``store`` as one tar file (atomically); returns its SHA-256."""
    with (
        atomic_open(file, "wb", encoding=None) as handle,
        tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(store.rglob("*")):
            if path.is_file() and path.name != "LOCK":  # Milvus Lite's lock belongs to one process
                tar.add(path, arcname=path.relative_to(store).as_posix(), recursive=False)
    return file_sha256(file)


def unpack_store(file: Path, sha256: str | None, target: Path, *, kind: str) -> None:
    """Check ``file``'s SHA-256, then extract it into ``target`` (only plain files, only inside it)."""
    check_index_file(file, sha256, kind)
    try:
        with tarfile.open(file, "r") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise EmbedlabError(f"cannot read the {kind} store ({err})", path=file, hint="rebuild the index") from None


def check_stored(kind: str, where: str, *, stored: Mapping[str, object], expected: Mapping[str, object]) -> None:
    """Refuse a store whose recorded fields (dimension, encoder fingerprint, rows) differ from
    what the caller expects, naming every field that differs; ``None`` expected = not checked."""
    wrong = [
        (name, stored.get(name), value)
        for name, value in expected.items()
        if value is not None and str(stored.get(name)) != str(value)
    ]
    if wrong:
        raise EmbedlabError(
            f"the {kind} store {where} does not match this index: " + ", ".join(name for name, _, _ in wrong),
            found="; ".join(f"{name}={found}" for name, found, _ in wrong),
            expected="; ".join(f"{name}={value}" for name, _, value in wrong),
            hint="the store was built from other vectors or another model; rebuild the index",
        )


def shorter_side(rows: np.ndarray | None, n: int) -> tuple[list[int], bool] | None:
    """The positions a path filter names in an engine's filter expression: ``rows``, or the rest
    of the ``n`` rows when that list is shorter (``True``: exclude them); None: no filter needed.
    Filter expressions grow with the list, so the shorter one is sent."""
    if rows is None:
        return None
    if len(rows) <= n // 2:
        return rows.tolist(), False
    rest = np.setdiff1d(np.arange(n), rows, assume_unique=True)
    return (rest.tolist(), True) if len(rest) else None


def write_pointer(file: Path, text: str) -> str:
    """A server store's pointer file (JSON), written atomically; returns its SHA-256."""
    atomic_write_bytes(file, text.encode())
    return file_sha256(file)


def store_bytes(store: Path | None, vectors: np.ndarray) -> int:
    """An outside engine's index size: an embedded store's files (vectors + index structures), or
    for a server the float vectors alone -- a lower bound, the server's memory is not visible
    from a client."""
    if store is not None and store.exists():
        return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    return len(vectors) * vectors.shape[1] * 4


class ExternalIndex(VectorIndex):
    """The part of ``milvus`` and ``chroma`` that is about where the store is: a fresh embedded
    store in a private folder, saved packed and re-opened from a private copy; or a server,
    saved as a pointer; after either, the subclass checks the store against the vectors."""

    approximate = True
    engine: ClassVar[str]  # "Milvus": how messages name it
    store_name: ClassVar[str]  # the embedded store's folder name in the private folder
    store_file: ClassVar[str]  # the packed store in the index folder
    pointer_file: ClassVar[str]  # a server store's pointer in the index folder
    _store: Path | None = None

    @property
    @abstractmethod
    def remote(self) -> bool:
        """A server (True) or an embedded store (False)?"""

    @abstractmethod
    def _connect(self, store: Path | None) -> None:
        """Open the client: the server (``store`` None) or the embedded store at ``store``."""

    @abstractmethod
    def _pointer(self) -> dict[str, Any]:
        """What finds a server store again (address, collection name)."""

    @abstractmethod
    def _opened(self, rows: int, dim: int) -> None:
        """After :meth:`load`: the collection exists and records ``dim``, ``rows`` and the
        fingerprint the options expect (:func:`check_stored`); restore search settings."""

    @staticmethod
    def _release(folder: Path) -> None:
        """Let go of an embedded store under ``folder`` before it is packed or removed."""

    def _close_store(self) -> None:
        """Make the embedded store consistent on disk before it is packed."""

    def _reopen_store(self) -> None:
        """Resume after :meth:`_close_store`."""

    def _open_new(self) -> None:
        """Connect for a build: the server, or a new embedded store in a private folder."""
        if self.remote:
            self._connect(None)
            return
        self._work = WorkDir(self, f"embedlab-{self.kind}-", before_removal=type(self)._release)
        self._store = self._work.path / self.store_name
        self._connect(self._store)

    @property
    def memory_bytes(self) -> int:
        return store_bytes(self._store, self.vectors)

    def save(self, folder: Path) -> IndexInfo:
        folder.mkdir(parents=True, exist_ok=True)
        if self.remote or self._store is None:
            sha = write_pointer(folder / self.pointer_file, json.dumps(self._pointer(), sort_keys=True))
            self._file = (self.pointer_file, sha)
            return self.info()
        self._close_store()
        self._file = (self.store_file, pack_store(self._store, folder / self.store_file))
        self._reopen_store()
        return self.info()

    @abstractmethod
    def _drop(self) -> None:
        """Delete this index's collection from the server."""

    @classmethod
    def discard(cls, folder: Path, info: IndexInfo) -> None:
        """Drop a removed generation's server collection (an embedded store goes with its folder).
        An unreachable server leaves it, with a warning naming it: removing the generation must not
        wait on or fail for a server."""
        self = cls._reopened(info, np.zeros((0, 1), np.float32), None)
        if not self.remote:
            return
        try:
            self._connect(None)
            self._drop()
        except EmbedlabError as err:
            log.warning("could not drop the %s collection of %s: %s", cls.engine, folder.name, err.message)

    @classmethod
    def load(
        cls, folder: Path, info: IndexInfo, vectors: np.ndarray, ids: Sequence[object] | None = None
    ) -> VectorIndex:
        self = cls._reopened(info, vectors, ids)
        if self.remote:
            check_index_file(folder / (info.file or cls.pointer_file), info.sha256, f"{cls.engine} pointer")
            self._connect(None)
        else:
            self._work = WorkDir(self, f"embedlab-{cls.kind}-", before_removal=cls._release)
            self._store = self._work.path / cls.store_name
            unpack_store(folder / (info.file or cls.store_file), info.sha256, self._store, kind=cls.engine)
            self._connect(self._store)
        self._opened(len(vectors), vectors.shape[1])
        return self

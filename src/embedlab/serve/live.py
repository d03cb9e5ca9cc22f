"""The collection a server answers from, following updates.

Each search first checks the collection's ``CURRENT`` pointer (one small file read); when
``embedlab index update`` has made a newer generation live, that one is opened and the
old one closed.  Searches run one at a time under a lock: on a small CPU machine the
encoder already uses every core for one query, so running queries side by side only
makes each slower (and the lock makes the switch safe: no search holds the old
generation when it closes).

A failed reload keeps serving the generation it has, and the failure is remembered by the
pointer's content and file identity (inode, size, mtime): opening a damaged generation
again on every request would cost each request the failed open (and a log line), so the
next attempt waits until ``CURRENT`` changes again (a new update, or a repair that
rewrites it).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from embedlab.collection import open_collection
from embedlab.collection.layout import CollectionDir
from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from embedlab.collection.collection import Collection

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_PointerState = tuple[bytes, int, int, int]


class LiveCollection:
    def __init__(
        self,
        name: str,
        *,
        root: str | Path | None = None,
        model_spec: str | None = None,
        on_open: Callable[..., None] | None = None,
        on_failed_open: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._root = root
        self._model_spec = model_spec
        self._on_open = on_open
        self._on_failed_open = on_failed_open
        self._pointer = CollectionDir(name, root=root).pointer
        self._failed: _PointerState | None = None  # the pointer state whose generation failed to open
        self._lock = threading.Lock()
        self._collection = open_collection(name, model_spec=model_spec, root=root)
        if on_open is not None:
            on_open(self._collection, reloaded=False)

    @property
    def current(self) -> Collection:
        """The generation being served, without waiting for a running search (for health checks and
        request parsing; searches go through :meth:`run`, which follows updates)."""
        return self._collection

    def run(self, work: Callable[[Collection], _T]) -> _T:
        """``work(collection)`` on the newest generation, one call at a time."""
        with self._lock:
            self._follow()
            return work(self._collection)

    def _pointer_state(self) -> _PointerState | None:
        try:
            with self._pointer.open("rb") as handle:
                content = handle.read(256)
                st = os.fstat(handle.fileno())
        except OSError:
            return None
        return content, st.st_ino, st.st_size, st.st_mtime_ns

    def _follow(self) -> None:
        if not self._collection.is_stale():
            return
        state = self._pointer_state()
        if state is not None and state == self._failed:
            return  # this pointer's generation already failed to open: wait for CURRENT to change
        try:
            fresh = open_collection(self.name, model_spec=self._model_spec, root=self._root)
        except Exception as err:
            self._failed = state
            reason = err.one_line() if isinstance(err, EmbedlabError) else f"{type(err).__name__}: {err}"
            log.warning(
                "collection %s changed but the new generation cannot be opened (%s); serving generation %d "
                "until CURRENT changes again",
                self.name,
                reason,
                self._collection.generation,
            )
            if self._on_failed_open is not None:
                self._on_failed_open()
            return
        self._failed = None
        old, self._collection = self._collection, fresh
        old.close()
        log.info("collection %s: now serving generation %d", self.name, fresh.generation)
        if self._on_open is not None:
            self._on_open(fresh, reloaded=True)

    def close(self) -> None:
        with self._lock:
            self._collection.close()

"""The collection a server answers from, following updates.

Each search first checks the collection's ``CURRENT`` pointer (one small file read); when
``embedlab index update`` has made a newer generation live, that one is opened and the
old one closed.  Searches run one at a time under a lock: on a small CPU machine the
encoder already uses every core for one query, so running queries side by side only
makes each slower (and the lock makes the switch safe: no search holds the old
generation when it closes).  A failed reload keeps serving the generation it has.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from embedlab.collection import open_collection
from embedlab.errors import EmbedlabError

if TYPE_CHECKING:
    from embedlab.collection.collection import Collection

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class LiveCollection:
    def __init__(self, name: str, *, root: str | Path | None = None, model_spec: str | None = None,
                 on_open: Callable[..., None] | None = None) -> None:
        self.name = name
        self._root = root
        self._model_spec = model_spec
        self._on_open = on_open
        self._lock = threading.Lock()
        self._collection = open_collection(name, model_spec=model_spec, root=root)
        if on_open is not None:
            on_open(self._collection, reloaded=False)

    def run(self, work: Callable[[Collection], _T]) -> _T:
        """``work(collection)`` on the newest generation, one call at a time."""
        with self._lock:
            self._follow()
            return work(self._collection)

    def _follow(self) -> None:
        if not self._collection.is_stale():
            return
        try:
            fresh = open_collection(self.name, model_spec=self._model_spec, root=self._root)
        except EmbedlabError as err:
            log.warning("collection %s changed but the new generation cannot be opened (%s); serving generation %d",
                        self.name, err.one_line(), self._collection.generation)
            return
        old, self._collection = self._collection, fresh
        old.close()
        log.info("collection %s: now serving generation %d", self.name, fresh.generation)
        if self._on_open is not None:
            self._on_open(fresh, reloaded=True)

    def close(self) -> None:
        with self._lock:
            self._collection.close()

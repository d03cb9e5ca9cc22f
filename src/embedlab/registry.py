"""Name -> factory registries that help on a miss ("Did you mean ...?")."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from embedlab.errors import EmbedlabError

T = TypeVar("T")


class Registry(Generic[T]):
    """A dict of named entries; an unknown name raises an error listing the known ones."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.add(name, entry)
            return entry

        return add

    def add(self, name: str, entry: T) -> None:
        key = name.lower()
        if key in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[key] = entry

    def get(self, name: str) -> T:
        key = name.lower()
        if key in self._entries:
            return self._entries[key]
        raise self.unknown(name)

    def unknown(self, name: str) -> EmbedlabError:
        close = difflib.get_close_matches(name.lower(), list(self._entries), n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        return EmbedlabError(f"Unknown {self.what} {name!r}. {hint}Available: {', '.join(sorted(self._entries))}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def names(self) -> list[str]:
        return sorted(self._entries)

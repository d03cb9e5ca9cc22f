"""One error type for user mistakes: the CLI prints it as one line and exits non-zero.

A message says where (file and line when there is one), what was found, what was
expected and, when known, how to fix it.  Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

from pathlib import Path


class EmbedlabError(Exception):
    """A problem with the user's input, data or environment (never a bug in embedlab)."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        found: str | None = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.found = found
        self.expected = expected
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
            where += ": "
        parts = [where + self.message]
        if self.found is not None:
            parts.append(f"found {self.found}")
        if self.expected is not None:
            parts.append(f"expected {self.expected}")
        if self.hint is not None:
            parts.append(self.hint)
        return "; ".join(parts)


def shorten(text: str, limit: int = 60) -> str:
    """A printable excerpt of user data for error messages (``repr`` escapes tabs and newlines)."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")

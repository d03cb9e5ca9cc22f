"""Small settings files (``monitor.toml``, the A/B arms file): read, parse, validate, each failure one line.

Why one place: every settings file must fail the same way (the file, the line where known, what was
found and what was expected), whether it is missing, not UTF-8, not TOML/JSON, or valid TOML that
the pydantic model refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from embedlab.errors import EmbedlabError, shorten


def read_settings(path: Path, *, what: str, expected: str) -> tuple[str, Any]:
    """``(text, data)`` of a TOML file (JSON when the name ends in ``.json``)."""
    from embedlab.select.candidates import _parse_toml

    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise EmbedlabError(f"{what} not found", path=path) from None
    except UnicodeDecodeError:
        raise EmbedlabError("not UTF-8 text", path=path, expected=expected) from None
    except OSError as err:
        raise EmbedlabError(f"cannot read the {what} ({err.strerror or err})", path=path) from None
    if path.suffix.lower() != ".json":
        return text, _parse_toml(text, path)
    try:
        return text, json.loads(text)
    except (ValueError, RecursionError) as err:
        raise EmbedlabError(f"invalid JSON ({err})", path=path, expected=expected) from None


def invalid_settings(
    err: ValidationError, *, what: str, path: Path, line_of: Callable[[tuple[Any, ...]], int | None], expected: str
) -> EmbedlabError:
    """The first problem pydantic found, as one line: where (dotted key), why, the line, the value."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "file"
    message = str(first["msg"]).removeprefix("Value error, ")
    shown = loc and first.get("type") != "missing"  # a whole-file problem has no one value to show
    return EmbedlabError(
        f"invalid {what} at {where!r}: {message}",
        path=path,
        line=line_of(loc),
        found=shorten(repr(first.get("input"))) if shown else None,
        expected=expected,
    )

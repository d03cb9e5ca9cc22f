"""Line-by-line reading of text files (plain or gzip) with file:line errors."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedlab.errors import EmbedlabError, shorten


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` without the newline; bad UTF-8 is a clear error."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        handle = opener(path, "rb")
    except FileNotFoundError:
        raise EmbedlabError("file not found", path=path) from None
    except IsADirectoryError:
        raise EmbedlabError("is a folder, expected a file", path=path) from None
    with handle:
        number = 0
        try:
            for number, raw in enumerate(handle, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise EmbedlabError(
                        "text is not valid UTF-8",
                        path=path,
                        line=number,
                        found=f"byte 0x{raw[err.start]:02x} at column {err.start + 1}",
                        expected="UTF-8 encoded text",
                        hint="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
                    ) from None
                yield number, text.rstrip("\r\n")
        except (OSError, EOFError) as err:  # truncated or corrupt gzip
            raise EmbedlabError(
                f"cannot read file ({err})", path=path, line=number + 1,
                expected="a complete gzip file" if path.suffix == ".gz" else None,
            ) from None


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file."""
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise EmbedlabError(
                f"malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno})",
                path=path,
                line=number,
                found=shorten(text),
                expected="one JSON object per line",
            ) from None
        if not isinstance(value, dict):
            raise EmbedlabError(
                "not a JSON object", path=path, line=number, found=type(value).__name__,
                expected='an object like {"_id": ..., "text": ...}',
            )
        yield number, value


def string_field(obj: dict[str, Any], key: str, *, path: Path, line: int, required: bool) -> str:
    """A string field of a JSON record; integer ids are accepted and turned into strings."""
    if key not in obj or obj[key] is None:
        if required:
            raise EmbedlabError(
                f"missing field {key!r}", path=path, line=line,
                found=f"fields {sorted(obj)}", expected=f"a {key!r} field",
            )
        return ""
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EmbedlabError(
            f"field {key!r} has the wrong type", path=path, line=line,
            found=type(value).__name__, expected="a string",
        )
    return str(value)

"""Line-by-line reading of text files (plain or gzip) with file:line errors.

Everything a damaged or hostile file can make the standard library raise while it is read
here (bad UTF-8, a byte order mark, a corrupt or truncated gzip stream, malformed JSON, JSON
nested deeper than the parser's recursion limit, integers longer than Python converts,
strings with unpaired surrogates that can never be encoded again) becomes an
``EmbedlabError`` naming the file and the line, so no input ends in a traceback.
"""

from __future__ import annotations

import codecs
import gzip
import json
import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedlab.errors import EmbedlabError, shorten

# A lone surrogate can only enter through a JSON escape (strict UTF-8 decoding rejects them):
# ``\ud800``..``\udfff``.  Lines without such an escape skip the check.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def bom_error(path: str | Path) -> EmbedlabError:
    """The one-line error for a file that starts with a UTF-8 byte order mark (every text reader)."""
    return EmbedlabError(
        "unexpected BOM (byte order mark) at the start of the file",
        path=path,
        line=1,
        found="bytes EF BB BF",
        expected="UTF-8 text without a BOM",
        hint="remove the first 3 bytes, e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' FILE",
    )


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` without the newline; bad UTF-8 or a BOM is a clear error."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        handle = opener(path, "rb")
    except FileNotFoundError:
        raise EmbedlabError("file not found", path=path) from None
    except IsADirectoryError:
        raise EmbedlabError("is a folder, expected a file", path=path) from None
    except OSError as err:
        raise EmbedlabError(f"cannot open file ({err.strerror or err})", path=path) from None
    with handle:
        number = 0
        try:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raise bom_error(path)
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
        except (OSError, EOFError, zlib.error) as err:  # truncated or corrupt gzip, or a read error
            raise EmbedlabError(
                f"cannot read file ({err})",
                path=path,
                line=number + 1,
                expected="a complete gzip file" if path.suffix == ".gz" else None,
            ) from None


def parse_json_line(text: str, *, path: Path, line: int) -> Any:
    """One JSON value; every way the text can fail to be one (or to be valid Unicode) is a clear error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise EmbedlabError(
            f"malformed JSON ({err.msg.removesuffix(' at')} at column {err.colno})",
            path=path,
            line=line,
            found=shorten(text),
            expected="one JSON object per line",
        ) from None
    except RecursionError:
        raise EmbedlabError(
            "JSON nested too deeply",
            path=path,
            line=line,
            found=shorten(text),
            expected="one flat JSON object per line",
        ) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise EmbedlabError(
            f"JSON value out of range ({value_error_text(err)})",
            path=path,
            line=line,
            found=shorten(text),
            expected="numbers of ordinary size",
        ) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_encodable(value, path=path, line=line)
    return value


def value_error_text(err: ValueError) -> str:
    """The message of a parser's ValueError without Python's advice to the programmer (``use sys.set_...``)."""
    return str(err).split("; use sys.")[0]


def _check_encodable(value: Any, *, path: Path, line: int) -> None:
    """A string holding an unpaired surrogate (``"\\ud800"``) is valid JSON but not valid Unicode."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise EmbedlabError(
            "text holds an unpaired surrogate escape, which is not valid Unicode",
            path=path,
            line=line,
            found=f"\\u{ord(err.object[err.start]):04x}",
            expected="surrogate escapes only in pairs (e.g. \\ud83d\\ude00), or the character itself",
        ) from None
    except RecursionError:
        raise EmbedlabError(
            "JSON nested too deeply", path=path, line=line, expected="one flat JSON object per line"
        ) from None


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file."""
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        value = parse_json_line(text, path=path, line=number)
        if not isinstance(value, dict):
            raise EmbedlabError(
                "not a JSON object",
                path=path,
                line=number,
                found=type(value).__name__,
                expected='an object like {"_id": ..., "text": ...}',
            )
        yield number, value


def string_field(obj: dict[str, Any], key: str, *, path: Path, line: int, required: bool) -> str:
    """A string field of a JSON record; integer ids are accepted and turned into strings.

    An absent optional field, or one that is ``null``, is ``""``; a required one that is
    ``null`` is reported as null (not as missing, since the key is there)."""
    if key not in obj:
        if required:
            raise EmbedlabError(
                f"missing field {key!r}",
                path=path,
                line=line,
                found=f"fields {sorted(obj)}",
                expected=f"a {key!r} field",
            )
        return ""
    value = obj[key]
    if value is None:
        if required:
            raise EmbedlabError(f"field {key!r} is null", path=path, line=line, found="null", expected="a string")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise EmbedlabError(
            f"field {key!r} has the wrong type",
            path=path,
            line=line,
            found=_json_type(value),
            expected="a string",
        )
    return str(value)


def _json_type(value: Any) -> str:
    """The Python type name, except for values plain JSON cannot hold (``NaN``, ``Infinity``, ``1e400``)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float) and math.isinf(value):
        return "a number out of range (infinite)"
    return type(value).__name__

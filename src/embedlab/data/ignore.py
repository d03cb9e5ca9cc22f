"""Files a library leaves out on purpose: ``--exclude GLOB`` and the folder's ``.embedlabignore``.

A library often holds files that are not documents to search (a ``SOURCES.md`` listing where
the PDFs came from, drafts, build output).  Patterns follow a subset of ``.gitignore``, one per
line of ``.embedlabignore`` (at the library's root; ``#`` starts a comment, blank lines are
ignored), matched against a file's or folder's POSIX path relative to the root:

- a pattern without ``/`` matches the name at any depth (``SOURCES.md``, ``*.draft.pdf``);
- a pattern with a ``/`` in it (a leading one only anchors it) matches the whole path
  (``notes/*.md``, ``/build``); ``**`` matches any number of folders (``**/old/*.pdf``);
- a trailing ``/`` matches folders only (``drafts/``); a matched folder is not walked;
- ``*``, ``?`` and ``[...]`` never match a ``/``.  Negation (``!``) is not supported: an error names the line.

``--exclude`` patterns are kept in the collection's manifest, so every ``index update`` leaves out
the same files; ``.embedlabignore`` is read again on every walk.  An excluded entry is listed as
skipped ("excluded by ...").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from embedlab.errors import EmbedlabError

IGNORE_FILE = ".embedlabignore"
_MAX_IGNORE_BYTES = 1_000_000


@dataclass(frozen=True)
class Pattern:
    text: str  # as written, for the skip reason
    source: str  # "--exclude" or ".embedlabignore line N"
    regex: re.Pattern[str]
    folders_only: bool


def _translate(glob: str) -> str:
    """A regular expression for ``glob`` over a relative POSIX path (see the module docstring)."""
    out, i = [], 0
    while i < len(glob):
        char = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = glob.find("]", i + 2 if glob.startswith(("[!", "[^"), i) else i + 1)
            if end < 0:
                out.append(re.escape(char))
            else:
                body = glob[i + 1 : end]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append(("[^/" if negate else "[") + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def compile_pattern(text: str, *, source: str) -> Pattern:
    """One pattern; an error (naming ``source``) for an empty one or a negation."""
    glob = text.strip()
    if not glob:
        raise EmbedlabError(f"empty exclude pattern ({source})", expected="a glob such as SOURCES.md or drafts/")
    if glob.startswith("!"):
        raise EmbedlabError(
            f"negated exclude patterns are not supported ({source})",
            found=repr(glob),
            expected="a pattern of files to leave out",
            hint="list the files to leave out rather than those to keep",
        )
    folders_only = glob.endswith("/")
    glob = glob.rstrip("/")
    anchored = "/" in glob
    body = _translate(glob.lstrip("/"))
    regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL)
    return Pattern(text=text.strip(), source=source, regex=regex, folders_only=folders_only)


class Excluder:
    """The patterns of one library walk: ``--exclude`` first, then ``.embedlabignore``."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns

    @classmethod
    def load(cls, root: Path, exclude: tuple[str, ...]) -> Excluder:
        patterns = [compile_pattern(glob, source="--exclude") for glob in exclude]
        path = root / IGNORE_FILE
        if path.is_file():
            try:
                data = path.read_bytes()[: _MAX_IGNORE_BYTES + 1]
                text = data.decode("utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise EmbedlabError(f"cannot read {IGNORE_FILE} ({err})", path=path) from None
            if len(data) > _MAX_IGNORE_BYTES:
                raise EmbedlabError(f"{IGNORE_FILE} is over 1 MB", path=path, expected="a short list of patterns")
            for number, line in enumerate(text.splitlines(), start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    try:
                        patterns.append(compile_pattern(line, source=f"{IGNORE_FILE} line {number}"))
                    except EmbedlabError as err:
                        raise EmbedlabError(err.message, path=path, line=number, found=err.found) from None
        return cls(patterns)

    def reason(self, relative: str, *, is_folder: bool) -> str | None:
        """Why ``relative`` is left out ("excluded by ..."), or ``None``."""
        for pattern in self.patterns:
            if pattern.folders_only and not is_folder:
                continue
            if pattern.regex.match(relative):
                return f"excluded by {pattern.source} {pattern.text!r}"
        return None

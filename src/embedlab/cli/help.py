"""Help text conventions shared by every sub-command: defaults shown, examples kept verbatim.

- :class:`Formatter` shows ``(default: X)`` after each option's help unless the help already
  says its default or there is nothing to show (no default, a flag that is off), and keeps the
  line breaks of descriptions and epilogs so examples stay copy-pasteable.
- :func:`examples` builds the ``Examples:`` epilog every sub-command's ``--help`` ends with.
- :func:`walk` yields every (sub-)parser with its command path; the completion scripts and the
  help tests are generated from it, so a new option is completed and checked without a list.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Raw description/epilog, plus the default of each option that has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text.lower()
            or default is None
            or default is False
            or default == []
            or default is argparse.SUPPRESS
            or action.option_strings == []
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        return f"{text} (default: %(default)s)"


def examples(*lines: str) -> str:
    """The epilog of a sub-command's help: ``Examples:`` and one command per line."""
    return "Examples:\n" + "\n".join(f"  {line}" for line in lines)


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser under ``parser`` (itself first) with its sub-command path, e.g. ``("index", "build")``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (*path, name))


def use_formatter(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and all its sub-parsers :class:`Formatter` (set once, in ``cli.main``)."""
    for _path, child in walk(parser):
        child.formatter_class = Formatter

"""Terminal tables that fit the terminal: width from the terminal, columns nobody filled left out.

Why not a fixed width: a table 200-220 columns wide wraps every line of an 80-column terminal
into an unreadable staircase, and redirected output got lines no one asked for.  ``rich`` takes
the width from the terminal, or from ``$COLUMNS``; output that goes to a file or a pipe with no
``$COLUMNS`` gets room for the table's natural width (up to 240 columns) rather than rich's 80, so a
log or a CI transcript keeps whole headers and numbers.  Columns whose every cell is empty ("-", "")
are dropped: a cost column without a price, a latency column for a run that timed nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

EMPTY = frozenset({"", "-", "None"})


PIPED_WIDTH = 240


def console() -> Console:
    """A console as wide as the terminal (or ``$COLUMNS``); no colours or markup when piped."""
    import os
    import sys

    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        return Console(highlight=False, width=PIPED_WIDTH)
    return Console(highlight=False)


def non_empty_columns(
    columns: Sequence[str], rows: Sequence[Sequence[object]], *, keep: Sequence[str] = ()
) -> list[int]:
    """Positions of the columns that have a value in at least one row (``keep`` are always kept)."""
    return [
        i
        for i, name in enumerate(columns)
        if name in keep or any(r[i] is not None and str(r[i]).strip() not in EMPTY for r in rows)
    ]


def _numeric(value: object) -> bool:
    """A cell that reads as a number (right-aligned): 0.6451, 12.3 MB, -, 1.2e-3, +0.0123 [..]."""
    text = "" if value is None else str(value).strip()
    if text in EMPTY:
        return True
    head = text.split()[0].rstrip("*!%")
    try:
        float(head)
    except ValueError:
        return False
    return True


def rich_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], *, keep: Sequence[str] = ()
) -> Table:
    """A rich table of ``rows`` without the columns that are empty in every row; the first column left-aligned."""
    wanted = non_empty_columns(columns, rows, keep=(columns[0], *keep))
    table = Table(title=title)
    for n, i in enumerate(wanted):
        numeric = n > 0 and all(_numeric(r[i]) for r in rows)
        table.add_column(columns[i], justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        table.add_row(*("-" if r[i] is None else str(r[i]) for i in wanted))
    return table


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], *, out: Console | None = None
) -> None:
    (out or console()).print(rich_table(title, columns, rows))

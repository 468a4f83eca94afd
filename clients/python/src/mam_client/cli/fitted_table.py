"""A table that fits its console: numbers, ids and times are never split across lines; when the
console is too narrow for every column, columns are abbreviated, then dropped, in the order the
table names, until it fits (an 80-column terminal drops an id column before it splits a price).

Rich wraps any column to make a table fit, a price included ("1.0843" over "8000"). Here
every column that is not free text is `no_wrap`: its minimum width is its widest cell, so the
table's minimum width says whether it fits, and rich then wraps only the free-text columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    cells: Sequence[Cell]
    # Right-aligned figures.
    numeric: bool = False
    # Free text, wrapped at spaces to make room; anything else is kept on one line.
    wrap: bool = False
    # What the column becomes when abbreviated ("SHRINK" steps): a header and cells.
    short: tuple[str, Sequence[Cell]] | None = None


# A step towards a narrower table: abbreviate a column (to its `short` form), or drop it.
Shrink = tuple[Literal["short", "drop"], str]


@dataclass(slots=True)
class FittedTable:
    """Columns by header; `shrink`: the steps tried in order while the table is too wide."""

    title: str | None
    columns: list[Column]
    shrink: Sequence[Shrink] = ()
    caption: str | None = None
    show_header: bool = True
    # The steps the last rendering took to fit.
    steps_taken: list[Shrink] = field(default_factory=list)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.fitted(console, options)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.fitted(console, options))

    def fitted(self, console: Console, options: ConsoleOptions) -> Table:
        """The widest form of the table that fits options.max_width (the narrowest one when
        none does)."""
        width = options.max_width
        taken: list[Shrink] = []
        table = self._table(taken)
        for step in self.shrink:
            if _narrowest(console, options, table) <= width:
                break
            taken.append(step)
            table = self._table(taken)
        # The last step may have made room for one taken before it: each earlier one is
        # undone again (the latest first) when the table still fits without it.
        for step in reversed(taken[:-1]):
            kept = [s for s in taken if s != step]
            candidate = self._table(kept)
            if _narrowest(console, options, candidate) <= width:
                taken, table = kept, candidate
        self.steps_taken = taken
        return table

    def _table(self, taken: Sequence[Shrink]) -> Table:
        dropped = {header for action, header in taken if action == "drop"}
        shortened = {header for action, header in taken if action == "short"}
        table = Table(
            title=self.title,
            title_justify="left",
            header_style="bold",
            caption=self.caption,
            caption_justify="left",
            show_header=self.show_header,
        )
        kept = [c for c in self.columns if c.header not in dropped]
        rows = max((len(c.cells) for c in self.columns), default=0)
        cells = []
        for column in kept:
            header, values = column.header, column.cells
            if header in shortened and column.short is not None:
                header, values = column.short
            texts = [_text(values[i]) if i < len(values) else Text() for i in range(rows)]
            cells.append(texts)
            table.add_column(
                header,
                justify="right" if column.numeric else "left",
                no_wrap=not column.wrap,
                overflow="fold",
                # Rich measures a cell's minimum as its longest word, even in a no_wrap
                # column: a figure's column is as wide as its widest figure, or the table does
                # not fit (and loses a column instead).
                min_width=None if column.wrap else max([len(header), *(t.cell_len for t in texts)]),
            )
        for index in range(rows):
            table.add_row(*(column[index] for column in cells))
        return table


def _narrowest(console: Console, options: ConsoleOptions, table: Table) -> int:
    """The least width the table takes without splitting a figure. Measured with room to
    spare: rich clamps a table's measurement to the width it is given."""
    return Measurement.get(console, options.update_width(_ROOM), table).minimum


_ROOM = 100_000


def _text(cell: Cell) -> Text:
    """A cell as text: a str is shown as it is, never read as console markup (an account
    named "[red]" stays "[red]")."""
    return cell if isinstance(cell, Text) else Text(cell)

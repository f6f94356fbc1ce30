"""What the steps share: finding a column they name (an error naming the field and the columns
there are), and an error about a row that never shows the row's values (a masked column's
original value must not reach a log or a history file through an error)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from runner.errors import TerminalError
from runner.streams.types import Column


def index_of(columns: list[Column], name: str, where: str) -> int:
    """The position of column `name` among `columns`.

    Raises:
        TerminalError: it is not one of them (located at `where`, with a close name or the list).
    """
    names = [c.name for c in columns]
    if name in names:
        return names.index(name)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"columns: {', '.join(names)}"
    raise TerminalError(f"{where}: column {name!r} is not among the columns here ({hint})")


def row_error(where: str, what: str, exc: BaseException, values: Iterable[Any]) -> TerminalError:
    """A failure of a step on a row, its message stripped of the row's values."""
    text = str(exc)
    for value in values:
        shown = str(value) if value is not None else ""
        if len(shown) >= 2:
            text = text.replace(shown, "…")
    return TerminalError(f"{where}: {what} failed on a row: {type(exc).__name__}: {text}")

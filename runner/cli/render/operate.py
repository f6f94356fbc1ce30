"""The table of a job's stored pointers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.cli.render.cells import pointer_text

if TYPE_CHECKING:
    from rich.table import Table


def pointers_table(ref: str, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=f"Pointers of {ref}", title_justify="left")
    for col in ("TASK", "STRATEGY", "COLUMN", "POINTER", "SET AT", "BY"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["task"],
            r["strategy"],
            r["column"] or "-",
            pointer_text(r["pointer"]),
            r["updated_at"] or "-",
            r["by"] or "-",
        )
    return table

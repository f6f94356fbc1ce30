"""The API keys table (names, scopes, who created them; never a key)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


def keys_table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="API keys", title_justify="left")
    for col in ("NAME", "SCOPE", "CREATED", "BY"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["scope"], r["created_at"], r["created_by"])
    return table

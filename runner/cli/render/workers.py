"""The table of `runner workers`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table


def workers_table(rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="Workers", title_justify="left")
    for col in ("WORKER", "ALIVE", "HEARTBEAT", "THREADS", "BROKER", "RUNNING"):
        table.add_column(col)
    for w in rows:
        runs = [f"{r['job']} ({r['run_id']})" for r in w["runs"]]
        # a split copy's key ranges this worker runs for a run on any worker
        runs += [f"{r['job']} ({r['run_id']}) {r['task']} range {r['range']}" for r in w.get("ranges", [])]
        running = ", ".join(runs) or "-"
        table.add_row(
            w["name"],
            "yes" if w["alive"] else "no (silent)",
            w["heartbeat_at"],
            str(w["concurrency"]),
            w["broker"],
            running,
        )
    return table

"""`runner verify`: a table of the tasks compared, then the keys that differ and the repair."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.cli.render.cells import num

if TYPE_CHECKING:
    from rich.table import Table


def verify_table(result: dict[str, Any]) -> Table:
    from rich.table import Table

    title = f"verify {result['job']} ({result['source']} → {result['target']})"
    table = Table(title=title, title_justify="left")
    for col in (
        "TASK",
        "RESULT",
        "SOURCE",
        "TARGET",
        "MISSING",
        "EXTRA",
        "DIFFERING",
        "SECONDS",
        "COMPARED BY",
    ):
        table.add_column(col, justify="left" if col in ("TASK", "RESULT", "COMPARED BY") else "right")
    for t in result["tasks"]:
        table.add_row(
            t["task"],
            t["status"].replace("_", " "),
            num(t["source_rows"]),
            num(t["target_rows"]),
            num(t["missing"]),
            num(t["extra"]),
            num(t["differing"]),
            f"{t['seconds']:.2f}",
            _method(t),
        )
    return table


def _method(task: dict[str, Any]) -> str:
    if task["buckets"]:
        return f"{task['method']}: {task['buckets_differ']:,} of {task['buckets']:,} differ"
    return task["method"]


def details_text(result: dict[str, Any]) -> str:
    """The sample keys of each difference, the errors, and what a repair did."""
    lines = []
    for t in result["tasks"]:
        if t.get("error"):
            lines.append(f"task {t['task']}: {t['error']}")
        for kind, why in (
            ("missing", "in the source, not in the target"),
            ("extra", "in the target, not in the source"),
            ("differing", "values differ"),
        ):
            keys = t["samples"][kind]
            if keys:
                more = f" (first {len(keys)} of {t[kind]:,})" if t[kind] > len(keys) else ""
                lines.append(f"task {t['task']}: {kind} ({why}){more}: {', '.join(map(str, keys))}")
        if t["columns_differ"]:
            cols = ", ".join(f"{name} {count:,}" for name, count in t["columns_differ"].items())
            lines.append(f"task {t['task']}: differing columns: {cols}")
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    repair = result.get("repair")
    if repair:
        lines.append(
            f"repair: run {repair['run_id']} {repair['status']}"
            + (f": {repair['error']}" if repair.get("error") else "")
        )
        for t in repair["tasks"]:
            counts = [f"{t.get(k) or 0:,} {k}" for k in ("inserted", "updated", "deleted")]
            note = f" ({t['note']})" if t.get("note") else ""
            lines.append(f"  task {t['name']}: {', '.join(counts)}{note}")
    verdict = {0: "equal" if not repair else "repaired", 2: "differences found", 1: "not verified"}
    lines.append(verdict[result["exit_code"]])
    return "\n".join(lines)

"""Cells that several groups' tables share, so a run or a pointer reads the same everywhere."""

from __future__ import annotations

from typing import Any


def run_status(run: dict[str, Any]) -> str:
    """`succeeded`, `succeeded (dry run)`, `failed (limited)`: a test run never passes for a real one."""
    mode = run.get("mode") or "normal"
    return run["status"] + ("" if mode == "normal" else f" ({mode.replace('-', ' ')})")


def written(run: dict[str, Any]) -> str:
    """Rows written; a dry run's are rows it would have written: `would 1,234`."""
    if run.get("mode") == "dry-run":
        return f"would {num(run.get('rows_would_write') or 0)}"
    return num(run.get("rows_written"))


def num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def pointer_text(pointer: dict[str, str] | None) -> str:
    return f"{pointer['value']} ({pointer['type']})" if pointer else "none"


def inactive_tasks(document: dict[str, Any]) -> list[str]:
    """The names of a job document's tasks switched off (`active: false`)."""
    tasks = document.get("spec", {}).get("tasks") or []
    return [t["name"] for t in tasks if isinstance(t, dict) and t.get("active") is False]


def size(count: int) -> str:
    """Bytes as PostgreSQL's pg_size_pretty says them: `512 bytes`, `12 kB`, `1.5 GB`."""
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def lag_text(lag: dict[str, Any]) -> str:
    """A cdc task's lag: `lag 1.2 MB (log kept 3.4 MB), 40 s ago`, loud past its max_lag; a
    consuming task's: the messages waiting in its queue (a change-log writer's: the changes)."""
    if "error" in lag:
        return f"lag unknown: {lag['error']}"
    if "messages_waiting" in lag:  # a consuming task: what its queue holds now
        unit = lag.get("unit", "messages")
        if lag["messages_waiting"] is None:
            return f"{unit} waiting: not known (the broker does not say)"
        return f"{lag['messages_waiting']:,} {unit} waiting"
    if lag.get("exists") is False:
        return f"no slot {lag['slot']} (the next run makes one, or asks for --resync)"
    text = f"lag {size(lag['lag_bytes'])} (log kept {size(lag['retained_bytes'])})"
    if lag.get("lag_seconds") is not None:
        text += f", oldest change not applied {lag['lag_seconds']:g} s old"
    if "seconds_since" in lag:
        text += f", measured {lag['seconds_since']:g} s ago"
    if lag.get("over_max_lag"):
        text = f"LAG PAST max_lag {size(lag['max_lag'])}: " + text
    return text

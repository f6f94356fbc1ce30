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

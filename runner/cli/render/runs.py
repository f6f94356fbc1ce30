"""Runs: the live progress, a run's result, log lines, history tables and `status`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runner.cli.render.cells import lag_text, num, pointer_text, run_status, size, written

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@contextmanager
def run_progress(console: Console) -> Iterator[Callable[[str, int], None]]:
    """A live line per task with the rows read so far (the total is unknown while reading)."""
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    columns = (
        SpinnerColumn(),
        TextColumn("task {task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        ids: dict[str, TaskID] = {}

        def update(task: str, rows: int) -> None:
            if task not in ids:
                ids[task] = bar.add_task(task, total=None)
            bar.update(ids[task], completed=rows)

        yield update


def written_text(task: dict[str, Any]) -> str:
    """`1 inserted, 2 updated, 0 deleted`; a task written by an upsert script, which cannot tell
    inserts from updates, shows `3 upserted` instead."""
    if task.get("upserted") and not (task["inserted"] or task["updated"]):
        written = f"{task['upserted']:,} upserted"
    else:
        written = f"{task['inserted']:,} inserted, {task['updated']:,} updated"
        if task.get("upserted"):
            written += f", {task['upserted']:,} upserted"
    return f"{written}, {task['deleted']:,} deleted"


def _flags(options: dict[str, Any]) -> str:
    """A run's options as the command line gives them (`tasks`: `--task A --task B`)."""
    flags = []
    for key, value in options.items():
        name = "--task" if key == "tasks" else f"--{key.replace('_', '-')}"
        values = value if isinstance(value, list) else [value]
        flags += [name if v is True else f"{name} {v}" for v in values]
    return " ".join(flags)


def _windows_text(windows: list[dict[str, Any]]) -> list[str]:
    """A backfill's windows, read one after another: a line each, and one for each stretch of
    empty ones (a day's windows over a year with a month of data: 2 lines, not 365)."""
    lines: list[str] = []
    empty: list[dict[str, Any]] = []

    def stretch() -> None:
        if len(empty) == 1:
            lines.append(f"window {empty[0]['from']} → {empty[0]['to']}: 0 rows read")
        elif empty:
            lines.append(f"{len(empty)} windows {empty[0]['from']} → {empty[-1]['to']}: 0 rows read")
        empty.clear()

    for w in windows:
        if w["rows"] == 0:
            empty.append(w)
            continue
        stretch()
        lines.append(f"window {w['from']} → {w['to']}: {w['rows']:,} rows read")
    stretch()
    return lines


def run_text(record: dict[str, Any]) -> str:
    flags = _flags(record["options"])
    lines = [
        f"run {record['run_id']} of job {record['namespace']}/{record['job']}: {record['status']} "
        f"in {record['seconds']:.2f} s ({record['source']} → {record['target']})"
        + (f" [{flags}]" if flags else "")
    ]
    dry = record.get("mode") in ("dry-run", "limited")  # a limited run is rolled back too
    lines += _events_text(record, "before")
    if not record["tasks"] and record.get("error"):  # stopped before any task (a before-event)
        lines.append(f"  error: {record['error']}")
    for t in record["tasks"]:
        if t["status"] == "skipped":
            lines.append(f"  task {t['name']}: skipped")
            continue
        if t["status"] in ("inactive", "dropped_in_source"):
            lines.append(
                f"  task {t['name']}: {t['status'].replace('_', ' ')}: {t.get('note') or ''}".rstrip(": ")
            )
            continue
        line = (
            f"  task {t['name']} ({t['strategy']}): {t['status']}, {t['rows_read']:,} rows read → "
            + ("would be " if dry else "")
            + f"{written_text(t)}, {t['unchanged']:,} unchanged"
            + (f", {t['filtered']:,} filtered out" if t.get("filtered") else "")  # older records: none
            + f" in {t['target']} ({t['seconds']:.2f} s)"
        )
        if t.get("before_run"):
            done = "emptied" if t["before_run"] == "truncate" else "dropped and created again"
            line += f"\n    table {done} first"
        if t.get("valid_from"):
            line += f"\n    history: versions from {t['valid_from']}"
        if t["pointer_after"] != t["pointer_before"]:
            line += f"\n    pointer: {pointer_text(t['pointer_before'])} → {pointer_text(t['pointer_after'])}"
        for change in t.get("schema_changes") or []:  # older records have none
            doing = "altered" if change["applied"] else "would alter"
            if change["change"] == "create":  # a dry run into a table that does not exist yet
                line += f"\n    schema: would create the table {change['after']}: {change['ddl'] or '-'}"
                continue
            line += f"\n    schema: {doing}: {change['change']} column {change['column']!r}: {change['ddl']}"
        for column, count in (t.get("truncated") or {}).items():
            line += f"\n    truncated: {count:,} strings of column {column!r}"
        for text in _windows_text(t.get("windows") or []):
            line += f"\n    {text}"
        for r in t.get("ranges") or []:  # a split copy's key ranges, run by whichever worker took each
            span = f"[{'' if r['from'] is None else r['from']}, {'' if r['to'] is None else r['to']})"
            by = f"by {r['by']} ({r['seconds']} s)" if r["status"] == "done" else r["status"]
            by += f", in run {r['run_id']}" if r.get("run_id") else ""
            line += f"\n    range {r['range']} {span}: {r['rows_read']:,} rows read {by}"
        if t["error"]:
            line += f"\n    error: {t['error']}"
        lines.append(line)
    lines += _events_text(record, "after")
    for n in record.get("notifications", []):
        error = f": {n['error']}" if n.get("error") else ""
        lines.append(
            f"  {n['channel']} to {', '.join(n.get('to') or [n.get('url', '')])}: {n['status']}{error}"
        )
    if record.get("mode") == "limited":
        lines.append(
            f"limited run: at most {record['options'].get('limit')} rows read a task, written and "
            "rolled back: nothing was written"
        )
    elif dry:
        lines.append(
            f"dry run: nothing was written (it would write {record.get('rows_would_write', 0):,} rows)"
        )
    lines.append(f"history: {record['path']}")
    return "\n".join(lines)


def _events_text(record: dict[str, Any], phase: str) -> list[str]:
    """`  before-event 1 (command ./check.sh): failed: exited with status 3`, one an event."""
    return [
        f"  {phase}-event {e['index'] + 1} ({e['what']}): {e['status']}"
        + (f": {e['error']}" if e.get("error") else "")
        for e in record.get("events", [])
        if e["phase"] == phase
    ]


def log_line(entry: dict[str, Any]) -> str:
    fields = " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
        for k, v in entry.items()
        if k not in ("ts", "level", "message")
    )
    level = str(entry.get("level", "")).upper()
    return f"{entry.get('ts', '')} {level:7} {entry.get('message', '')} {fields}".rstrip()


def history_table(ref: str, runs: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=f"Runs of {ref}", title_justify="left")
    for col, justify in (
        ("RUN", "left"),
        ("STATUS", "left"),
        ("STARTED", "left"),
        ("SECONDS", "right"),
        ("READ", "right"),
        ("WRITTEN", "right"),
        ("ERROR", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in runs:
        table.add_row(
            r["run_id"],
            run_status(r),
            str(r.get("started_at") or ""),
            num(r.get("seconds")),
            num(r.get("rows_read")),
            written(r),
            (r.get("error") or "")[:80],
        )
    return table


def task_history_table(ref: str, task: str, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=f"Runs of task {task} of {ref}", title_justify="left")
    for col in ("RUN", "STATUS", "STARTED", "SECONDS", "READ", "+", "~", "±", "-", "ERROR"):
        table.add_column(col, justify="left" if col in ("RUN", "STATUS", "STARTED", "ERROR") else "right")
    for r in rows:
        table.add_row(
            r["run_id"],
            run_status(r),
            str(r.get("started_at") or ""),
            num(r.get("seconds")),
            num(r.get("rows_read")),
            num(r.get("inserted")),
            num(r.get("updated")),
            num(r.get("upserted")),  # through an upsert script: inserted or updated
            num(r.get("deleted")),
            (r.get("error") or "")[:80],
        )
    return table


def status_header(info: dict[str, Any]) -> str:
    daemon = info["daemon"]
    parts = [
        f"daemon: running ({daemon['holder']}, since {daemon['since']})" if daemon else "daemon: not running",
        f"scheduling: paused since {info['since']} by {info['by']}" if info["paused"] else "scheduling: on",
        f"revision {info['revision']}"
        + (f" (git {info['git_commit'][:12]})" if info.get("git_commit") else ""),
    ]
    return " · ".join(parts)


def status_table(info: dict[str, Any]) -> Table:
    from rich.table import Table

    table = Table(title_justify="left")
    for col in ("JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "ROWS", "NOW"):
        table.add_column(col, justify="right" if col == "ROWS" else "left")
    for job in info["jobs"]:
        schedule = job["schedule"]
        when = f"{schedule['cron']} ({schedule.get('timezone', 'UTC')})" if schedule else ""
        if job.get("continuous"):
            when = f"continuous (max latency {job['continuous'].get('max_latency', '5s')})"
        if job["after"]:
            when = ", ".join(
                filter(
                    None, [when, *(f"after {t['job']} {t.get('when', 'succeeded')}" for t in job["after"])]
                )
            )
        last = job["last_run"]
        now = []
        if job["running"]:
            now.append(f"running {job['running']['run_id']}")
        if job["pending_update"]:
            now.append("update pending")
        if job["suspended"]:
            now.append("suspended")
        if job.get("inactive_tasks"):
            now.append(f"{len(job['inactive_tasks'])} task(s) inactive")
        now.extend(
            f"{lag['task']}: {lag_text(lag)}"
            for lag in [*(job.get("cdc_lag") or []), *(job.get("messages_lag") or [])]
        )
        table.add_row(
            job["job"],
            when or "-",
            str(job["next_run"] or "-"),
            f"{run_status(last)} {last['finished_at'] or last['started_at']}" if last else "-",
            written(last) if last else "-",
            ", ".join(now) or "-",
        )
    return table


def lag_warnings(info: dict[str, Any]) -> list[str]:
    """A line for each cdc task whose source keeps more log than its `changes.max_lag`."""
    return [
        f"warning: job {job['job']}, task {lag['task']!r}: the source keeps {size(lag['retained_bytes'])} "
        f"of log for slot {lag['slot']}, past max_lag {size(lag['max_lag'])}: run the job, or drop the "
        "slot if the task is gone"
        for job in info["jobs"]
        for lag in job.get("cdc_lag") or []
        if lag.get("over_max_lag")
    ]

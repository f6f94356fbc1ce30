"""Applied objects: the `get` tables, `describe`'s text and a job's `tasks`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.cli.render.cells import inactive_tasks, lag_text, pointer_text, run_status, written

if TYPE_CHECKING:
    from rich.table import Table


def objects_table(objects: list[Any], kind: str) -> Table:
    from rich.table import Table

    table = Table(title=f"{kind}s", title_justify="left")
    table.add_column("NAMESPACE")
    table.add_column("NAME")
    if kind == "Job":
        table.add_column("SOURCE → TARGET")
        table.add_column("TASKS", justify="right")
        table.add_column("SCHEDULE")
    else:
        table.add_column("TYPE")
    table.add_column("REVISION", justify="right")
    table.add_column("FILE")
    for o in objects:
        spec = o.document["spec"]
        if kind == "Job":
            schedule = spec.get("schedule")
            extra = [
                f"{_end(spec.get('source'))} → {spec.get('target', 'change logs')}",
                str(len(spec["tasks"])) if "tasks" in spec else spec.get("type", "-"),
                f"{schedule['cron']} ({schedule.get('timezone', 'UTC')})" if schedule else "-",
            ]
        else:
            extra = [spec["type"]]
        table.add_row(o.namespace, o.name, *extra, str(o.revision_id), f"{o.file}:{o.line}")
    return table


def describe_text(info: dict[str, Any]) -> str:
    import yaml

    rev = info["revision"]
    commit = rev["git_commit"] or "not in git"
    if rev["git_dirty"]:
        commit += " (dirty)"
    lines = [
        f"{info['kind']} {info['namespace']}/{info['name']}",
        f"  defined at:  {info['file']}:{info['line']}",
        f"  revision:    {rev['id']}, applied {rev['applied_at']} by {rev['user']}, commit {commit}",
    ]
    if schedule := info.get("schedule"):
        lines.append(f"  schedule:    {schedule['cron']} ({schedule['timezone']}): {schedule['in_words']}")
    if around := info.get("around"):
        lines.append(f"  log level:   {around['log_level']}")
        lines += [f"  event:       {e}" for e in around["events"]]
        lines += [f"  notify:      {n}" for n in around["notify"]]
    if "next_runs" in info:
        lines.append("  next runs:   " + (", ".join(info["next_runs"]) or "no schedule"))
        for i, r in enumerate(info["last_runs"]):
            label = "last run:   " if i == 0 else "earlier run:"
            lines.append(f"  {label} {r['run_id']} {run_status(r)} ({written(r)} rows written)")
    if inactive := inactive_tasks(info["document"]):
        lines.append(f"  inactive:    {', '.join(inactive)} (active: false: every run skips them)")
    for task, changes in info.get("table_changes", {}).items():
        if text := table_changes_text(changes):  # the defaults go without saying
            lines.append(f"  task {task}:  {text}")
    for task, steps in info.get("transforms", {}).items():
        lines += [f"  task {task}:  transforms[{i}]: {step}" for i, step in enumerate(steps)]
    lines.append("")
    lines.append(yaml.safe_dump(info["document"], sort_keys=False, allow_unicode=True).rstrip())
    return "\n".join(lines)


def table_changes_text(changes: dict[str, Any]) -> str:
    """`schema_changes add, drop_columns, truncate_strings`: the settings that differ from the
    defaults (add_and_widen, neither of the others); "" when none does."""
    mode = changes.get("schema_changes", "add_and_widen")
    on = [name for name in ("drop_columns", "truncate_strings") if changes.get(name)]
    return ", ".join(([f"schema_changes {mode}"] if mode != "add_and_widen" else []) + on)


def changes_text(r: dict[str, Any]) -> str:
    """A task's strategy, delete mode (a load_folder job's tasks have none), history mode and
    what is done to its table first."""
    text = r["strategy"] + (f", deletes {r['deletes']}" if r.get("deletes") else "")
    if r.get("history"):
        text += ", history"
    if r.get("before_run") not in (None, "keep"):
        text += f", {r['before_run']} first"
    return text


def tasks_table(ref: str, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title=f"Tasks of {ref}", title_justify="left")
    for col in ("TASK", "SOURCE → TARGET", "CHANGES", "POINTER", "LAST RUN", "STATUS", "WRITTEN"):
        table.add_column(col, justify="right" if col == "WRITTEN" else "left")
    for r in rows:
        last = r["last_run"]
        state = r.get("state") if r.get("state") in ("new", "dropped_in_source") else None
        table.add_row(
            r["task"]
            + ("" if r.get("active", True) else " (inactive)")
            + (f" ({state.replace('_', ' ')})" if state else ""),
            f"{r['source'] or '-'} → {r['target'] or '-'}",
            changes_text(r) + _backfill_text(r) + (f", {text}" if (text := table_changes_text(r)) else "")
            if r["strategy"]
            else "-",
            pointer_text(r["pointer"])
            if r["strategy"] == "watermark"
            else (pointer_text(r["pointer"]) + (f", {lag_text(r['lag'])}" if r.get("lag") else ""))
            if r["strategy"] == "cdc"
            else lag_text(r["lag"])  # a consuming task: the messages waiting
            if r.get("lag")
            else "-",
            f"{last['run_id']}" if last else "-",
            run_status(last) if last else "-",
            written(last) if last else "-",
        )
    return table


def _backfill_text(row: dict[str, Any]) -> str:
    """`, from 2024-01-01 by 7d, in Europe/Berlin`: a task's start, window and time zone."""
    text = ""
    if row.get("start") is not None:
        text += f", from {row['start']}"
    if row.get("window") is not None:
        text += f" by {row['window']}"
    if row.get("timezone"):
        text += f", in {row['timezone']}"
    return text


def _end(source: Any) -> str:
    """A job's source as a listing shows it: a connection, or a writer's reader job."""
    return f"job {source['job']}" if isinstance(source, dict) else str(source)

"""Pure formatters: data in, text out. Printing happens in the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.errors import Problem

SYMBOL = {"create": "+", "update": "~", "delete": "-", "unchanged": " "}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def problems_text(problems: list[Problem]) -> str:
    lines = [str(p) for p in problems]
    lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found")
    return "\n".join(lines)


def warnings_text(warnings: list[Problem]) -> str:
    """`file:line:col: field: warning: message (hint: …)`, one a line."""
    return "\n".join(str(Problem(w.location, f"warning: {w.message}", w.hint)) for w in warnings)


def problems_github(problems: list[Problem], level: str = "error") -> str:
    """GitHub Actions workflow commands: each problem (or warning, with `level="warning"`)
    becomes an annotation on its line."""
    out = []
    for p in problems:
        loc = p.location
        props = [f"file={_escape_property(loc.file)}"]
        if loc.line:
            props.append(f"line={loc.line}")
        if loc.col:
            props.append(f"col={loc.col}")
        message = f"{loc.field}: {p.message}" if loc.field else p.message
        if p.hint:
            message += f" (hint: {p.hint})"
        out.append(f"::{level} {','.join(props)}::{_escape_data(message)}")
    return "\n".join(out)


def problems_json(problems: list[Problem], warnings: list[Problem] | None = None) -> str:
    return json.dumps(
        {
            "valid": not problems,
            "problems": [p.as_dict() for p in problems],
            "warnings": [w.as_dict() for w in warnings or []],
        },
        indent=2,
    )


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def plan_text(plan: dict[str, Any], show_unchanged: bool = False) -> str:
    """Terraform-style: one line per object, changed fields (old → new) under updates."""
    changes = plan["changes"]
    counts = {a: sum(1 for c in changes if c["action"] == a) for a in SYMBOL}
    lines = []
    for c in changes:
        if c["action"] == "unchanged" and not show_unchanged:
            continue
        where = f"{c['file']}:{c['line']}" if c["file"] else ""
        lines.append(
            f"  {SYMBOL[c['action']]} {c['kind']} {c['namespace']}/{c['name']}"
            + (f"    ({where})" if where else "")
        )
        if c["action"] == "update":
            for f in c["fields"]:
                if f["old"] is None:
                    lines.append(f"      + {f['path']}: {_value(f['new'])}")
                elif f["new"] is None:
                    lines.append(f"      - {f['path']}: {_value(f['old'])}")
                else:
                    lines.append(f"      ~ {f['path']}: {_value(f['old'])} → {_value(f['new'])}")
    summary = (
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['delete']} to delete, {counts['unchanged']} unchanged."
    )
    if not any(counts[a] for a in ("create", "update", "delete")):
        return f"No changes. The applied state matches the definitions ({counts['unchanged']} objects)."
    return "\n".join([summary, "", *lines])


def objects_table(objects: list[Any], kind: str) -> Table:
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
                f"{spec['source']} → {spec['target']}",
                str(len(spec["tasks"])),
                f"{schedule['cron']} ({schedule.get('timezone', 'UTC')})" if schedule else "-",
            ]
        else:
            extra = [spec["type"]]
        table.add_row(o.namespace, o.name, *extra, str(o.revision_id), f"{o.file}:{o.line}")
    return table


def history_table(ref: str, runs: list[dict[str, Any]]) -> Table:
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
            _num(r.get("seconds")),
            _num(r.get("rows_read")),
            written(r),
            (r.get("error") or "")[:80],
        )
    return table


def run_status(run: dict[str, Any]) -> str:
    """`succeeded`, `succeeded (dry run)`, `failed (limited)`: a test run never passes for a real one."""
    mode = run.get("mode") or "normal"
    return run["status"] + ("" if mode == "normal" else f" ({mode.replace('-', ' ')})")


def written(run: dict[str, Any]) -> str:
    """Rows written; a dry run's are rows it would have written: `would 1,234`."""
    if run.get("mode") == "dry-run":
        return f"would {_num(run.get('rows_would_write') or 0)}"
    return _num(run.get("rows_written"))


def _num(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


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


def pointer_text(pointer: dict[str, str] | None) -> str:
    return f"{pointer['value']} ({pointer['type']})" if pointer else "none"


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


def run_text(record: dict[str, Any]) -> str:
    flags = " ".join(
        f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in record["options"].items()
    )
    lines = [
        f"run {record['run_id']} of job {record['namespace']}/{record['job']}: {record['status']} "
        f"in {record['seconds']:.2f} s ({record['source']} → {record['target']})"
        + (f" [{flags}]" if flags else "")
    ]
    dry = record.get("mode") == "dry-run"
    for t in record["tasks"]:
        if t["status"] == "skipped":
            lines.append(f"  task {t['name']}: skipped")
            continue
        line = (
            f"  task {t['name']} ({t['strategy']}): {t['status']}, {t['rows_read']:,} rows read → "
            + ("would be " if dry else "")
            + f"{written_text(t)}, {t['unchanged']:,} unchanged in {t['target']} ({t['seconds']:.2f} s)"
        )
        if t["pointer_after"] != t["pointer_before"]:
            line += f"\n    pointer: {pointer_text(t['pointer_before'])} → {pointer_text(t['pointer_after'])}"
        if t["error"]:
            line += f"\n    error: {t['error']}"
        lines.append(line)
    if dry:
        lines.append(
            f"dry run: nothing was written (it would write {record.get('rows_would_write', 0):,} rows)"
        )
    elif record.get("mode") == "limited":
        lines.append(f"limited run: at most {record['options'].get('limit')} rows read a task")
    lines.append(f"history: {record['path']}")
    return "\n".join(lines)


def pointers_table(ref: str, rows: list[dict[str, Any]]) -> Table:
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


def log_line(entry: dict[str, Any]) -> str:
    fields = " ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
        for k, v in entry.items()
        if k not in ("ts", "level", "message")
    )
    level = str(entry.get("level", "")).upper()
    return f"{entry.get('ts', '')} {level:7} {entry.get('message', '')} {fields}".rstrip()


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
    if "next_runs" in info:
        lines.append("  next runs:   " + (", ".join(info["next_runs"]) or "no schedule"))
        for r in info["last_runs"]:
            lines.append(f"  last run:    {r['run_id']} {run_status(r)} ({written(r)} rows written)")
    lines.append("")
    lines.append(yaml.safe_dump(info["document"], sort_keys=False, allow_unicode=True).rstrip())
    return "\n".join(lines)


def switches_text(switches: dict[str, Any]) -> str:
    """The runtime switches a plan does not change, so a reviewer is not surprised."""
    lines = []
    if switches["paused"]:
        lines.append(f"Scheduling is paused (since {switches['since']}, by {switches['by']}).")
    for s in switches["suspended"]:
        lines.append(f"Job {s['job']} is suspended (since {s['since']}, by {s['by']}).")
    return ("\n" + "\n".join(lines)) if lines else ""


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
    table = Table(title_justify="left")
    for col in ("JOB", "SCHEDULE", "NEXT RUN", "LAST RUN", "ROWS", "NOW"):
        table.add_column(col, justify="right" if col == "ROWS" else "left")
    for job in info["jobs"]:
        schedule = job["schedule"]
        when = f"{schedule['cron']} ({schedule.get('timezone', 'UTC')})" if schedule else ""
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
        table.add_row(
            job["job"],
            when or "-",
            str(job["next_run"] or "-"),
            f"{run_status(last)} {last['finished_at'] or last['started_at']}" if last else "-",
            written(last) if last else "-",
            ", ".join(now) or "-",
        )
    return table


def tasks_table(ref: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Tasks of {ref}", title_justify="left")
    for col in ("TASK", "SOURCE → TARGET", "CHANGES", "POINTER", "LAST RUN", "STATUS", "WRITTEN"):
        table.add_column(col, justify="right" if col == "WRITTEN" else "left")
    for r in rows:
        last = r["last_run"]
        table.add_row(
            r["task"],
            f"{r['source']} → {r['target']}",
            f"{r['strategy']}, deletes {r['deletes']}",
            pointer_text(r["pointer"]) if r["strategy"] == "watermark" else "-",
            f"{last['run_id']}" if last else "-",
            run_status(last) if last else "-",
            written(last) if last else "-",
        )
    return table


def task_history_table(ref: str, task: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Runs of task {task} of {ref}", title_justify="left")
    for col in ("RUN", "STATUS", "STARTED", "SECONDS", "READ", "+", "~", "±", "-", "ERROR"):
        table.add_column(col, justify="left" if col in ("RUN", "STATUS", "STARTED", "ERROR") else "right")
    for r in rows:
        table.add_row(
            r["run_id"],
            run_status(r),
            str(r.get("started_at") or ""),
            _num(r.get("seconds")),
            _num(r.get("rows_read")),
            _num(r.get("inserted")),
            _num(r.get("updated")),
            _num(r.get("upserted")),  # through an upsert script: inserted or updated
            _num(r.get("deleted")),
            (r.get("error") or "")[:80],
        )
    return table


def keys_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="API keys", title_justify="left")
    for col in ("NAME", "SCOPE", "CREATED", "BY"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["scope"], r["created_at"], r["created_by"])
    return table


CHECK_MARK = {True: "ok", False: "FAILED", None: "-"}


def connection_tests_text(results: list[dict[str, Any]]) -> str:
    """One block per connection: its verdict and server, then each check with its detail."""
    lines = []
    for r in results:
        server = f", {r['server']}" if r["server"] else ""
        lines.append(f"{r['connection']} ({r['type']}{server}): {'ok' if r['ok'] else 'FAILED'}")
        for c in r["checks"]:
            lines.append(f"  {c['check']:8} {CHECK_MARK[c['ok']]:7} {c['detail']}")
    return "\n".join(lines)


def discover_yaml(info: dict[str, Any]) -> str:
    """The discovered tables as YAML comments, then the task list, ready to paste under a
    job's `tasks:` (the comments say each column's type as runner maps it)."""
    import yaml

    where = f"schema {info['schema']}" if info["schema"] else "its default schema"
    lines = [f"# {info['connection']} ({info['type']}), {where}: {len(info['tables'])} table(s)"]
    for t in info["tables"]:
        columns = ", ".join(
            f"{c['name']} {c['type'] or c['declared'] + ' (not supported: cast it in a query)'}"
            + (" (key)" if c["name"] in t["primary_key"] else "")
            for c in t["columns"]
        )
        note = "" if t["primary_key"] else " — no primary key: copied in full each run"
        lines.append(f"# {t['name']}: {columns}{note}")
    if info["tasks"]:
        text = yaml.safe_dump(info["tasks"], sort_keys=False, default_flow_style=None, allow_unicode=True)
        lines.append(text.rstrip())
    return "\n".join(lines)

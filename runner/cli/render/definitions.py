"""Problems (text, JSON, GitHub annotations), plans and the runtime switches a plan shows."""

from __future__ import annotations

import json
from typing import Any

from runner.cli.render.cells import inactive_tasks
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


def plan_text(
    plan: dict[str, Any], show_unchanged: bool = False, expansions: dict[str, dict[str, Any]] | None = None
) -> str:
    """Terraform-style: one line per object, changed fields (old → new) under updates; under a
    sync_all job, with `expansions` (`plan --expand`), the tables it expands to."""
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
        if c["kind"] == "Job" and c["action"] != "delete" and (inactive := inactive_tasks(c["after"] or {})):
            lines.append(f"      (inactive: {', '.join(inactive)}: every run skips them)")
        if (expanded := (expansions or {}).get(f"{c['namespace']}/{c['name']}")) is not None:
            lines.extend(expansion_lines(expanded))
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
        same = f"No changes. The applied state matches the definitions ({counts['unchanged']} objects)."
        return "\n".join([same, "", *lines]) if expansions else same
    return "\n".join([summary, "", *lines])


def expansion_lines(expanded: dict[str, Any]) -> list[str]:
    """A sync_all job's tables, one a line: `+ table orders → stg_orders (watermark on
    updated_at, keys id) [new]`, `! table notes: dropped in the source (kept in the target)`."""
    schema = f"schema {expanded['schema']}" if expanded["schema"] else "the default schema"
    rows = expanded["tables"]
    chosen = [r for r in rows if r["state"] != "dropped_in_source"]
    lines = [f"      tables of {schema} of {expanded['source']}: {len(chosen)} chosen"]
    for r in rows:
        if r["state"] == "dropped_in_source":
            lines.append(f"      ! task {r['task']}: dropped in the source (its target table is kept)")
            continue
        how = r["strategy"] + (f" on {r['column']}" if r["column"] else "")
        if r["keys"]:
            how += f", keys {', '.join(r['keys'])}"
        mark = "+" if r["state"] == "new" else " "
        lines.append(
            f"      {mark} table {r['source']} → {r['target']} ({how})"
            + (" [new]" if r["state"] == "new" else "")
        )
    return lines


def switches_text(switches: dict[str, Any]) -> str:
    """The runtime switches a plan does not change, so a reviewer is not surprised."""
    lines = []
    if switches["paused"]:
        lines.append(f"Scheduling is paused (since {switches['since']}, by {switches['by']}).")
    for s in switches["suspended"]:
        lines.append(f"Job {s['job']} is suspended (since {s['since']}, by {s['by']}).")
    return ("\n" + "\n".join(lines)) if lines else ""


# --- plan --data: what the next runs would do ------------------------------------------


def _counts(t: dict[str, Any]) -> str:
    parts = [f"+{t['inserted']:,} insert", f"~{t['updated']:,} update", f"-{t['deleted']:,} delete"]
    if t["upserted"]:
        parts.insert(2, f"{t['upserted']:,} upsert (script)")
    return ", ".join(parts) + f", {t['unchanged']:,} unchanged"


def _status_words(t: dict[str, Any]) -> str:
    return {
        "estimate": "ESTIMATE",
        "failed": "FAILED",
        "inactive": "inactive",
        "not_counted": "NOT COUNTED",
        "dropped_in_source": "dropped in the source",
    }.get(t["status"], "")


def _ddl_lines(t: dict[str, Any]) -> list[str]:
    out = []
    for d in t["ddl"]:
        what = (
            f"create table {d['after']}"
            if d["change"] == "create"
            else f"{d['change']} column {d['column']!r}"
        )
        out.append(f"{what}: {d['ddl'] or '(the target kind shows no SQL)'}")
    return out


def data_text(data: dict[str, Any]) -> str:
    """`plan --data` in text: per job, each task's counts, the DDL it would run, and whether a
    count is an estimate (stopped by the time limit) or failed."""
    tasks = data["tasks"]
    head = (
        f"Data: what the next run of each job would do (dry runs, nothing written; "
        f"{data['seconds']:.1f} s of --data-timeout {data['timeout']:g} s)"
    )
    if not tasks:
        return head + "\n  no job to count (unchanged jobs are counted with --data-all)"
    lines = [head]
    job = None
    for t in tasks:
        if t["job"] != job:
            job = t["job"]
            lines.append(f"  {SYMBOL.get(t['action'], '~')} Job {job} ({t['action']})")
        status = _status_words(t)
        if t["status"] in ("inactive", "not_counted", "dropped_in_source"):
            lines.append(f"      task {t['task']}: {status}: {t['note'] or ''}".rstrip(": "))
            continue
        if t["status"] == "failed":
            lines.append(f"      task {t['task']}: FAILED: {t['error']}")
        else:
            mark = f"   [{status}: {t['note']}]" if t["status"] == "estimate" else ""
            lines.append(
                f"      task {t['task']} ({t['strategy']}) → {t['target']}: {t['rows_read']:,} read; "
                f"{_counts(t)}{mark}"
            )
        if t["before_run"]:
            done = "emptied" if t["before_run"] == "truncate" else "dropped and created again"
            lines.append(f"        before_run: the table is {done} first (counted against it as it is now)")
        lines.extend(f"        DDL {d}" for d in _ddl_lines(t))
        if t["note"] and t["status"] == "counted":
            lines.append(f"        note: {t['note']}")
    if data["estimated"]:
        lines.append("  (ESTIMATE: stopped by --data-timeout; the counts so far are lower bounds)")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return " ".join(str(value).split()).replace("|", "\\|")


def plan_markdown(plan: dict[str, Any], data: dict[str, Any] | None = None) -> str:
    """The plan (and with `--data` what the runs would do) as Markdown to paste into a pull
    request: a table of changed objects, a table of tasks with their counts, the DDL in a
    collapsed SQL block."""
    changes = [c for c in plan["changes"] if c["action"] != "unchanged"]
    counts = {a: sum(1 for c in plan["changes"] if c["action"] == a) for a in SYMBOL}
    lines = [
        "### runner plan",
        "",
        f"**{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete**, "
        f"{counts['unchanged']} unchanged.",
        "",
    ]
    if changes:
        lines += ["| | kind | object | file | changed fields |", "|---|---|---|---|---|"]
        for c in changes:
            where = f"`{c['file']}:{c['line']}`" if c["file"] else ""
            fields = ", ".join(f"`{f['path']}`" for f in c["fields"][:8])
            if len(c["fields"]) > 8:
                fields += f" and {len(c['fields']) - 8} more"
            lines.append(
                f"| {c['action']} | {c['kind']} | `{c['namespace']}/{c['name']}` | {where} | "
                f"{_cell(fields) if c['action'] == 'update' else ''} |"
            )
        lines.append("")
    if data is None:
        return "\n".join(lines).rstrip() + "\n"
    lines += [
        "#### Data: what the next runs would do",
        "",
        f"Dry runs of each task, nothing written ({data['seconds']:.1f} s of {data['timeout']:g} s).",
        "",
    ]
    if not data["tasks"]:
        lines.append("No job to count.")
        return "\n".join(lines) + "\n"
    upserts = any(t["upserted"] for t in data["tasks"])
    head = "| job | task | strategy | target | read | insert | update |" + (" upsert |" if upserts else "")
    lines += [
        head + " delete | unchanged | DDL | note |",
        "|---|---|---|---|---:|---:|---:|" + ("---:|" if upserts else "") + "---:|---:|---:|---|",
    ]
    estimated = False
    for t in data["tasks"]:
        mark = "≥ " if t["status"] == "estimate" else ""
        estimated = estimated or t["status"] in ("estimate", "not_counted")
        counted = t["status"] in ("counted", "estimate")

        def n(key: str, t: dict[str, Any] = t, mark: str = mark, counted: bool = counted) -> str:
            return f"{mark}{t[key]:,}" if counted else "–"

        note = {
            "estimate": f"**estimate**: {t['note']}",
            "failed": f"**failed**: {t['error']}",
            "not_counted": f"**not counted**: {t['note']}",
        }.get(t["status"], t["note"] or "")
        if t["before_run"]:
            note = (note + "; " if note else "") + f"before_run: {t['before_run']} first"
        cells = [
            f"`{t['job']}`",
            f"`{t['task']}`",
            t["strategy"],
            f"`{t['target']}`" if t["target"] else "",
            n("rows_read"),
            n("inserted"),
            n("updated"),
            *([n("upserted")] if upserts else []),
            n("deleted"),
            n("unchanged"),
            str(len(t["ddl"])) if t["ddl"] else "",
            _cell(note),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ddl = [(t, d) for t in data["tasks"] for d in t["ddl"] if d["ddl"]]
    if estimated:
        lines += ["", "_≥: an estimate, the task was stopped by `--data-timeout`; its counts so far._"]
    if ddl:
        lines += ["", "<details><summary>DDL the runs would execute</summary>", "", "```sql"]
        for t, d in ddl:
            lines.append(f"-- {t['job']} task {t['task']}")
            lines.append(d["ddl"].rstrip(";") + ";")
        lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"

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

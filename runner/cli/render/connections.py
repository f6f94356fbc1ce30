"""`connections test` verdicts and `discover`'s tables as a task list to paste."""

from __future__ import annotations

from typing import Any

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

"""A job or task change written back to git, as text: the resulting definition, then what
was committed where and whether it was applied."""

from __future__ import annotations

from typing import Any


def change_text(result: dict[str, Any]) -> str:
    import yaml

    lines = []
    if result["definition"] is not None:
        lines.append(yaml.safe_dump(result["definition"], sort_keys=False, allow_unicode=True).rstrip("\n"))
        lines.append("")
    where = f"branch {result['branch']}" if result["branch"] else "the checked-out branch"
    lines.append(f"{result['change']} ({result['file']}): commit {result['commit']} on {where}")
    if result["branch"]:
        lines.append("not applied: merge the branch to apply it")
    elif result.get("applied"):
        lines.append(f"applied (revision {result['revision']})" if result.get("revision") else "applied")
    else:
        lines.append(f"committed, not applied: {result.get('apply_error')}")
    return "\n".join(lines)

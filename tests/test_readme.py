"""README.md stays true to the code: every command is listed, nothing shipped is "on the roadmap"."""

from __future__ import annotations

import re

import typer.main

from runner.cli.app import app
from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    """`validate`, `keys create`, ...: every command of the CLI, sub-commands with their group."""
    group = typer.main.get_command(app)
    out = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subs = getattr(command, "commands", None)
        out.extend(f"{name} {sub}" for sub in subs) if subs else out.append(name)
    return out


def _listed(command: str, block: str) -> bool:
    """`runner NAME …` or `… | NAME …` on a line; a sub-command on its group's line."""
    *group, name = command.split()
    lines = [line for line in block.splitlines() if not group or f"runner {group[0]} " in line]
    lead = f"runner {group[0]}" if group else "runner"
    return any(re.search(rf"({lead}|\|) {name}\b", line) for line in lines)


def test_every_command_is_in_the_commands_list():
    block = README.split("## Commands", 1)[1].split("```", 2)[1]
    assert [c for c in _commands() if not _listed(c, block)] == []


def test_only_the_roadmap_section_speaks_of_the_roadmap():
    body = README.split("## Roadmap", 1)[0]
    assert "on the roadmap" not in body.lower()

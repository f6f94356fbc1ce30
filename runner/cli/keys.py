"""`runner keys create|list|revoke`: the HTTP API's keys."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, err, handles_errors, out
from runner.cli.render import keys as render

keys_app = typer.Typer(help="Keys of the HTTP API: create, list, revoke.", no_args_is_help=True)


class Scope(StrEnum):
    read = "read"
    operate = "operate"


@keys_app.command("create")
@handles_errors
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who or what uses it).")],
    scope: Annotated[
        Scope,
        typer.Option("--scope", help="read: GET only; operate: also runs, cancels, suspends, pointers."),
    ] = Scope.read,
) -> None:
    """Create a key and print it once; only its hash is stored."""
    key = services.keys_create(STATE.workspace, name, scope.value)
    out.print(key, markup=False)
    err.print(f"key {name!r} ({scope.value}): shown once, keep it now", markup=False)


@keys_app.command("list")
@handles_errors
def keys_list(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text) -> None:
    """The keys: name, scope, created when and by whom (never the key)."""
    rows = services.keys_list(STATE.workspace)
    if fmt == Format.json:
        out.print(json.dumps(rows, indent=2), markup=False)
    else:
        out.print(render.keys_table(rows))


@keys_app.command("revoke")
@handles_errors
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: requests with it are refused (401) within a second."""
    services.keys_revoke(STATE.workspace, name)
    out.print(f"key {name!r} revoked", markup=False)

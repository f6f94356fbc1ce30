"""Commands on the connections in connections.d/ (the folder, not the applied state):
`connections test` and discover."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runner import services
from runner.cli.common import STATE, Format, err, handles_errors, out
from runner.cli.render import connections as render

connections_app = typer.Typer(
    help="Look at the connections in connections.d/ (the folder, not the applied state).",
    no_args_is_help=True,
)


@connections_app.command("test")
@handles_errors
def connections_test(
    name: Annotated[
        str | None, typer.Argument(help="name or namespace/name; default: every connection.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """Connect, sign in and show what the server says of itself, then check what the jobs
    need. A database: reading the tables and queries they read (SELECT … WHERE 1 = 0),
    creating a table and a staging table where they write (rolled back; in MariaDB created and
    dropped), and for a cdc task the server's log settings and privileges. A broker, an HTTP
    API (a refused token fails), a folder on FTP or SFTP (the host key checked): reached and
    signed in. Exit 1 when any connection fails, naming it and the reason (secrets redacted)."""
    results = services.connections_test(STATE.workspace, name)
    if fmt == Format.json:
        out.print(json.dumps(results, indent=2, ensure_ascii=False), markup=False)
    else:
        out.print(render.connection_tests_text(results), markup=False)
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        reason = "; ".join(f"{c['check']}: {c['detail']}" for c in r["checks"] if c["ok"] is False)
        err.print(f"error: connection {r['connection']} failed: {reason}", markup=False)
    if failed:
        raise typer.Exit(1)


@handles_errors
def discover(
    connection: Annotated[
        str, typer.Argument(help="name or namespace/name of a connection in connections.d/.")
    ],
    schema: Annotated[
        str | None, typer.Option("--schema", "-s", help="Schema to list. Default: the connection's own.")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
) -> None:
    """List a connection's tables with their columns, types and primary keys, and print a task
    list to paste under a job's `tasks:` (a table with a primary key: keys and the hash
    strategy; without one: copied in full)."""
    info = services.discover(STATE.workspace, connection, schema)
    if fmt == Format.json:
        out.print(json.dumps(info, indent=2, ensure_ascii=False), markup=False)
    else:
        out.print(render.discover_yaml(info), markup=False)

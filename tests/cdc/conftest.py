"""A private PostgreSQL server with `wal_level=logical` for the change data capture tests.

The shared server runs `wal_level=replica` and must not be reconfigured, so this session
starts its own: `initdb` and `pg_ctl` from /usr/lib/postgresql/15/bin, run as the `postgres`
system user (initdb refuses root, and tests and CI run as root), in a temporary folder, on a
free loopback port, trust authentication; stopped and removed when the session ends. Each test
gets a fresh database on it (`cdc_url`). Without the binaries the tests skip, unless
RUNNER_REQUIRE_SERVICES=1, where they fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_BIN = Path(os.environ.get("RUNNER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _missing(reason: str) -> None:
    if os.environ.get("RUNNER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (RUNNER_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    """A command run as the `postgres` system user when this process is root."""
    if os.geteuid() != 0:
        return args
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *args]


class PrivateServer:
    def __init__(self, folder: Path, port: int):
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.admin_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args]),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self.ctl("-l", str(self.folder / "server.log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self.ctl("-m", mode, "stop")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def logical_pg() -> Iterator[PrivateServer]:
    if not (PG_BIN / "initdb").exists():
        _missing(f"PostgreSQL binaries not found in {PG_BIN}")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            _missing("no `postgres` system user to run a private PostgreSQL as (initdb refuses root)")
    folder = Path(tempfile.mkdtemp(prefix="runner-cdc-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    server = PrivateServer(folder, _free_port())
    try:
        subprocess.run(
            _as_postgres(
                [
                    str(PG_BIN / "initdb"),
                    "-D",
                    str(server.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{folder}'\n"
                "wal_level = logical\nmax_replication_slots = 40\nmax_wal_senders = 20\n"
                "fsync = off\nfull_page_writes = off\n"
            )
        server.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        _missing(f"cannot start a private PostgreSQL: {exc.stderr.decode(errors='replace').strip()}")
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cdc_url(logical_pg: PrivateServer) -> Iterator[str]:
    """A fresh database on the private server; its slots are dropped with it."""
    name = f"cdc_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(logical_pg.admin_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.make_url(logical_pg.admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = %s AND NOT active",
            (name,),
        )
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()

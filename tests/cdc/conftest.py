"""A private PostgreSQL server with `wal_level=logical` for the change data capture tests.

The shared server runs `wal_level=replica` and must not be reconfigured, so this session
starts its own: `initdb` and `pg_ctl` from /usr/lib/postgresql/15/bin, run as the `postgres`
system user (initdb refuses root, and tests and CI run as root), in a temporary folder, on a
free loopback port, trust authentication; stopped and removed when the session ends. Each test
gets a fresh database on it (`cdc_url`). Without the binaries the tests skip, unless
RUNNER_REQUIRE_SERVICES=1, where they fail.

MariaDB likewise (`binlog_maria`, `binlog_url`): the shared server on 3306 writes no binlog,
so a private `mariadbd` (datadir made by `mariadb-install-db`) runs with `log_bin`,
`binlog_format=ROW`, `binlog_row_image=FULL`, `binlog_row_metadata=FULL` and a `server_id`, on
a free loopback port with its unix socket in the temporary folder, as the current user
(`--user=root` when that is root, which mariadbd otherwise refuses).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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


MARIADBD = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which(
    "mariadb-install-db", path="/usr/bin:/usr/sbin"
)


class PrivateMariadb:
    """A private mariadbd writing a row-based binlog."""

    def __init__(self, folder: Path, port: int):
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.admin_url = f"mariadb+pymysql://root@127.0.0.1:{port}/mysql"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        user = ["--user=root"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [
                str(MARIADBD),
                "--no-defaults",
                f"--datadir={self.data}",
                *user,
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.folder / 'mariadb.sock'}",
                f"--pid-file={self.folder / 'mariadb.pid'}",
                f"--log-error={self.folder / 'server.log'}",
                f"--log-bin={self.data / 'binlog'}",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                "--binlog-row-metadata=FULL",
                "--server-id=1",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=2",
                "--sync-binlog=0",
                "--max-connections=200",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        engine = sa.create_engine(self.admin_url, poolclass=sa.NullPool)
        try:
            while True:
                try:
                    with engine.connect() as conn:
                        conn.exec_driver_sql("SELECT 1")
                    return
                except sa.exc.OperationalError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        log = (self.folder / "server.log").read_text(errors="replace")[-2000:]
                        raise RuntimeError(f"mariadbd did not start: {log}") from None
                    time.sleep(0.2)
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def binlog_maria() -> Iterator[PrivateMariadb]:
    if MARIADBD is None or INSTALL_DB is None:
        _missing("MariaDB binaries (mariadbd, mariadb-install-db) not found")
    folder = Path(tempfile.mkdtemp(prefix="runner-cdc-maria-"))
    server = PrivateMariadb(folder, _free_port())
    user = ["--user=root"] if os.geteuid() == 0 else []
    try:
        subprocess.run(
            [
                str(INSTALL_DB),
                "--no-defaults",
                f"--datadir={server.data}",
                *user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )
        server.start()
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        said = (
            exc.stderr.decode(errors="replace").strip()
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        _missing(f"cannot start a private MariaDB: {said}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def binlog_url(binlog_maria: PrivateMariadb) -> Iterator[str]:
    """A fresh database on the private MariaDB."""
    name = f"cdc_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(binlog_maria.admin_url, poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    yield sa.make_url(binlog_maria.admin_url).set(database=name).render_as_string(hide_password=False)
    if binlog_maria.process is not None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    admin.dispose()

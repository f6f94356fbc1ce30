"""Shared fixtures: a temporary definitions folder, real PostgreSQL and MariaDB databases
(one per test, dropped afterwards), and a clean environment for `${env:}` secrets.

Tests that need a server skip with the reason when it is unreachable, unless
RUNNER_REQUIRE_SERVICES=1 (CI), where an unreachable server fails them.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runner import services

REPO = Path(__file__).resolve().parent.parent
# Two SQLite connections, src and dst, and a task between them: what most definition tests need.
TWO_SQLITE = """
apiVersion: runner/v1
kind: Connection
metadata: {name: src}
spec: {type: sqlite, url: "sqlite:///src.db"}
---
apiVersion: runner/v1
kind: Connection
metadata: {name: dst}
spec: {type: sqlite, url: "sqlite:///dst.db"}
"""
TASK = "- {name: t, read: {table: a}, write: {table: b}}"
PG_ADMIN = os.environ.get("RUNNER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MARIA_ADMIN = os.environ.get("RUNNER_TEST_MARIADB", "mariadb+pymysql://root@127.0.0.1:3306/test")


def _unreachable(what: str, exc: Exception) -> None:
    reason = f"{what} unreachable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if os.environ.get("RUNNER_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (RUNNER_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def rabbitmq_connection() -> Any:
    """A blocking pika connection to the RabbitMQ of this machine, or the test skipped (failed
    under RUNNER_REQUIRE_SERVICES=1) with the reason."""
    import pika
    from pika import exceptions

    try:
        return pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, connection_attempts=1))
    except exceptions.AMQPError as exc:
        _unreachable("RabbitMQ at 127.0.0.1:5672", exc)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RUNNER_* settings leak in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("RUNNER_") and name not in (
            "RUNNER_REQUIRE_SERVICES",
            "RUNNER_TEST_PG",
            "RUNNER_TEST_MARIADB",
        ):
            monkeypatch.delenv(name)


def _fresh_database(
    server: str, admin_url: str, create: str, drop: str, **engine_options: object
) -> Iterator[str]:
    """Create a database named for this test, yield its URL, drop it afterwards."""
    name = f"runner_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, poolclass=sa.NullPool, **engine_options)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(create.format(name=name))
            conn.commit()
    except sa.exc.OperationalError as exc:
        _unreachable(server, exc)
    yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(drop.format(name=name))
        conn.commit()
    admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (URL without password: trust auth)."""
    yield from _fresh_database(
        "PostgreSQL",
        PG_ADMIN,
        'CREATE DATABASE "{name}"',
        'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        isolation_level="AUTOCOMMIT",
    )


@pytest.fixture
def maria_url() -> Iterator[str]:
    """A fresh MariaDB database for this test."""
    yield from _fresh_database(
        "MariaDB",
        MARIA_ADMIN,
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        "DROP DATABASE IF EXISTS `{name}`",
    )


class Project:
    """A definitions folder in tmp_path with helpers to write files and call the service."""

    def __init__(self, root: Path):
        self.root = root
        (root / "jobs.d").mkdir(parents=True, exist_ok=True)
        (root / "connections.d").mkdir(parents=True, exist_ok=True)
        self.ws = services.Workspace(root)

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def connection(self, name: str, type_: str, url: str, folder: str = "") -> Path:
        return self.write(
            f"connections.d/{folder}{name}.yaml",
            f"""
            apiVersion: runner/v1
            kind: Connection
            metadata: {{name: {name}}}
            spec: {{type: {type_}, url: "{url}"}}
            """,
        )

    def job(self, name: str, source: str, target: str, tasks: str, extra: str = "", folder: str = "") -> Path:
        body = textwrap.indent(textwrap.dedent(tasks).strip("\n"), "    ")
        return self.write(
            f"jobs.d/{folder}{name}.yaml",
            f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n"
            f"  source: {source}\n  target: {target}\n{extra}  tasks:\n{body}\n",
        )

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "project")
    yield p
    p.close()


@pytest.fixture
def demo_project(tmp_path: Path) -> Iterator[Project]:
    """The bundled jobs.d/ and connections.d/ copied into tmp_path, with the demo source."""
    root = tmp_path / "demo"
    for folder in ("jobs.d", "connections.d"):
        shutil.copytree(REPO / folder, root / folder)
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, str(REPO / "demo" / "make_source.py"), str(root / "demo/data/shop.db"), "2000"],
        check=True,
        capture_output=True,
    )
    p = Project(root)
    yield p
    p.close()

"""The connection fields of the SQL kinds: a `url` whose secrets are referenced, never written
out, and for servers a `connect_timeout`; each kind's model narrows the URL's scheme.

They live with the SQL kinds, not in `runner.definitions`: a kind that is not SQL (a file, a
queue) has no URL, and validation reaches these fields only through the models the kinds
register.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from runner.definitions import secrets
from runner.definitions.models import DURATION_HELP, HINT, ConnectionSpec, Duration


class SqlConnectionSpec(ConnectionSpec):
    """A connection SQLAlchemy opens from a URL; each SQL kind narrows the URL's scheme."""

    url: str = Field(
        description=(
            "SQLAlchemy-style URL. Secrets are referenced, never written out: ${env:NAME} or "
            "${file:path} (relative to the definitions folder)."
        )
    )

    @field_validator("url")
    @classmethod
    def _references_only(cls, url: str) -> str:
        problems = secrets.check_references(url)
        if problems:
            raise ValueError("; ".join(problems))
        where = secrets.literal_password(url)
        if where:
            raise ValueError(
                f"the URL holds a literal {where}{HINT}reference the secret instead, e.g. "
                "postgresql://user:${env:SHOP_PASSWORD}@host/db or ${file:secrets/shop}"
            )
        return url


class ServerConnectionSpec(SqlConnectionSpec):
    """A connection to a database server (not a file): a server that does not answer is given
    up on after `connect_timeout`, instead of hanging the run."""

    connect_timeout: Duration = Field(
        10.0,
        description=(
            "How long to wait for the server to accept a connection and answer its handshake "
            f"({DURATION_HELP}); then the run fails (retried by the daemon when `retry` is set)."
        ),
    )


class SqliteConnection(SqlConnectionSpec):
    type: Literal["sqlite"] = Field(description="SQLite database file.")
    url: str = Field(
        description=(
            "`sqlite:///relative/path.db` (relative to the definitions folder) or "
            "`sqlite:////absolute/path.db`."
        )
    )

    @field_validator("url")
    @classmethod
    def _sqlite_url(cls, url: str) -> str:
        if not url.startswith("sqlite:///"):
            raise ValueError("a sqlite URL starts with sqlite:/// followed by the database file path")
        return url


class PostgresqlConnection(ServerConnectionSpec):
    type: Literal["postgresql"] = Field(description="PostgreSQL, through psycopg 3.")
    url: str = Field(description="`postgresql://user:${env:PW}@host:5432/db` (or `postgresql+psycopg://`).")

    @field_validator("url")
    @classmethod
    def _postgresql_url(cls, url: str) -> str:
        if not url.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("a postgresql URL starts with postgresql:// or postgresql+psycopg://")
        return url


class MariadbConnection(ServerConnectionSpec):
    type: Literal["mariadb"] = Field(description="MariaDB or MySQL, through PyMySQL.")
    url: str = Field(description="`mariadb://user:${env:PW}@host:3306/db` (or mysql://, +pymysql).")

    @field_validator("url")
    @classmethod
    def _mariadb_url(cls, url: str) -> str:
        if not url.startswith(("mariadb://", "mariadb+pymysql://", "mysql://", "mysql+pymysql://")):
            raise ValueError("a mariadb URL starts with mariadb://, mysql:// or their +pymysql forms")
        return url

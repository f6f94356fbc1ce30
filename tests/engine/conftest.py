"""Databases of each dialect for engine tests: `source` and `target` are parametrised over
SQLite, PostgreSQL and MariaDB (in the style of dlt's `destinations_configs`); `make_database`
gives one of a named dialect. Servers are requested lazily, so SQLite-only cases need none."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

DIALECTS = ("sqlite", "postgresql", "mariadb")


# --- databases -----------------------------------------------------------------------------


@dataclass
class Database:
    """A fresh database of one dialect; `url` is what the connection definition holds."""

    dialect: str
    url: str

    def __post_init__(self) -> None:
        url = sa.make_url(self.url)
        if self.dialect == "mariadb":
            url = url.update_query_dict({"charset": "utf8mb4"})
        self.engine = sa.create_engine(url, poolclass=sa.NullPool)

    @property
    def mark(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A plain DBAPI cursor; committed when the block ends without error."""
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            yield cursor
            cursor.close()
            conn.commit()
        finally:
            conn.close()

    def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        with self.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())


def _database(
    request: pytest.FixtureRequest, tmp_path: Path, role: str, dialect: str | None = None
) -> Iterator[Database]:
    dialect = dialect or request.param
    if dialect == "sqlite":
        url = f"sqlite:///{(tmp_path / f'{role}.db').resolve()}"  # four slashes: absolute path
    else:
        url = request.getfixturevalue("pg_url" if dialect == "postgresql" else "maria_url")
    db = Database(dialect, url)
    yield db
    db.engine.dispose()


@pytest.fixture(params=DIALECTS)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from _database(request, tmp_path, "source")


@pytest.fixture(params=DIALECTS, ids=[f"to-{d}" for d in DIALECTS])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    yield from _database(request, tmp_path, "target")


@pytest.fixture
def make_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str, str], Database]]:
    """`make_database(dialect, role)`: a fresh database (roles keep two of a kind apart)."""
    made: list[Iterator[Database]] = []

    def make(dialect: str, role: str) -> Database:
        gen = _database(request, tmp_path, role, dialect)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        next(gen, None)

"""Each kind's part of the contract suite: a fresh place to keep tables, the canonical types it
gives back exactly, and whether its tables outlive the process (a kill -9). Seeding and reading
back go through the kind's own connector (`Target.open_writer`, `Source.read`), so a new kind
supplies a `HARNESSES` entry and nothing else; the copy matrix (tests/engine) checks the SQL
kinds' values against their plain drivers too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runner.connectors import memory, registry
from runner.connectors.base import Connector
from runner.definitions.tasks import ReadSpec
from runner.streams.types import Column, Row


@dataclass
class Harness:
    kind: str
    spec: dict[str, Any]  # the connection's spec (a fresh database, file or store)
    base_dir: Path
    lacks: frozenset[str] = frozenset()  # canonical type kinds it does not give back as given
    durable: bool = True  # its tables outlive the process: a kill -9 test can run on it
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def with_spec(self, **extra: Any) -> dict[str, Any]:
        """The connection's spec with more fields (a memory kind's fault options)."""
        return {**self.spec, **extra}

    @contextmanager
    def connector(self) -> Iterator[Connector]:
        c = registry.open_connector(f"{self.kind}-harness", self.spec, self.base_dir)
        try:
            yield c
        finally:
            c.close()

    def seed(
        self, table: str, columns: Sequence[Column], rows: Sequence[Row], keys: Sequence[str] = ("id",)
    ) -> None:
        """Upsert `rows` into `table` (created when missing) and commit."""
        with self.connector() as c, c.open_writer(table, list(columns), list(keys)) as w:
            w.stage(list(rows))
            w.merge()
            w.commit()

    def delete(self, table: str, columns: Sequence[Column], keys: Sequence[Row]) -> None:
        """Delete the rows with these `id`s and commit."""
        with self.connector() as c, c.open_writer(table, list(columns), ["id"]) as w:
            w.open_key_stage()
            w.stage_keys(list(keys))
            w.delete_listed()
            w.commit()

    def rows(self, table: str) -> list[Row]:
        """Every row of `table` (none when it does not exist), in order of its first column."""
        with self.connector() as c:
            if not c.table_exists(table):
                return []
            stream = c.read(ReadSpec(table=table), 1000)
            return sorted((row for batch in stream.batches for row in batch), key=lambda r: r[0])


class MemoryHarness(Harness):
    """Seeds and reads the store itself, not through the kind's reader and writer: the memory
    kind is the other end of every exact-value case, the canonical values kept as they are."""

    def seed(
        self, table: str, columns: Sequence[Column], rows: Sequence[Row], keys: Sequence[str] = ("id",)
    ) -> None:
        store = memory.store(self.spec["store"])
        kept = {row[0]: row for row in store.rows(table)}
        kept.update((row[0], tuple(row)) for row in rows)
        store.put(table, columns, kept.values())

    def delete(self, table: str, columns: Sequence[Column], keys: Sequence[Row]) -> None:
        store = memory.store(self.spec["store"])
        gone = {key[0] for key in keys}
        store.put(table, columns, [row for row in store.rows(table) if row[0] not in gone])

    def rows(self, table: str) -> list[Row]:
        return sorted(memory.store(self.spec["store"]).rows(table), key=lambda r: r[0])


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    path = (tmp_path / f"contract-{uuid.uuid4().hex[:8]}.db").resolve()
    return Harness("sqlite", {"type": "sqlite", "url": f"sqlite:///{path}"}, tmp_path)


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    url = request.getfixturevalue("pg_url")
    # an interval is read back as a type runner does not map: durations go to other kinds
    return Harness("postgresql", {"type": "postgresql", "url": url}, tmp_path, frozenset({"duration"}))


def _mariadb(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    url = request.getfixturevalue("maria_url")
    # its TIME is a signed duration (up to 838:59:59): a time of day comes back as a duration
    return Harness("mariadb", {"type": "mariadb", "url": url}, tmp_path, frozenset({"time"}))


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    name = f"contract-{uuid.uuid4().hex}"
    h = MemoryHarness("memory", {"type": "memory", "store": name}, tmp_path, durable=False)
    h.cleanup.append(lambda: memory.forget(name))
    return h


HARNESSES: dict[str, Callable[[pytest.FixtureRequest, Path], Harness]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
    "mariadb": _mariadb,
    "memory": _memory,
}


def make_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if kind not in HARNESSES:
        pytest.fail(f"kind {kind!r} has no contract harness: add one to tests/contract/harness.py")
    return HARNESSES[kind](request, tmp_path)

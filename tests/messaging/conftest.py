"""A publishing job on a real broker, from a small SQLite shop: `shop` makes the source (three
orders) and `publish` writes the broker's connection and the job, applies them and runs it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runner import services
from runner.errors import DefinitionsInvalid, Problem

ORDERS = [(1, "north", "10.50"), (2, "south", "7.00"), (3, "north", "1.25")]

Publish = Callable[..., dict[str, Any]]


@pytest.fixture
def shop(project) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(project.root / "shop.db")
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, region TEXT, amount DECIMAL(10, 2))")
    db.executemany("INSERT INTO orders VALUES (?, ?, ?)", ORDERS)
    db.commit()
    project.connection("shop", "sqlite", "sqlite:///shop.db")
    yield db
    db.close()


def define(project, spec: dict[str, Any], write: dict[str, Any], **task: Any) -> None:
    """The broker's connection `mq` and a job `publish` of the shop's orders to it."""
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mq}\n"
    project.write("connections.d/mq.yaml", f"{head}spec: {json.dumps(spec)}\n")
    task = {
        "name": "orders",
        "read": {"table": "orders"},
        "write": {"keys": ["id"], **write},
        "changes": {"strategy": "hash"},
        **task,
    }
    project.job("publish", "shop", "mq", f"- {json.dumps(task)}")


@pytest.fixture
def publish(project, shop) -> Publish:
    """Define (when given a spec and a write), apply and run the job; its task's result."""

    def run(spec: dict[str, Any] | None = None, write: dict[str, Any] | None = None, **task: Any) -> Any:
        if spec is not None:
            define(project, spec, write or {}, **task)
            services.apply(project.ws)
        record = services.run(project.ws, "publish")
        return record["tasks"][0] | {"status": record["status"]}

    return run


def problems(project) -> list[Problem]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return info.value.problems

"""Fixtures of the contract suite: `kind` runs a test once per registered kind a job reads
tables from and writes tables to (a kind with no harness fails, it does not skip),
`harness`/`second` give two places of that kind to keep tables, `mem` one of the memory kind,
`broker` one destination of each kind a task publishes to (`test_messaging`), and `sync` runs
a job between two connection specs in this process, its pointers and digests kept in `state`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runner.changes.task import RunOptions, TaskResult
from runner.connectors import registry
from runner.definitions.tasks import WriteSpec
from runner.jobs import types as job_types
from runner.jobs.sync import run_job
from runner.state.store import StateStore
from runner.streams.cancel import CancelToken
from tests.contract.brokers import Broker, make_broker
from tests.contract.harness import Harness, make_harness

Sync = Callable[..., list[TaskResult]]


TABLE_KINDS = sorted(name for name, k in registry.endpoint_kinds().items() if issubclass(k.write, WriteSpec))
PUBLISHING_KINDS = sorted(name for name, k in registry.endpoint_kinds().items() if k.capabilities.publish)
CONSUMING_KINDS = sorted(name for name, k in registry.endpoint_kinds().items() if k.capabilities.consume)


@pytest.fixture(params=TABLE_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=PUBLISHING_KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    b = make_broker(request.param, request)
    yield b
    b.close()


@pytest.fixture(params=CONSUMING_KINDS)
def queue(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A destination of each kind a task consumes from (`test_consuming`)."""
    b = make_broker(request.param, request)
    assert b.source is not None, f"{b.kind} consumes: its broker harness gives `source`"
    yield b
    b.close()


def _harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = make_harness(kind, request, tmp_path)
    yield h
    for clean in h.cleanup:
        clean()


@pytest.fixture
def harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield from _harness(kind, request, tmp_path)


@pytest.fixture
def second(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """Another place of the same kind (another SQLite file or memory store; the same server
    database, whose tables the tests name apart)."""
    yield from _harness(kind, request, tmp_path)


@pytest.fixture
def mem(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    yield from _harness("memory", request, tmp_path)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def sync(state: StateStore, tmp_path: Path) -> Sync:
    def run(
        source: dict[str, Any],
        target: dict[str, Any],
        tasks: list[dict[str, Any]],
        job: str = "contract",
        batch_size: int = 5,
        options: RunOptions | None = None,
        cancel: CancelToken | None = None,
    ) -> list[TaskResult]:
        spec = job_types.parse(
            {"source": "src", "target": "dst", "batch_size": batch_size, "tasks": tasks},
            {"source": source["type"], "target": target["type"]},
        )
        return run_job(
            spec,
            {"source": ("src", source), "target": ("dst", target)},
            tmp_path,
            store=state,
            namespace="default",
            job=job,
            run_id=uuid.uuid4().hex,
            options=options or RunOptions(),
            log=lambda *args, **fields: None,
            cancel=cancel,
        )

    return run


def task(read: str, write: str, strategy: str = "full", **extra: Any) -> dict[str, Any]:
    """A task copying table `read` into `write` by key `id` (a watermark on `id`, or `column`)."""
    changes: dict[str, Any] = {"strategy": strategy}
    if strategy == "watermark":
        changes["column"] = extra.pop("column", "id")
    return {
        "name": "t",
        "read": {"table": read},
        "write": {"table": write, "keys": ["id"]},
        "changes": changes,
        **extra,
    }

"""`runner validate` refuses a task its kinds cannot honour, at the field that asks for it:
each strategy and delete mode declares what it needs (`runner.changes`), each kind what it can
(`Capabilities`). The SQL kinds can do everything a task may ask, so the memory kind (which
declares only its merge) is the one refused here."""

from __future__ import annotations

import dataclasses

import pytest

from runner import services
from runner.changes.strategies import STRATEGIES, task_needs
from runner.connectors import registry
from runner.connectors.base import Capabilities
from runner.definitions.load import load_folder
from runner.definitions.needs import CapabilityCheck
from runner.definitions.tasks import Task
from runner.definitions.validate import validate_documents
from runner.errors import DefinitionsInvalid, Problem
from runner.jobs.types import job_models

MEMORY = """
apiVersion: runner/v1
kind: Connection
metadata: {name: mem}
spec: {type: memory, store: shop}
---
apiVersion: runner/v1
kind: Connection
metadata: {name: db}
spec: {type: sqlite, url: "sqlite:///db.db"}
"""


CAPABILITIES = {f.name for f in dataclasses.fields(Capabilities)}


def problems(project) -> list[Problem]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return info.value.problems


def test_hash_from_a_kind_without_digests_is_refused_at_the_strategy(project):
    project.write("connections.d/all.yaml", MEMORY)
    path = project.job(
        "sync",
        "mem",
        "db",
        """
        - name: orders
          read: {table: orders}
          write: {table: orders, keys: [id]}
          changes: {strategy: hash}
        """,
    )
    (p,) = problems(project)
    assert str(p).startswith(f"{path}:11:17: spec.tasks[0].changes.strategy: strategy 'hash' compares")
    assert p.message.endswith(
        "the source connection 'mem' is of type 'memory', which cannot (digests, key_lookup)"
    )
    assert p.hint == "type 'memory' can: native_merge"


def test_each_field_a_kind_cannot_serve_is_located_all_at_once(project):
    project.write("connections.d/all.yaml", MEMORY)
    project.job(
        "sync",
        "mem",
        "mem",
        """
        - name: q
          read: {query: "SELECT 1 AS id"}
          write: {table: q, keys: [id]}
        - name: deleted
          read: {table: a, deleted_keys_query: "SELECT id FROM gone"}
          write: {table: a, keys: [id]}
          changes: {strategy: watermark, column: at}
          deletes: propagate
        - name: scripted
          read: {table: b}
          write:
            table: b
            keys: [id]
            upsert_script: "INSERT INTO {{ table }} VALUES ({{ bind('id') }})"
        """,
    )
    found = {p.location.field: p.message for p in problems(project)}
    assert set(found) == {
        "spec.tasks[0].read.query",
        "spec.tasks[1].read.deleted_keys_query",
        "spec.tasks[2].write.upsert_script",
    }
    assert found["spec.tasks[0].read.query"].endswith(
        "source connection 'mem' is of type 'memory', which cannot (query)"
    )
    assert found["spec.tasks[2].write.upsert_script"].endswith("which cannot (scripts)")


def test_what_the_memory_kind_does_is_accepted(project):
    project.write("connections.d/all.yaml", MEMORY)
    project.job(
        "sync",
        "mem",
        "db",
        """
        - {name: full, read: {table: a}, write: {table: a}}
        - name: merged
          read: {table: b}
          write: {table: b, keys: [id], soft_delete_column: gone_at}
          changes: {strategy: watermark, column: at}
          deletes: soft
        """,
    )
    hashed = "{name: h, read: {table: a}, write: {table: a, keys: [id]}, changes: {strategy: hash}}"
    project.job("back", "db", "mem", f"- {hashed[:-1]}, deletes: propagate}}")
    assert len(services.validate(project.ws)) == 4


def test_a_target_without_native_merge_is_refused_for_keys_and_deletes(project):
    """No built-in kind lacks the merge; a kind that declared none (a queue, say) would be
    refused where a task merges by key, replaces a table or deletes rows."""
    project.write("connections.d/all.yaml", MEMORY)
    project.job(
        "sync",
        "db",
        "mem",
        """
        - {name: replaced, read: {table: a}, write: {table: a}}
        - {name: merged, read: {table: b}, write: {table: b, keys: [id]}, deletes: propagate}
        """,
    )
    docs, _ = load_folder(project.root)
    capabilities = {**registry.capabilities(), "memory": frozenset()}
    _, found = validate_documents(
        docs,
        registry.connection_models(),
        project.root,
        task_models=registry.kinds(),
        job_types=job_models(),
        capabilities=CapabilityCheck(capabilities, task_needs),
    )
    assert [(p.location.field, p.message.split(";")[0]) for p in found] == [
        ("spec.tasks[0].write.table", "without write.keys, the table's rows are replaced"),
        ("spec.tasks[1].write.keys", "with write.keys, rows are merged by key"),  # deletes too: once
    ]
    assert all(p.hint == "type 'memory' can: nothing optional" for p in found)


def test_a_connection_with_problems_of_its_own_adds_no_capability_problem(project):
    project.write(
        "connections.d/mem.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mem}\nspec: {type: memory}\n",
    )
    project.write("connections.d/db.yaml", MEMORY.split("---")[1])
    project.job(
        "sync",
        "mem",
        "db",
        "- {name: h, read: {table: a}, write: {table: a, keys: [id]}, changes: {strategy: hash}}",
    )
    (p,) = problems(project)
    assert p.location.field == "spec.store" and p.message == "required field is missing"


def test_every_need_names_a_declared_capability_field():
    """A typo in a need would refuse every kind; each need is one of `Capabilities`' fields."""
    tasks = [
        {
            "name": "a",
            "read": {"query": "SELECT 1"},
            "write": {"table": "t", "keys": ["id"]},
            "deletes": "soft",
        },
        {
            "name": "b",
            "read": {"table": "t", "deleted_keys_query": "SELECT 1"},
            "write": {"table": "t", "keys": ["id"], "upsert_script": "x", "delete_script": "y"},
            "changes": {"strategy": "watermark", "column": "at"},
            "deletes": "propagate",
        },
        {
            "name": "c",
            "read": {"table": "t"},
            "write": {"table": "t", "keys": ["id"]},
            "changes": {"strategy": "hash"},
        },
        {"name": "d", "read": {"table": "t"}, "write": {"table": "t"}},
        {
            "name": "e",
            "read": {"table": "t"},
            "write": {"table": "t", "keys": ["id"]},
            "changes": {"strategy": "cdc"},
        },
    ]
    named = {n.capability for t in tasks for n in task_needs(Task.model_validate(t))}
    assert named == {"query", "scripts", "native_merge", "digests", "key_lookup", "log_changes"}
    assert named <= CAPABILITIES
    assert set(STRATEGIES) == {"full", "watermark", "hash", "messages", "cdc"}


def test_every_kind_declares_capabilities_as_a_frozen_value():
    for name, kind in registry.kinds().items():
        caps = kind.capabilities
        assert dataclasses.is_dataclass(caps) and caps.names() <= CAPABILITIES, name
        with pytest.raises(dataclasses.FrozenInstanceError):
            caps.query = True  # type: ignore[misc]
    assert registry.capabilities()["memory"] == {"native_merge"}

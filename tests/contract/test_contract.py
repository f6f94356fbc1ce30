"""The contract every connection kind passes, run once per registered kind (`kind` fixture)
and skipped only where the kind does not declare the capability a case needs.

- exact values: every canonical type goes into the kind and comes back out unchanged, through
  a full copy and through a watermark run (the memory kind, which keeps canonical values as
  they are, is the other end), and a second run finds nothing changed;
- bounded batches: no read yields more than `batch_size` rows;
- commit before acknowledgement: a pointer or digest is recorded only after the target
  committed what it covers (the memory kind's faults fail just before or after a commit, or on
  the Nth batch);
- a kill at each fault point (`runner.streams.checkpoints`), then a clean run, leaves the
  target equal to the source: a real kill -9 where the kind's tables outlive the process.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from runner import services
from runner.changes import full, task, watermark
from runner.changes import hash as hashed
from runner.connectors.base import Watermark
from runner.definitions.tasks import ReadSpec
from runner.streams.types import Column, ColumnType
from tests.contract import canonical
from tests.contract.conftest import task as a_task
from tests.engine.test_crash import kill_at


def _caps(h: Any) -> frozenset[str]:
    from runner.connectors import registry

    return registry.capabilities()[h.kind]


def _need(h: Any, capability: str) -> None:
    if capability not in _caps(h):
        pytest.skip(f"{h.kind} does not declare {capability!r}")


# --- exact values ------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["full", "watermark"])
def test_every_canonical_value_round_trips_exactly(harness, mem, sync, strategy):
    columns, data = canonical.columns(harness.lacks), canonical.project(canonical.rows(), harness.lacks)
    names = [c.name for c in columns]
    mem.seed("origin", columns, data)
    there = [a_task("origin", "copy", strategy)]
    back = [a_task("copy", "back", strategy)]
    for _ in range(2):  # the second run finds every value equal to the one it holds
        (out,) = sync(mem.spec, harness.spec, there, job="there")
        (came,) = sync(harness.spec, mem.spec, back, job="back")
        assert (out.status, came.status) == ("succeeded", "succeeded"), (out.error, came.error)
    assert canonical.differences(data, harness.rows("copy"), names) == []
    assert canonical.differences(data, mem.rows("back"), names) == []
    for result in (out, came):
        assert (result.inserted, result.updated) == (0, 0), result


# --- bounded batches ---------------------------------------------------------------------------


def test_reads_come_in_batches_of_at_most_batch_size(harness):
    columns, data = canonical.columns(harness.lacks), canonical.project(canonical.rows(), harness.lacks)
    harness.seed("t", columns, data)
    spec = ReadSpec(table="t")

    def sizes(stream: Any) -> list[int]:
        return [len(batch) for batch in stream.batches]

    with harness.connector() as c:
        assert sizes(c.read(spec, 5)) == [5, 5, 5, 5, 3]
        assert sizes(c.read(spec, 1)) == [1] * 23
        marked = c.read(spec, 5, Watermark("id", 4))
        assert sizes(marked) == [5, 5, 5, 5] and marked.pointer == 23
        picked = c.read(spec, 5, select=["name", "id"])
        assert sizes(picked) == [5, 5, 5, 5, 3] and [col.name for col in picked.columns] == ["name", "id"]
        assert sizes(c.read(spec, 5, limit=7)) == [5, 2]
        assert c.highest(spec, "id") == 23


@pytest.mark.parametrize("capability", ["digests", "key_buckets", "query", "key_lookup"])
def test_optional_reads_are_bounded_and_exact(harness, capability):
    _need(harness, capability)
    columns, data = canonical.columns(harness.lacks), canonical.project(canonical.rows(), harness.lacks)
    harness.seed("t", columns, data)
    spec = ReadSpec(table="t")
    with harness.connector() as c:
        if capability == "digests":
            batches = list(c.read_digests(spec, columns, ["id"], 5, with_rows=True))  # type: ignore[attr-defined]
            rows = sorted((entry[3:] for batch in batches for entry in batch), key=lambda r: r[0])
            assert canonical.differences(data, rows, [col.name for col in columns]) == []
        elif capability == "key_buckets":
            batches = list(c.read_key_buckets(spec, "id", 4, list(range(6)), 5))  # type: ignore[attr-defined]
            assert sorted(k for batch in batches for (k,) in batch) == list(range(1, 24))
        elif capability == "query":
            query = c.read_query("SELECT id FROM t", [ColumnType("bigint")], 5)  # type: ignore[attr-defined]
            batches = list(query)
            assert sorted(k for batch in batches for (k,) in batch) == list(range(1, 24))
        else:
            batches = [c.read_by_keys(spec, columns, ["id"], [(2,), (3,)])]  # type: ignore[attr-defined]
            rows = sorted(batches[0], key=lambda r: r[0])
            assert canonical.differences(data[1:3], rows, [col.name for col in columns]) == []
        assert batches and max(len(batch) for batch in batches) <= 5


# --- the merge ------------------------------------------------------------------------------------


@pytest.mark.parametrize("deletes", ["propagate", "soft"])
def test_rows_merge_by_key_and_rows_gone_are_deleted(harness, mem, sync, deletes):
    """A kind with `native_merge` updates only rows that differ, deletes (or marks) the rows
    the source lost, and brings a soft-deleted row back when it returns."""
    _need(harness, "native_merge")
    mem.seed("t", KILL_COLUMNS, _versions(1, 10, 1))
    tasks = [a_task("t", "t", deletes=deletes)]
    (first,) = sync(mem.spec, harness.spec, tasks)
    assert (first.status, first.inserted) == ("succeeded", 10), first.error
    mem.delete("t", KILL_COLUMNS, [(2,), (3,)])
    mem.seed("t", KILL_COLUMNS, _versions(4, 4, 2))
    (second,) = sync(mem.spec, harness.spec, tasks)
    assert (second.inserted, second.updated, second.deleted, second.unchanged) == (0, 1, 2, 7)
    rows = harness.rows("t")
    if deletes == "propagate":
        assert rows == mem.rows("t")
    else:
        assert [r[:3] for r in rows if r[3] is None] == mem.rows("t")
        assert [r[0] for r in rows if r[3] is not None] == [2, 3]
        mem.seed("t", KILL_COLUMNS, _versions(2, 2, 1))  # back as it was
        (back,) = sync(mem.spec, harness.spec, tasks)
        assert (back.inserted, back.updated, back.deleted) == (0, 1, 0)
        assert [r[0] for r in harness.rows("t") if r[3] is not None] == [3]


# --- commit before acknowledgement ---------------------------------------------------------------


@pytest.mark.parametrize("fault", ["before_commit", "after_commit"])
@pytest.mark.parametrize("strategy", ["watermark", "hash"])
def test_nothing_is_acknowledged_before_the_target_commits(harness, mem, sync, state, fault, strategy):
    """The target fails just before (or just after) its first commit: no pointer and no digest
    is recorded, and the target holds nothing (or the one committed batch); a clean run then
    makes it equal to the source."""
    if strategy == "hash":
        _need(harness, "digests")
    columns, data = canonical.columns(harness.lacks), canonical.project(canonical.rows(), harness.lacks)
    harness.seed("t", columns, data)
    tasks = [a_task("t", "t", strategy)]
    (failed,) = sync(harness.spec, mem.with_spec(fail=fault), tasks)
    assert failed.status == "failed" and "fault injected" in (failed.error or "")
    recorded = state.tasks.state("default", "contract", "t")
    assert recorded.pointer is None and not state.tasks.has_digests(recorded.id)
    committed = mem.rows("t")
    assert len(committed) == (0 if fault == "before_commit" else 5)
    ids = {row[0] for row in committed}
    assert canonical.differences([r for r in data if r[0] in ids], committed, [c.name for c in columns]) == []
    (clean,) = sync(harness.spec, mem.spec, tasks)
    assert clean.status == "succeeded", clean.error
    assert canonical.differences(data, mem.rows("t"), [c.name for c in columns]) == []


@pytest.mark.parametrize("failing", ["source", "target"])
def test_a_failed_batch_leaves_the_batches_committed_before_it(harness, mem, sync, state, failing):
    """The memory end fails on the third batch (read from it, or written into it): the two
    batches before it are committed with their pointer, nothing of the third; a clean run
    goes on from the pointer."""
    columns, data = canonical.columns(harness.lacks), canonical.project(canonical.rows(), harness.lacks)
    source, target = (mem, harness) if failing == "source" else (harness, mem)
    source.seed("t", columns, data)
    faulty = {"source": source.spec, "target": target.spec}
    faulty[failing] = mem.with_spec(fail_on_batch=3)
    tasks = [a_task("t", "copy", "watermark")]
    (failed,) = sync(faulty["source"], faulty["target"], tasks)
    assert failed.status == "failed" and "fault injected" in (failed.error or ""), failed.error
    assert state.tasks.state("default", "contract", "t").pointer == {"type": "integer", "value": "10"}
    assert [r[0] for r in target.rows("copy")] == list(range(1, 11))
    (clean,) = sync(source.spec, target.spec, tasks)
    assert clean.status == "succeeded", clean.error
    assert (clean.inserted, clean.updated, clean.unchanged) == (13, 0, 1)  # id 10 read again
    assert canonical.differences(data, target.rows("copy"), [c.name for c in columns]) == []


# --- a kill at each fault point --------------------------------------------------------------------

KILL_COLUMNS = [
    Column("id", ColumnType("bigint")),
    Column("name", ColumnType("text")),
    Column("version", ColumnType("bigint")),
]


class Killed(BaseException):
    """A process ending at a fault point, for a kind whose tables live in the process: it
    unwinds (what is not committed is dropped, as a kill drops it) but nothing records it."""


def _versions(first: int, last: int, version: int) -> list[tuple]:
    return [(i, f"row {i} ✓ v{version}", version) for i in range(first, last + 1)]


POINTS = ("read", "write", "committed")


def test_a_kill_at_each_fault_point_then_a_clean_run_leaves_target_equal(
    harness, second, project, sync, tmp_path, monkeypatch
):
    """Three runs die, one at each fault point (`read`: a batch read, nothing of it written;
    `write`: a batch staged, not committed; `committed`: committed, its pointer not yet
    recorded), the source changing between them; a clean run then leaves the target equal to
    the source, and the next one finds nothing to do."""
    harness.seed("items", KILL_COLUMNS, _versions(1, 40, 1))
    job = [a_task("items", "items_copy", "watermark", column="version", deletes="propagate")]
    changes = [  # what the source does after each death: updates, inserts, deletes
        lambda: harness.seed("items", KILL_COLUMNS, _versions(30, 49, 2)),
        lambda: harness.delete("items", KILL_COLUMNS, [(3,), (4,), (45,)]),
        lambda: harness.seed("items", KILL_COLUMNS, _versions(1, 10, 3) + _versions(60, 62, 3)),
    ]
    if harness.durable:
        for name, h in (("src", harness), ("dst", second)):
            head = f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {name}}}\n"
            project.write(f"connections.d/{name}.yaml", f"{head}spec: {json.dumps(h.spec)}\n")
        project.write(
            "jobs.d/sync.yaml",
            "apiVersion: runner/v1\nkind: Job\nmetadata: {name: sync}\n"
            f"spec: {json.dumps({'source': 'src', 'target': 'dst', 'batch_size': 7, 'tasks': job})}\n",
        )
        services.apply(project.ws)
        project.ws.close()
        for point, change in zip(POINTS, changes, strict=True):
            kill_at(project, point, tmp_path)  # kill -9 of a `runner run` paused there
            change()

        def clean() -> dict[str, Any]:
            record = services.run(project.ws, "sync")
            assert record["status"] == "succeeded", record["error"]
            return record["tasks"][0]

    else:
        dying: list[str | None] = [None]

        def die(at: str) -> None:
            if at == dying[0]:
                raise Killed(at)

        for module in (task, full, watermark, hashed):
            monkeypatch.setattr(module, "checkpoint", die)
        for point, change in zip(POINTS, changes, strict=True):
            dying[0] = point
            with pytest.raises(Killed):
                sync(harness.spec, second.spec, job, batch_size=7)
            change()
        dying[0] = None

        def clean() -> dict[str, Any]:
            (result,) = sync(harness.spec, second.spec, job, batch_size=7)
            assert result.status == "succeeded", result.error
            return vars(result)

    clean()
    assert second.rows("items_copy") == harness.rows("items")
    again = clean()
    assert (again["inserted"], again["updated"], again["deleted"]) == (0, 0, 0)
    assert second.rows("items_copy") == harness.rows("items")


def test_a_task_its_kinds_cannot_serve_fails_before_it_starts(mem, sync):
    """What `runner validate` refuses is refused at run time too (an ad-hoc job, or a
    connection whose type changed since apply), before anything is read or written."""
    mem.seed("t", KILL_COLUMNS, _versions(1, 3, 1))
    (result,) = sync(mem.spec, mem.spec, [a_task("t", "copy", "hash")])
    assert result.status == "failed" and result.rows_read == 0
    assert result.error == (
        "spec.tasks[0].changes.strategy: strategy 'hash' compares digests computed in the source and "
        "reads changed rows by key; the source connection 'src' is of type 'memory', which cannot "
        "(digests, key_lookup)"
    )
    assert mem.rows("copy") == []

"""The contract every kind a task publishes to keeps, on a real broker read back with its own
client: every canonical value arrives as the documented JSON, changes and deletes arrive as
messages with stable ids, a payload template gives valid JSON whatever the values hold, a dry
run sends nothing, and a run killed mid-publish is followed by one after which every change has
arrived at least once and, by its id, exactly once."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from runner import services
from runner.changes.task import RunOptions
from tests.contract import canonical
from tests.contract.brokers import Broker, Received
from tests.contract.harness import Harness, make_harness
from tests.engine.test_crash import kill_at

DURATION = re.compile(r"^(-?)P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$")


def _duration(text: str) -> dt.timedelta:
    sign, days, hours, minutes, seconds = DURATION.match(text).groups()  # type: ignore[union-attr]
    value = dt.timedelta(
        days=int(days or 0),
        hours=int(hours or 0),
        minutes=int(minutes or 0),
        seconds=float(Decimal(seconds or 0)),
    )
    return -value if sign else value


def _decode(kind: str, value: Any) -> Any:
    """The README's table of encodings, read back."""
    if value is None or kind in ("bigint", "integer", "boolean", "varchar", "text", "json"):
        return value
    return {
        "decimal": Decimal,
        "double": float,
        "date": dt.date.fromisoformat,
        "time": dt.time.fromisoformat,
        "duration": _duration,
        "timestamp": dt.datetime.fromisoformat,
        "timestamptz": lambda s: dt.datetime.fromisoformat(s.replace("Z", "+00:00")).replace(tzinfo=None),
        "binary": base64.b64decode,
        "uuid": uuid.UUID,
    }[kind](value)


def _canonical(row: tuple) -> tuple:
    """An aware datetime is its UTC instant (naive, as the canonical form has it)."""
    return tuple(
        v.astimezone(dt.UTC).replace(tzinfo=None) if isinstance(v, dt.datetime) and v.tzinfo else v
        for v in row
    )


@pytest.fixture
def lite(request: pytest.FixtureRequest, tmp_path) -> Iterator[Harness]:
    """A SQLite source: it computes the digests the hash strategy compares."""
    yield make_harness("sqlite", request, tmp_path)


def _task(broker: Broker, strategy: str = "full", **extra: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "read": {"table": "items"},
        "write": {**broker.write, "keys": ["id"], **extra.pop("write", {})},
        "changes": {"strategy": strategy},
        **extra,
    }


def test_every_canonical_value_arrives_as_documented_json(broker, mem, sync):
    mem.seed("items", canonical.COLUMNS, canonical.rows())
    (result,) = sync(mem.spec, broker.spec, [_task(broker)])
    assert result.status == "succeeded", result.error
    received = broker.read()
    assert len(received) == canonical.ROWS == result.upserted
    got = []
    for message in received:
        body = json.loads(message.body)
        assert list(body) == [c.name for c in canonical.COLUMNS]  # the columns, in order
        got.append(tuple(_decode(c.type.kind, body[c.name]) for c in canonical.COLUMNS))
        assert message.headers["runner-op"] == "upsert"
        assert message.headers["runner-id"] == message.id
    assert sorted(got, key=lambda r: r[0]) == [_canonical(r) for r in canonical.rows()]
    assert len({m.id for m in received}) == len(received)


def test_changes_and_deletes_arrive_once_each_run(broker, lite, sync):
    lite.seed("items", canonical.COLUMNS, canonical.rows(10))
    task = _task(broker, "hash", deletes="propagate")
    (first,) = sync(lite.spec, broker.spec, [task])
    assert (first.status, first.upserted) == ("succeeded", 10)
    assert len(broker.read()) == 10
    lite.seed("items", canonical.COLUMNS, canonical.rows(10, stamp=1)[5:7])  # rows 6 and 7 change
    lite.delete("items", canonical.COLUMNS, [(9,)])
    (second,) = sync(lite.spec, broker.spec, [task])
    assert (second.upserted, second.deleted, second.unchanged) == (2, 1, 7)
    received = broker.read()
    ops = sorted((m.headers["runner-op"], json.loads(m.body)["id"]) for m in received)
    assert ops == [("delete", 9), ("upsert", 6), ("upsert", 7)]
    delete = next(m for m in received if m.headers["runner-op"] == "delete")
    assert json.loads(delete.body) == {"id": 9}  # a delete's default payload: the key
    (third,) = sync(lite.spec, broker.spec, [task])
    assert (third.upserted, third.deleted, third.unchanged) == (0, 0, 9)
    assert broker.read() == []


HOSTILE = [
    'quote " and \\" backslash \\',
    "new\nline\r\ttab",
    "</script><script>alert(1)</script>",
    "\u2028\x00",
]


def test_a_json_payload_template_is_valid_json_whatever_the_values(broker, mem, sync):
    by_name = {c.name: c for c in canonical.COLUMNS}
    columns = [by_name["id"], by_name["note"], by_name["money"]]
    rows = [(i + 1, text, Decimal("1.10")) for i, text in enumerate(HOSTILE)]
    mem.seed("items", columns, rows)
    payload = {
        "id": "{{ row.id }}",  # one expression: keeps its type
        "text": "{{ row.note }}",
        "label": "#{{ row.id }}: {{ row.note }}",  # text around: a string, escaped as JSON
        "nested": ["{{ key.id }}", {"op": "{{ op }}", "run": "{{ run_id }}"}],
        "fixed": 7,
    }
    task = _task(broker, write={"payload": payload, "headers": {"x-note": "{{ row.id }}"}})
    (result,) = sync(mem.spec, broker.spec, [task])
    assert result.status == "succeeded", result.error
    bodies = sorted((json.loads(m.body) for m in broker.read()), key=lambda b: b["id"])
    assert [b["text"] for b in bodies] == HOSTILE
    assert [b["label"] for b in bodies] == [f"#{i + 1}: {t}" for i, t in enumerate(HOSTILE)]
    assert all(
        b["nested"][0] == b["id"] and b["nested"][1]["op"] == "upsert" and b["fixed"] == 7 for b in bodies
    )


def test_a_dry_run_sends_nothing(broker, lite, sync):
    lite.seed("items", canonical.COLUMNS, canonical.rows(5))
    (result,) = sync(lite.spec, broker.spec, [_task(broker, "hash")], options=RunOptions(dry_run=True))
    assert (result.status, result.upserted) == ("succeeded", 5)
    assert broker.read() == []
    (real,) = sync(lite.spec, broker.spec, [_task(broker, "hash")])
    assert real.upserted == 5 and len(broker.read()) == 5  # the dry run recorded no digest


def _fold(received: list[Received]) -> dict[int, dict[str, Any]]:
    """What a consumer keeping the ids it has seen ends up with: each message applied once."""
    seen: set[str | None] = set()
    state: dict[int, dict[str, Any]] = {}
    for message in received:
        if message.id in seen:
            continue
        seen.add(message.id)
        body = json.loads(message.body)
        if message.headers["runner-op"] == "delete":
            state.pop(body["id"], None)
        else:
            state[body["id"]] = body
    return state


def test_a_kill_mid_publish_then_a_clean_run_delivers_every_change(broker, project, tmp_path):
    """Killed with a batch sent but not confirmed (`write`), then with a batch confirmed but
    its digests not recorded (`committed`), the source changing after each: after a clean run
    a consumer that drops the ids it has seen holds exactly the source's rows."""
    import sqlite3

    db = project.root / "src.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"v1 {i}") for i in range(1, 41)])
    con.commit()
    project.connection("src", "sqlite", "sqlite:///src.db")
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: dst}\n"
    project.write("connections.d/dst.yaml", f"{head}spec: {json.dumps(broker.spec)}\n")
    task = _task(broker, "hash", deletes="propagate")
    job = {"source": "src", "target": "dst", "batch_size": 7, "tasks": [task]}
    project.write(
        "jobs.d/sync.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: sync}}\nspec: {json.dumps(job)}\n",
    )
    services.apply(project.ws)
    project.ws.close()
    changes = [
        lambda: con.executemany(
            "UPDATE items SET note = ? WHERE id = ?", [(f"v2 {i}", i) for i in range(30, 41)]
        ),
        lambda: con.execute("DELETE FROM items WHERE id IN (3, 4, 35)"),
    ]
    for point, change in zip(("write", "committed"), changes, strict=True):
        kill_at(project, point, tmp_path)
        change()
        con.commit()
    record = services.run(project.ws, "sync")
    assert record["status"] == "succeeded", record["error"]
    received = broker.read()
    source = {i: {"id": i, "note": note} for i, note in con.execute("SELECT id, note FROM items")}
    assert _fold(received) == source
    again = services.run(project.ws, "sync")["tasks"][0]
    assert (again["upserted"], again["deleted"]) == (0, 0)
    assert broker.read() == []

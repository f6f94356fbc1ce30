"""An API as a target: a request per changed row and per deleted key, made from templates
(JSON escaped by construction, path values escaped as segments), with an idempotency key that
is the same when a change is sent again; answers outside the success codes stop the task
naming each row, or are skipped and logged."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runner.changes.task import RunOptions
from runner.errors import TerminalError
from runner.streams.types import Column, ColumnType
from tests.contract.harness import make_harness
from tests.http.conftest import http_spec

COLUMNS = [
    Column("id", ColumnType("text")),
    Column("name", ColumnType("text")),
    Column("amount", ColumnType("decimal", precision=12, scale=2)),
]


def rows(n: int = 5, tag: str = "v1") -> list[tuple]:
    return [(str(i), f'{tag} "{i}"\n<b>', Decimal(f"{i}.50")) for i in range(1, n + 1)]


def a_task(strategy: str = "hash", **write: Any) -> dict[str, Any]:
    return {
        "name": "customers",
        "read": {"table": "customers"},
        "write": {
            "keys": ["id"],
            "method": "PUT",
            "path": "/customers/{{ row.id }}",
            "delete_path": "/customers/{{ key.id }}",
            "delete_payload": "",
            "payload": {"name": "{{ row.name }}", "amount": "{{ row.amount }}", "label": "#{{ row.id }}"},
            **write,
        },
        "changes": {"strategy": strategy},
        "deletes": "propagate" if strategy == "hash" else "ignore",
    }


def test_changes_and_deletes_become_requests(api, sync, request, tmp_path):
    lite = make_harness("sqlite", request, tmp_path)
    lite.seed("customers", COLUMNS, rows())
    (first,) = sync(lite.spec, http_spec(api), [a_task()])
    assert (first.status, first.upserted) == ("succeeded", 5), first.error
    assert sorted(api.stored) == ["1", "2", "3", "4", "5"]
    assert api.stored["2"] == {"name": 'v1 "2"\n<b>', "amount": "2.50", "label": "#2"}
    put = api.received[0]
    assert (put.method, put.headers["content-type"], put.headers["runner-op"]) == (
        "PUT",
        "application/json",
        "upsert",
    )
    assert put.headers["idempotency-key"] == put.headers["runner-id"]
    keys = {r.path: r.headers["idempotency-key"] for r in api.received}
    api.received.clear()
    lite.seed("customers", COLUMNS, [rows(5, "v2")[1]])  # row 2 changes
    lite.delete("customers", COLUMNS, [("4",)])
    (second,) = sync(lite.spec, http_spec(api), [a_task()])
    assert (second.upserted, second.deleted, second.unchanged) == (1, 1, 3), second.error
    sent = sorted((r.method, r.path, r.body) for r in api.received)
    assert sent[0][:2] == ("DELETE", "/api/customers/4") and sent[0][2] == b""
    assert sent[1][:2] == ("PUT", "/api/customers/2")
    assert sorted(api.stored) == ["1", "2", "3", "5"] and api.stored["2"]["name"].startswith("v2")
    assert (
        keys["/api/customers/2"]
        != next(r for r in api.received if r.method == "PUT").headers["idempotency-key"]
    )


def test_the_same_change_sent_again_has_the_same_idempotency_key(api, mem, sync):
    mem.seed("customers", COLUMNS, rows(3))
    task = a_task("full")
    sync(mem.spec, http_spec(api), [task], job="one")
    first = {r.path: r.headers["idempotency-key"] for r in api.received}
    api.received.clear()
    sync(mem.spec, http_spec(api), [task], job="one")  # full: every row sent again, unchanged
    assert {r.path: r.headers["idempotency-key"] for r in api.received} == first


def test_path_values_are_escaped_as_one_segment(api, mem, sync):
    mem.seed("customers", COLUMNS, [("a/../b?x=1#y", "n", Decimal("1.00")), ("ü ñ", "m", Decimal("2.00"))])
    (result,) = sync(mem.spec, http_spec(api), [a_task("full")])
    assert result.status == "succeeded", result.error
    assert sorted(r.path for r in api.received) == [
        "/api/customers/%C3%BC%20%C3%B1",
        "/api/customers/a%2F..%2Fb%3Fx%3D1%23y",
    ]
    assert sorted(api.stored) == ["a/../b?x=1#y", "ü ñ"]


@pytest.mark.parametrize("bad", ["..", ".", "", None])
def test_a_path_value_that_would_name_another_endpoint_sends_nothing(api, mem, sync, bad):
    """`/customers/..` is the API's root (a dot segment), `/customers/` the collection: a row
    with such a key must not be sent there (a DELETE of the collection, say)."""
    mem.seed("customers", COLUMNS, [(bad, "n", Decimal("1.00"))])
    (result,) = sync(mem.spec, http_spec(api), [a_task("full")])
    assert result.status == "failed" and "would name another endpoint" in result.error
    assert api.received == [] and api.stored == {}


def test_a_since_of_dots_in_a_read_path_is_refused(api):
    """The pointer comes from the API's own records: `..` must not climb out of the path."""
    from runner.connectors.base import Watermark
    from runner.connectors.http.client import HttpClient
    from runner.connectors.http.connection import HttpConnection
    from runner.connectors.http.reading import HttpRead, HttpSource

    client = HttpClient("api", HttpConnection.model_validate(http_spec(api)), Path("."))
    read = HttpRead.model_validate({"path": "/x/{{ since }}", "columns": {"v": "text"}})
    stream = HttpSource(client).read(read, 10, Watermark("v", ".."))
    with pytest.raises(TerminalError, match="would name another endpoint"):
        list(stream.batches)
    assert api.requests == []
    client.close()


def test_a_header_value_http_does_not_allow_fails_at_once(api, mem, sync):
    """A row's line break in a header template was taken for 'no answer' and retried."""
    mem.seed("customers", COLUMNS, rows(2))  # each name holds a line break
    (result,) = sync(mem.spec, http_spec(api), [a_task("full", headers={"X-Name": "{{ row.name }}"})])
    assert result.status == "failed" and result.failure == "terminal", result.error
    assert "Illegal header value (a header's value holds a line break" in result.error
    assert "v1" not in result.error  # the row's value is not quoted
    assert api.received == []


def test_refused_rows_stop_the_task_naming_each(api, mem, sync):
    mem.seed("customers", COLUMNS, rows(6))
    api.reject["2"] = (422, "name is too long")
    api.reject["5"] = (409, "conflict with an archived customer")
    (result,) = sync(mem.spec, http_spec(api), [a_task("full")], batch_size=10)
    assert result.status == "failed" and result.failure == "terminal"
    assert "refused 2 row(s)" in result.error
    assert (
        "key id='2': PUT " in result.error
        and "answered 422: " in result.error
        and "name is too long" in result.error
    )
    assert "archived customer" in result.error
    assert len(api.received) == 6  # every row of the batch was tried


def test_refused_rows_skipped_are_logged_and_the_rest_sent(api, mem, sync, state, tmp_path):
    mem.seed("customers", COLUMNS, rows(4))
    api.reject["3"] = (400, "bad amount")
    (result,) = sync(mem.spec, http_spec(api), [a_task("full", bad_rows="skip")])
    assert (result.status, result.upserted) == ("succeeded", 3), result.error
    assert sorted(api.stored) == ["1", "2", "4"]


def test_a_dry_run_sends_nothing(api, mem, sync):
    mem.seed("customers", COLUMNS, rows(3))
    (result,) = sync(mem.spec, http_spec(api), [a_task("full")], options=RunOptions(dry_run=True))
    assert (result.status, result.upserted) == ("succeeded", 3)
    assert api.received == []


def test_a_5xx_on_a_row_is_retried(api, mem, sync):
    mem.seed("customers", COLUMNS, rows(3))
    api.fault("/customers/2", 503)
    (result,) = sync(mem.spec, http_spec(api), [a_task("full")])
    assert (result.status, result.upserted) == ("succeeded", 3), result.error
    assert [r.path for r in api.received].count("/api/customers/2") == 2


def test_several_rows_a_request_for_a_bulk_endpoint(api, mem, sync):
    mem.seed("customers", COLUMNS, rows(7))
    task = a_task(
        "full",
        method="POST",
        path="/customers",
        rows_per_request=3,
        payload={"items": "{{ rows }}", "count": "{{ rows | length }}", "first": "{{ rows[0].id }}"},
    )
    del task["write"]["delete_path"]
    (result,) = sync(mem.spec, http_spec(api), [task], batch_size=10)
    assert (result.status, result.upserted) == ("succeeded", 7), result.error
    bodies = [r.json() for r in api.received]
    assert [b["count"] for b in bodies] == [3, 3, 1]
    assert [i["id"] for b in bodies for i in b["items"]] == [str(i) for i in range(1, 8)]
    assert bodies[0]["items"][1] == {"id": "2", "name": 'v1 "2"\n<b>', "amount": "2.50"}
    keys = [r.headers["idempotency-key"] for r in api.received]
    api.received.clear()
    sync(mem.spec, http_spec(api), [task], batch_size=10)
    assert [r.headers["idempotency-key"] for r in api.received] == keys  # the same rows: the same keys
    api.reject[""] = (422, "item 5 is invalid")  # the bulk endpoint refuses every request now
    api.received.clear()
    (refused,) = sync(mem.spec, http_spec(api), [task], batch_size=10)
    assert refused.status == "failed" and "refused 7 row(s)" in refused.error
    assert "3 rows, keys id='1'; id='2'; id='3'" in refused.error


def test_bulk_templates_over_one_row_are_refused():
    import pytest
    from pydantic import ValidationError

    from runner.connectors.http.writing import HttpWrite

    with pytest.raises(ValidationError, match="see `rows`"):
        HttpWrite.model_validate({"path": "/c/{{ row.id }}", "rows_per_request": 10})

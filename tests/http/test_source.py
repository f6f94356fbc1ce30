"""An API as a source: every pagination style reads every record once, retries on 5xx and 429
(honouring Retry-After), a 4xx fails the task with the URL and the body's start, watermarks
send the pointer as a parameter and move it only once every page is committed, and a read
holds one page at a time."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import pytest

from runner.connectors import memory, registry
from runner.connectors.http.reading import HttpRead
from tests.http.conftest import COLUMNS, http_spec

STYLES = {
    "next_link": ("/next", {"style": "next_link", "path": "links.next"}, "data"),
    "link_header": ("/link", {"style": "link_header"}, None),
    "page": ("/pages", {"style": "page", "param": "page", "size_param": "per_page", "size": 10}, "items"),
    "offset": ("/offset", {"style": "offset", "limit": 10}, None),
    "cursor": ("/cursor", {"style": "cursor", "path": "meta.next_cursor"}, "results"),
}


def read(style: str, **extra: Any) -> dict[str, Any]:
    path, paginate, records = STYLES[style]
    found = {"path": path, "paginate": paginate, "columns": COLUMNS, **extra}
    if records:
        found["records"] = records
    return found


def a_task(style: str = "next_link", strategy: str = "full", **extra: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {"strategy": strategy}
    if strategy == "watermark":
        changes["column"] = "updated_at"
    return {
        "name": "items",
        "read": read(style, **extra.pop("read", {})),
        "write": {"table": "items", "keys": ["id"]},
        "changes": changes,
        **extra,
    }


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_pagination_style_reads_every_record_once(api, mem, sync, style):
    (result,) = sync(http_spec(api), mem.spec, [a_task(style)], batch_size=7)
    assert result.status == "succeeded", result.error
    rows = mem.rows("items")
    assert [r[0] for r in rows] == list(range(1, 46))
    first = rows[0]
    assert first[1:] == ('item 1 ✓ "quoted"', Decimal("1.01"), dt.datetime(2024, 1, 1, 0, 1), "city 1")
    assert len(api.requests) == 5  # 45 records, 10 a page: 5 pages (the last one short or followed by none)


def test_a_flaky_page_and_a_429_with_retry_after_are_retried(api, mem, sync):
    api.fault("/next", 503, "after", 10)
    api.fault("/next", 429, "after", 20, headers={"Retry-After": "1"})
    started = time.monotonic()
    (result,) = sync(http_spec(api), mem.spec, [a_task()])
    assert time.monotonic() - started >= 1.0  # a floor only: Retry-After was waited out
    assert result.status == "succeeded", result.error
    assert [r[0] for r in mem.rows("items")] == list(range(1, 46))
    asked = [r.query.get("after") for r in api.requests]
    assert asked == [None, "10", "10", "20", "20", "30", "40"]
    retried = [r for r in api.requests if r.query.get("after") == "20"]
    assert len(retried) == 2  # the second came after the Retry-After (not timed here: the machine is shared)


def test_a_5xx_that_persists_fails_after_the_retries(api, mem, sync):
    api.fault("/next", 502, "after", 10, times=10)
    (result,) = sync(http_spec(api, retries=2, max_retry_wait="1s"), mem.spec, [a_task()])
    assert result.status == "failed" and result.failure == "transient"
    assert "after 3 attempt(s)" in result.error and "502" in result.error
    assert mem.rows("items") == []  # the first page's batch was held back with the run failing


def test_a_4xx_fails_the_task_with_the_url_and_the_body(api, mem, sync):
    api.fault("/next", 400, "after", 20, body='{"error": "after must be a cursor"}')
    (result,) = sync(http_spec(api), mem.spec, [a_task()])
    assert result.status == "failed" and result.failure == "terminal"
    assert f"GET {api.base}/api/next?limit=10&after=20" in result.error or "after=20" in result.error
    assert "400 Bad Request" in result.error and "after must be a cursor" in result.error
    assert len([r for r in api.requests if r.query.get("after") == "20"]) == 1  # a 4xx is not retried


def test_a_watermark_sends_the_pointer_and_moves_it_after_the_commit(api, mem, sync, state):
    task = a_task(strategy="watermark", read={"params": {"updated_since": "{{ since }}", "limit": 10}})
    (first,) = sync(http_spec(api), mem.spec, [task])
    assert (first.status, first.rows_read) == ("succeeded", 45), first.error
    assert "updated_since" not in api.requests[0].query  # no pointer yet: the parameter is left out
    assert first.pointer_after == {"type": "datetime", "value": "2024-01-01T00:45:00"}
    api.requests.clear()
    api.touch([3, 44], dt.datetime(2024, 2, 1, tzinfo=dt.UTC))
    (second,) = sync(http_spec(api), mem.spec, [task])
    assert second.status == "succeeded", second.error
    assert api.requests[0].query["updated_since"] == "2024-01-01T00:45:00Z"
    assert (second.rows_read, second.updated, second.unchanged) == (3, 2, 1)  # 45 again, at the pointer
    assert second.pointer_after == {"type": "datetime", "value": "2024-02-01T00:00:00"}
    assert {r[0]: r[1] for r in mem.rows("items")}[44] == "item 44 changed"


def test_a_run_failing_half_way_keeps_the_pointer(api, mem, sync):
    task = a_task(strategy="watermark", read={"params": {"updated_since": "{{ since }}"}})
    api.fault("/next", 404, "after", 30)
    (result,) = sync(http_spec(api), mem.spec, [task], batch_size=5)
    assert result.status == "failed"
    assert result.pointer_after is None  # records need not come in order: only a whole read moves it
    assert 0 < len(mem.rows("items")) <= 30  # what was committed stays; it is read again next run
    (again,) = sync(http_spec(api), mem.spec, [task], batch_size=5)
    assert again.status == "succeeded" and len(mem.rows("items")) == 45


def test_records_kept_as_json(api, mem, sync):
    task = a_task(read={"columns": None, "content_column": "doc"})
    task["write"] = {"table": "docs"}
    (result,) = sync(http_spec(api), mem.spec, [task])
    assert result.status == "succeeded", result.error
    docs = sorted((r[0] for r in memory.store(mem.spec["store"]).rows("docs")), key=lambda d: d["id"])
    assert len(docs) == 45
    assert docs[0]["customer"] == {"address": {"city": "city 1"}, "tags": ["a", "b"]}


def test_a_read_holds_one_page_at_a_time(api, tmp_path):
    connector = registry.open_connector("api", http_spec(api), tmp_path)
    spec = HttpRead.model_validate(read("offset"))
    stream = connector.read(spec, 3)
    first = next(stream.batches)
    assert len(first) == 3 and len(api.requests) == 1  # a batch handed out after one page
    sizes = [len(first)] + [len(b) for b in stream.batches]
    assert max(sizes) <= 3 and sum(sizes) == 45
    connector.close()


def test_a_link_to_another_server_is_not_followed(api, mem, sync):
    elsewhere = json.dumps({"data": [], "links": {"next": "http://203.0.113.9/api/next?after=20"}})
    api.fault("/next", 200, "after", 10, body=elsewhere)
    (result,) = sync(http_spec(api), mem.spec, [a_task()])
    assert result.status == "failed" and "203.0.113.9" in result.error and "credentials" in result.error
    assert len(api.requests) == 2  # nothing was asked of the other server


def test_a_cursor_given_again_stops_the_read_instead_of_looping(api, mem, sync):
    paginate = {"style": "cursor", "path": "items.0.customer.tags.0", "param": "c"}  # always "a"
    task = a_task("page", read={"paginate": paginate})
    (result,) = sync(http_spec(api), mem.spec, [task])
    assert result.status == "failed" and "gave the cursor 'a' twice" in result.error
    assert len(api.requests) == 2

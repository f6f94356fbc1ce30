"""The contract for `http` as a source, with `http` as a target at its other end: every
canonical value sent to an API (a request per row, the row as JSON) and read back from it
(typed columns by JSON path) comes back exactly, and a second run finds nothing changed. The
target's side of the contract is the messaging suite's (tests/contract/test_messaging.py, with
the harness in tests/contract/brokers.py): what a consumer of the requests sees."""

from __future__ import annotations

from tests.contract import canonical
from tests.http.conftest import http_spec


def test_every_canonical_value_round_trips_through_an_api_exactly(api, mem, sync, tmp_path):
    columns, data = canonical.COLUMNS, canonical.rows()
    names = [c.name for c in columns]
    mem.seed("origin", columns, data)
    there = {
        "name": "t",
        "read": {"table": "origin"},
        "write": {"keys": ["id"], "method": "PUT", "path": "/customers/{{ row.id }}"},
        "changes": {"strategy": "hash"},
    }
    back = {
        "name": "t",
        "read": {
            "path": "/stored",
            "records": "items",
            "paginate": {"style": "page"},
            "columns": {c.name: str(c.type) for c in columns},
        },
        "write": {"table": "back", "keys": ["id"]},
    }
    lite = {"type": "sqlite", "url": f"sqlite:///{tmp_path / 'digests.db'}"}
    # the hash strategy needs a source that computes digests: the rows go memory -> SQLite -> API
    (staged,) = sync(
        mem.spec,
        lite,
        [{"name": "t", "read": {"table": "origin"}, "write": {"table": "origin", "keys": ["id"]}}],
        job="stage",
    )
    assert staged.status == "succeeded", staged.error
    for run in range(2):
        (out,) = sync(lite, http_spec(api), [there], job="there")
        (came,) = sync(http_spec(api), mem.spec, [back], job="back")
        assert (out.status, came.status) == ("succeeded", "succeeded"), (out.error, came.error)
        if run == 1:
            assert (out.upserted, came.inserted, came.updated) == (0, 0, 0)
    assert len(api.stored) == canonical.ROWS
    assert canonical.differences(data, mem.rows("back"), names) == []

"""A REST API on loopback (`api`, its base URL in `api.base`), the token it takes in the
environment, and the contract suite's fixtures: `mem` (a memory end), `sync` (a job in this
process), `state`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.conftest import mem, state, sync  # noqa: F401
from tests.http.server import TOKEN, Api, serve


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    served = Api(45)
    with serve(served):
        yield served


def http_spec(api: Api, **extra: Any) -> dict[str, Any]:
    """The connection's spec: the test API, signed in with a bearer token from the environment."""
    return {
        "type": "http",
        "base_url": f"{api.base}/api",
        "auth": {"type": "bearer", "token": "${env:API_TOKEN}"},
        **extra,
    }


COLUMNS = {
    "id": "bigint",
    "name": "text",
    "price": "decimal(12,2)",
    "updated_at": "timestamptz",
    "city": {"path": "customer.address.city", "type": "varchar(20)"},
}

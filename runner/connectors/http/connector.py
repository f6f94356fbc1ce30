"""The `http` connector: an API as a job's source (`runner.connectors.http.reading`) or target
(`runner.connectors.http.writing`), over one client per connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from runner.connectors import registry
from runner.connectors.base import Capabilities, Connector, ReadStream, Watermark, WriteContext
from runner.connectors.http.client import HttpClient
from runner.connectors.http.connection import HttpConnection
from runner.connectors.http.reading import HttpRead, HttpSource
from runner.connectors.http.writing import HttpWrite, HttpWriter
from runner.definitions.tasks import WriteModel
from runner.errors import TerminalError
from runner.streams.types import Column


class HttpConnector(Connector):
    """A REST API as a job's source or target."""

    # `publish`: a request per changed row and deleted key, each answered before the batch ends
    capabilities: ClassVar[Capabilities] = Capabilities(publish=True)
    spec: HttpConnection

    def __init__(self, name: str, spec: HttpConnection, base_dir: Path):
        super().__init__(name, spec, base_dir)
        self._client: HttpClient | None = None

    @property
    def client(self) -> HttpClient:
        if self._client is None:
            self._client = HttpClient(self.name, self.spec, self.base_dir)
        return self._client

    def read(
        self,
        spec: Any,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        assert isinstance(spec, HttpRead)  # the kind's read model
        return HttpSource(self.client).read(spec, batch_size, watermark, select, limit)

    def highest(self, spec: Any, column: str) -> Any:
        raise TerminalError(
            f"connection {self.name!r}: an API cannot say the highest value of {column!r}; "
            "changes.start and window are not for an http source"
        )

    def check_connection(self) -> None:
        """A run's first check: the API answers (any answer: its root may well be a 401 to
        credentials that its endpoints take)."""
        self.client.probe()

    def open_row_writer(self, write: WriteModel, columns: list[Column], context: WriteContext) -> HttpWriter:
        assert isinstance(write, HttpWrite)  # the kind's write model
        return HttpWriter(None if context.dry_run else self.client, write, columns, context)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def test(name: str, spec: HttpConnection, base_dir: Path) -> str:
    """`runner connections test`: the base URL answers, signed in as the connection says (an
    API's root may well be a 404; a 401 to a connection that signs in says the credentials
    are refused, so that a wrong token is not reported `ok`)."""
    client = HttpClient(name, spec, base_dir)
    try:
        response = client.probe()
        if response.status_code == 401 and spec.auth is not None:
            raise client.fail("GET", response, f" to the connection's {spec.auth.type} credentials")
        return f"{spec.base_url} answered {response.status_code} {response.reason_phrase}"
    finally:
        client.close()


registry.register(
    registry.Kind("http", HttpConnection, HttpConnector, read=HttpRead, write=HttpWrite, test=test)
)

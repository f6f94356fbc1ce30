"""An endpoint as a source: its pages requested one after another, the records found at a path
in each page's JSON, each record a row (columns found by JSON paths and typed, as a message's
payload is decoded; or the record kept whole as JSON). Only one page and one batch are held at
a time, whatever the number of pages.

Incremental reads send the watermark pointer as a parameter (`{{ since }}` in `read.params` or
`read.path`): the API gives what changed since. The pointer moves to the highest value of the
watermark column read, once every page has been read and the target has committed it: an API
need not give records in order, so a run stopped half-way reads again from the old pointer
(rows are upserted by key, so nothing is doubled)."""

from __future__ import annotations

import re
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from runner.connectors.base import ReadStream, Watermark
from runner.connectors.http.client import HttpClient, body_start
from runner.connectors.http.pagination import Pages, Paginate
from runner.connectors.messaging.decode import MISSING, BadMessage, column_type, find, parse, row_decoder
from runner.connectors.messaging.encode import encoder
from runner.connectors.messaging.model import ColumnPath, check_templates, expand_columns
from runner.connectors.messaging.render import Templates
from runner.definitions import secrets
from runner.definitions.tasks import ReadModel, Task
from runner.definitions.templates import RENDER_SECONDS, RenderBudget, TemplateLimit, environment
from runner.errors import TerminalError
from runner.streams.types import Batch, Column, ColumnType

SINCE = re.compile(r"\bsince\b")
EMPTY_PAGES = 100  # pages in a row without a record after which a read stops as a loop


def quote_value(value: Any) -> str:
    """An expression's value in a URL path: one percent-encoded segment (a `/` or `?` in a value
    cannot change which endpoint is asked).

    Raises:
        ValueError: a value of dots alone: `..` is the parent (a URL's dot segments are
            resolved, by httpx and by proxies, even percent-encoded), `.` the same endpoint.
    """
    text = "" if value is None else str(value)
    if text and not text.strip("."):
        raise ValueError(f"the value {text!r} in a path would name another endpoint (a dot segment)")
    return urllib.parse.quote(text, safe="")


def path_templates() -> Templates:
    """Templates whose every `{{ expression }}` is escaped as a path segment by construction."""
    templates = Templates("read")
    templates.environment().finalize = quote_value
    return templates


def check_names(source: str, where: str) -> None:
    """A read's template names nothing but `since` (and the sandbox's globals)."""
    from jinja2 import meta

    env = environment()
    unknown = sorted(meta.find_undeclared_variables(env.parse(source)) - {"since"} - set(env.globals))
    if unknown:
        raise ValueError(f"{where}: {unknown[0]!r} is unknown here; a read's templates know `since`")


class HttpRead(ReadModel):
    """An endpoint a task reads: its records, page after page."""

    path: str = Field(
        min_length=1,
        description="The endpoint, relative to the connection's base_url (a template: `/orders`, "
        "`/shops/{{ since }}/x`; values are escaped as path segments).",
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Query parameters, each a template; one that is a single `{{ expression }}` whose "
        "value is null is left out. Context: `since` (the watermark pointer, as JSON writes the "
        "column's type: `2024-05-01T13:45:00Z`; null on a first run).",
    )
    records: str | None = Field(
        None,
        min_length=1,
        description="Where the list of records is in each page's JSON: a dotted path (`data.items`); "
        "unset: the page is the list.",
    )
    columns: dict[str, ColumnPath] | None = Field(
        None,
        description="The record's values as columns: `name: type` (the value at the key `name`) or "
        "`name: {path, type}` (nested objects flattened: `customer.address.city`); absent or null is NULL.",
    )
    content_column: str | None = Field(
        None,
        min_length=1,
        description="Instead of `columns`: each record kept whole, as JSON, in this column.",
    )
    paginate: Paginate | None = Field(
        None,
        description="How pages follow: `next_link` (path), `link_header`, `page` (param, start, "
        "size_param, size), `offset` (offset_param, limit_param, limit) or `cursor` (path, param). "
        "Unset: one page.",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return expand_columns(data)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        check_templates(value)
        check_names(value, "path")
        if "://" in value or value.startswith("//"):
            raise ValueError("read.path is relative to the connection's base_url, e.g. /orders")
        return value

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        for name, value in params.items():
            if isinstance(value, str):
                check_templates(value, name)
                check_names(value, f"params.{name}")
                if "${" in value or secrets.CREDENTIAL_PARAM.search(name):  # ?api_key=… written out
                    raise ValueError(
                        f"params.{name}: no secrets here: an API key goes in the connection's auth "
                        f"({{type: api_key, name: {name}, in: query, value: ${{env:API_KEY}}}})"
                    )
        return params

    @model_validator(mode="after")
    def _shape(self) -> HttpRead:
        if (self.columns is None) == (self.content_column is None):
            raise ValueError("give exactly one of 'columns' (the records' values) or 'content_column'")
        if self.paginate is not None:
            taken = {v for k, v in self.paginate.model_dump().items() if k.endswith("param") and v}
            clash = sorted(taken & set(self.params))
            if clash:
                raise ValueError(f"params.{clash[0]} is the paginator's own parameter")
        return self

    def uses_since(self) -> bool:
        return any(SINCE.search(v) for v in (self.path, *map(str, self.params.values())))

    def mapping(self) -> list[tuple[Column, list[str]]]:
        if self.columns is None:
            return []
        return [(Column(name, column_type(c.type)), c.path.split(".")) for name, c in self.columns.items()]

    def describe(self) -> str:
        return self.path

    def check(self, task: Task) -> None:
        strategy = task.changes.strategy
        if strategy == "watermark":
            if not self.uses_since():
                raise ValueError(
                    "a watermark over an API sends the pointer as a parameter: use {{ since }} in "
                    "read.params (e.g. updated_since: '{{ since }}')"
                )
            if self.columns is None or task.changes.column not in self.columns:
                raise ValueError("changes.column must be one of read.columns (the records' value of it)")
            if task.changes.window is not None or task.changes.start is not None:
                raise ValueError(
                    "changes.start and window are not for an API source (it cannot say its highest value)"
                )


def _since(value: Any, column: Column | None) -> Any:
    if value is None or column is None:
        return value
    return encoder(column)(value)


def rendered(where: str, render: Callable[[], Any]) -> Any:
    """A read's template rendered, bounded in time as a write's are (a loop of loops in a
    path would otherwise hold the worker: no batch comes for the run to be cancelled at).

    Raises:
        TerminalError: the template failed, or took longer than `RENDER_SECONDS`.
    """
    from jinja2 import TemplateError

    budget = RenderBudget(f"read.{where}", None, RENDER_SECONDS)
    tracer = sys.gettrace()
    sys.settrace(budget.trace)
    try:
        return render()
    except (TemplateError, TemplateLimit, TypeError, ValueError) as exc:
        raise TerminalError(f"read.{where}: {exc}") from None
    finally:
        sys.settrace(tracer)


class HttpSource:
    """The reading side of the `http` connector."""

    def __init__(self, client: HttpClient):
        self.client = client

    def columns(self, read: HttpRead) -> list[Column]:
        if read.content_column is not None:
            return [Column(read.content_column, ColumnType("json"))]
        return [c for c, _ in read.mapping()]

    def read(
        self,
        read: HttpRead,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        columns = self.columns(read)
        names = [c.name for c in columns]
        picked = [names.index(n) for n in select] if select is not None else None
        stream = ReadStream([columns[i] for i in picked] if picked is not None else columns, iter(()))
        mark = names.index(watermark.column) if watermark is not None else None
        since = _since(watermark.since if watermark else None, columns[mark] if mark is not None else None)
        decode: Callable[[Any], tuple]
        if read.content_column is not None:
            decode = lambda record: (record,)  # noqa: E731 - the record as it is: parsed JSON
        else:
            by_path = row_decoder(read.mapping())

            def decode(record: Any) -> tuple:
                if not isinstance(record, dict):
                    raise BadMessage(f"a JSON {type(record).__name__}, not an object")
                return by_path(record)

        templates = path_templates()
        path = templates.text(read.path, "path")
        params_of = Templates("read").structure(dict(read.params), "params")
        context = {**templates.environment().globals, "since": since}

        def pages() -> Iterator[list[tuple]]:
            url = self.client.url(rendered("path", lambda: path(context)))
            params = {
                k: v for k, v in rendered("params", lambda: params_of(context)).items() if v is not None
            }
            pager = Pages(read.paginate)
            query: dict[str, Any] | None = {**params, **pager.first()}
            number = empty = 0
            while True:
                number += 1
                response = self.client.request(
                    "GET", url, params=query, headers={"Accept": "application/json"}
                )
                if response.status_code // 100 != 2:
                    raise self.client.fail("GET", response)
                where = f"page {number} ({self.client.shown(str(response.request.url))})"
                try:
                    body = parse(response.content)
                except (BadMessage, RecursionError) as exc:
                    why = "the page's JSON is nested too deep" if isinstance(exc, RecursionError) else exc
                    kind = response.headers.get("Content-Type", "none")
                    raise TerminalError(
                        f"{where}: {why} (Content-Type {kind}; the body starts: {body_start(response)})"
                    ) from None
                found = body if read.records is None else find(body, read.records.split("."))
                if found is MISSING or found is None:
                    found = []
                if not isinstance(found, list):
                    at = f"read.records {read.records!r}" if read.records else "the page (read.records unset)"
                    raise TerminalError(
                        f"{where}: {at} is a JSON {type(found).__name__}, not a list of records"
                    )
                rows = []
                for i, record in enumerate(found):
                    try:
                        rows.append(decode(record))
                    except BadMessage as exc:
                        raise TerminalError(f"{where}, record {i + 1}: {exc}") from None
                empty = 0 if found else empty + 1
                if empty > EMPTY_PAGES:  # no batch would come: the run could not even be cancelled
                    raise TerminalError(
                        f"{where}: {EMPTY_PAGES} pages in a row without a record, and still a next "
                        "one; stopping a loop"
                    )
                step = pager.after(body, response, len(found))  # a loop is found before its rows go
                del body, found
                yield rows
                if step is None:
                    return
                if step.link is not None:
                    url, query = self.client.url(step.link), None
                else:
                    query = {**params, **(step.params or {})}

        def batches() -> Iterator[Batch]:
            highest: Any = None
            left = limit
            batch: Batch = []
            held: Batch | None = None  # a full batch waits for the next: the last sets the pointer
            for rows in pages():
                for row in rows:
                    if mark is not None:
                        value = row[mark]
                        if value is not None and (highest is None or value > highest):
                            highest = value
                    batch.append(tuple(row[i] for i in picked) if picked is not None else row)
                    left = None if left is None else left - 1
                    if len(batch) >= batch_size:
                        if held is not None:
                            yield held
                        held, batch = batch, []
                    if left == 0:
                        break
                if left == 0:
                    break
            if batch:
                if held is not None:
                    yield held
                held = batch
            if held is not None:
                if mark is not None and left != 0:  # every page read: the pointer may move
                    stream.pointer = highest
                yield held

        stream.batches = batches()
        return stream

"""An API as a target (reverse ETL): a request per changed row and per deleted key, made from
the task's templates in the sandbox. A JSON body is built as a structure whose leaves are
templates (as a queue's payload), so every value is escaped as JSON by construction; every
`{{ expression }}` in a path is escaped as one path segment. Each request carries an
idempotency key, a digest of the job, the task, the operation and the row (a message's id):
a row sent again after a failed run has the key it had.

An answer outside the stated success codes is the row's failure, collected with the status and
the body's start: `bad_rows: stop` fails the task at the end of the batch (its pointer or
digests do not move, so the next run sends those changes again); `skip` logs each in the run
log and goes on. 429 and 5xx are retried by the client (`runner.connectors.http.client`)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors.base import RowWriter, WriteContext
from runner.connectors.http.client import HttpClient, body_start
from runner.connectors.http.reading import quote_value
from runner.connectors.messaging.encode import dumps, row_encoder
from runner.connectors.messaging.model import MessageWrite, check_templates
from runner.connectors.messaging.render import Message, MessageMaker, Templates, message_id
from runner.definitions import secrets
from runner.definitions.templates import RENDER_SECONDS, RenderBudget, TemplateLimit
from runner.errors import TerminalError
from runner.streams.types import Batch, Column

Method = Literal["POST", "PUT", "PATCH", "DELETE"]
ONE_ROW = re.compile(r"\b(row|key)\b")
SHOWN_FAILURES = 5  # failed rows named in a task's error


def quote_segment(value: Any) -> str:
    """A row's value in a path: one segment, never empty (`/customers/` is the collection).

    Raises:
        ValueError: an empty value (null or ''), or dots alone (`runner.connectors.http.reading`).
    """
    if value is None or str(value) == "":
        raise ValueError("an empty value (null or '') in a path would name another endpoint")
    return quote_value(value)


class HttpWrite(MessageWrite):
    """The requests a task sends: one per changed row (`op` upsert) and, with deletes
    propagated, one per deleted key (`op` delete). The body is `payload` (unset: the row as a JSON
    object of its columns); every request carries the headers `runner-op`, `runner-id`,
    `runner-job`, `runner-task`, `runner-run` and the idempotency key."""

    path: str = Field(
        min_length=1,
        description="The changed row's endpoint, relative to base_url (a template: "
        "`/customers/{{ row.id }}`; each expression's value is escaped as one path segment).",
    )
    method: Method = Field("POST", description="The changed row's method.")
    delete_path: str | None = Field(
        None,
        min_length=1,
        description="A deleted key's endpoint (a template over the key columns); unset: `path`.",
    )
    delete_method: Method = Field("DELETE", description="A deleted key's method.")
    success: list[int] = Field(
        [200, 201, 202, 204], min_length=1, description="The statuses that mean a row was taken."
    )
    delete_success: list[int] = Field(
        [200, 202, 204, 404],
        min_length=1,
        description="The statuses that mean a key was deleted (404: it was gone already).",
    )
    idempotency_header: str | None = Field(
        "Idempotency-Key",
        min_length=1,
        description="The header carrying each request's idempotency key (null leaves it out).",
    )
    rows_per_request: int = Field(
        1,
        ge=1,
        le=10_000,
        description="More than 1: one request per this many rows (or keys) of a batch, for a bulk "
        "endpoint; the templates then see `rows` (the rows, or keys, as JSON objects) instead of `row` "
        "and `key`, and the body is by default a JSON array of them.",
    )
    bad_rows: Literal["stop", "skip"] = Field(
        "stop",
        description="A row answered outside `success`: `stop` fails the task after its batch, naming "
        "each row with the status and the body's start; `skip` logs them in the run log and goes on.",
    )

    @field_validator("path", "delete_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            check_templates(value)
            if "://" in value or value.startswith("//"):
                raise ValueError(
                    "a path is relative to the connection's base_url, e.g. /customers/{{ row.id }}"
                )
        return value

    @field_validator("success", "delete_success")
    @classmethod
    def _statuses(cls, codes: list[int]) -> list[int]:
        wrong = [c for c in codes if not 100 <= c <= 599 or c == 429 or c >= 500]
        if wrong:
            raise ValueError(f"{wrong[0]} is no success: 429 and 5xx are retried, then fail the task")
        return codes

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if secrets.CREDENTIAL_HEADER.search(name):  # written out, it would be kept in git
                raise ValueError(
                    f"headers.{name}: credentials go in the connection's auth, as a secret reference"
                )
        return headers

    @model_validator(mode="after")
    def _bulk(self) -> HttpWrite:
        if self.rows_per_request > 1:
            texts = [self.path, self.delete_path or "", *self.headers.values()]
            texts += [json.dumps(p) for p in (self.payload, self.delete_payload) if p is not None]
            if any(ONE_ROW.search(t) for t in texts):
                raise ValueError(
                    "with rows_per_request, a request carries several rows: its templates see `rows` "
                    "(a list), not `row` or `key`"
                )
        return self

    def describe(self) -> str:
        return f"{self.method} {self.path}"

    def templates(self, op: str) -> dict[str, str]:
        return {"path": self.delete_path or self.path if op == "delete" else self.path}


class RequestMaker(MessageMaker):
    """Rows and keys -> requests, as messages are made (body, headers, id), with the path a
    template whose values are escaped as path segments."""

    def __init__(self, write: HttpWrite, columns: list[Column], context: WriteContext):
        super().__init__(write, columns, context)
        paths = Templates("write")
        paths.environment().finalize = quote_segment
        self.destination = {
            op: {n: paths.text(t, n) for n, t in write.templates(op).items()} for op in ("upsert", "delete")
        }
        self.traced = self.traced or paths.statements
        if not self.rendered:
            self.constant_destination = {
                op: {n: d({}) for n, d in ds.items()} for op, ds in self.destination.items()
            }


class BulkMaker:
    """Rows and keys -> one request per `rows_per_request` of them: the body a template over
    `rows` (by default their JSON array), the idempotency key a digest of the members' ids."""

    def __init__(self, write: HttpWrite, columns: list[Column], context: WriteContext):
        self.write, self.context = write, context
        key_columns = [next(c for c in columns if c.name == k) for k in write.keys]
        self.encode = {"upsert": row_encoder(columns), "delete": row_encoder(key_columns)}
        templates, paths = Templates("write"), Templates("write")
        paths.environment().finalize = quote_segment
        self.payload = {
            "upsert": templates.structure(write.payload, "payload") if write.payload is not None else None,
            "delete": (
                templates.structure(write.delete_payload, "delete_payload")
                if write.delete_payload is not None
                else None
            ),
        }
        self.source = {"upsert": write.payload, "delete": write.delete_payload}
        self.headers = {n: templates.text(t, f"headers.{n}") for n, t in write.headers.items()}
        self.paths = {op: paths.text(write.templates(op)["path"], "path") for op in ("upsert", "delete")}
        self.traced = templates.statements or paths.statements
        self.base = {
            **templates.environment().globals,
            "job": context.job,
            "task": context.task,
            "run_id": context.run_id,
        }

    def make(self, op: str, rows: list[tuple]) -> Message:
        from jinja2 import TemplateError

        values = [self.encode[op](row) for row in rows]
        members = "".join(message_id(self.context, op, v) for v in values)
        ident = hashlib.sha256(members.encode()).hexdigest()[:32]
        context = {**self.base, "rows": values, "op": op, "id": ident}
        tracer = sys.gettrace()
        if self.traced:
            budget = RenderBudget("write (templates)", self.context.cancel, RENDER_SECONDS)
            budget.deadline = time.monotonic() + RENDER_SECONDS
            sys.settrace(budget.trace)
        try:
            template, source = self.payload[op], self.source[op]
            is_json = not isinstance(source, str)
            if template is None:
                body = dumps(values)
            else:
                rendered = template(context)
                body = dumps(rendered) if is_json else str(rendered).encode()
            headers = {
                "runner-op": op,
                "runner-id": ident,
                "runner-job": self.context.job,
                "runner-task": self.context.task,
                "runner-run": self.context.run_id,
                **{n: h(context) for n, h in self.headers.items()},
            }
            path = self.paths[op](context)
        except (TemplateError, TemplateLimit, TypeError, ValueError) as exc:
            raise TerminalError(f"write: a template failed: {exc}") from None
        finally:
            if self.traced:
                sys.settrace(tracer)
        return Message(op, ident, body, headers, {"path": path}, is_json)


class HttpWriter(RowWriter):
    """A `Writer` (runner.connectors.base) that sends a request per row; each answer is in
    before the next row is sent, so `commit` has nothing left to wait for. The API is reached at
    the first request: a dry run makes every request (every template rendered) and sends none."""

    def __init__(
        self, client: HttpClient | None, write: HttpWrite, columns: list[Column], context: WriteContext
    ):
        self.client, self.write, self.context = client, write, context
        self.maker = RequestMaker(write, columns, context)
        self.bulk = BulkMaker(write, columns, context) if write.rows_per_request > 1 else None
        by_name = {c.name: c for c in columns}
        self.key_columns = [by_name[k] for k in write.keys]
        self.key_index = [columns.index(c) for c in self.key_columns]
        self.skipped = 0

    def _send(self, messages: list[Message], keys: list[list[tuple]]) -> int:
        """Send each request (its rows' `keys`, for errors); how many rows were taken."""
        rows = sum(len(k) for k in keys)
        if self.context.dry_run or not messages:
            return rows
        assert self.client is not None
        failed: list[str] = []
        refused = 0
        for message, key in zip(messages, keys, strict=True):
            delete = message.op == "delete"
            method = self.write.delete_method if delete else self.write.method
            headers = message.all_headers()
            if self.write.idempotency_header:
                headers[self.write.idempotency_header] = message.id
            body: bytes | None = message.body
            if message.body:
                headers["Content-Type"] = "application/json" if message.json else "text/plain; charset=utf-8"
            else:
                body = None
            url = self.client.url(message.destination["path"])
            response = self.client.request(method, url, content=body, headers=headers)
            if response.status_code not in (self.write.delete_success if delete else self.write.success):
                what = f"{message.op} of {_keys(self.write.keys, key)}: {method} {self.client.shown(url)}"
                failed.append(f"{what} answered {response.status_code}: {body_start(response)}")
                refused += len(key)
        if failed:
            if self.write.bad_rows == "stop":
                shown = "; ".join(failed[:SHOWN_FAILURES])
                more = f" (and {len(failed) - SHOWN_FAILURES} more)" if len(failed) > SHOWN_FAILURES else ""
                raise TerminalError(f"the API refused {refused} row(s): {shown}{more}")
            for text in failed:
                if self.context.log is not None:
                    self.context.log("warning", f"row skipped: {text}", task=self.context.task)
            self.skipped += refused
        return rows - refused

    def write_rows(self, batch: Batch) -> int:
        keys = [tuple(row[i] for i in self.key_index) for row in batch]
        if self.bulk is None:
            return self._send(self.maker.upserts(batch), [[k] for k in keys])
        return self._bulk("upsert", batch, keys)

    def write_keys(self, keys: Batch) -> int:
        if self.bulk is None:
            return self._send(self.maker.deletes(keys), [[tuple(k)] for k in keys])
        return self._bulk("delete", keys, [tuple(k) for k in keys])

    def _bulk(self, op: str, rows: Batch, keys: list[tuple]) -> int:
        assert self.bulk is not None
        size = self.write.rows_per_request
        groups = [(rows[i : i + size], keys[i : i + size]) for i in range(0, len(rows), size)]
        return self._send([self.bulk.make(op, list(g)) for g, _ in groups], [k for _, k in groups])

    def commit(self) -> None:
        pass  # every request was answered before `write_rows` returned

    def close(self) -> None:
        pass  # the connector owns the client

    def __enter__(self) -> HttpWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _keys(names: list[str], keys: list[tuple]) -> str:
    """`key id='2'`, or for a request of several rows `3 rows, keys id=1; id=2; …`."""
    if not names:
        return f"{len(keys)} row(s) (no keys)"
    shown = ["; ".join(", ".join(f"{n}={v!r}" for n, v in zip(names, k, strict=True)) for k in keys[:3])]
    if len(keys) == 1:
        return f"key {shown[0]}"
    return f"{len(keys)} rows, keys {shown[0]}{'; …' if len(keys) > 3 else ''}"

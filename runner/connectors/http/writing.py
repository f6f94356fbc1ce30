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

from typing import Any, Literal

from pydantic import Field, field_validator

from runner.connectors.base import RowWriter, WriteContext
from runner.connectors.http.client import HttpClient, body_start
from runner.connectors.http.reading import quote_value
from runner.connectors.messaging.model import MessageWrite, check_templates
from runner.connectors.messaging.render import Message, MessageMaker, Templates
from runner.errors import TerminalError
from runner.streams.types import Batch, Column

Method = Literal["POST", "PUT", "PATCH", "DELETE"]
SHOWN_FAILURES = 5  # failed rows named in a task's error


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
        paths.environment().finalize = quote_value
        self.destination = {
            op: {n: paths.text(t, n) for n, t in write.templates(op).items()} for op in ("upsert", "delete")
        }
        self.traced = self.traced or paths.statements
        if not self.rendered:
            self.constant_destination = {
                op: {n: d({}) for n, d in ds.items()} for op, ds in self.destination.items()
            }


class HttpWriter(RowWriter):
    """A `Writer` (runner.connectors.base) that sends a request per row; each answer is in
    before the next row is sent, so `commit` has nothing left to wait for. The API is reached at
    the first request: a dry run makes every request (every template rendered) and sends none."""

    def __init__(
        self, client: HttpClient | None, write: HttpWrite, columns: list[Column], context: WriteContext
    ):
        self.client, self.write, self.context = client, write, context
        self.maker = RequestMaker(write, columns, context)
        by_name = {c.name: c for c in columns}
        self.key_columns = [by_name[k] for k in write.keys]
        self.key_index = [columns.index(c) for c in self.key_columns]
        self.skipped = 0

    def _send(self, messages: list[Message], keys: list[tuple]) -> int:
        if self.context.dry_run or not messages:
            return len(messages)
        assert self.client is not None
        failed: list[str] = []
        for message, key in zip(messages, keys, strict=True):
            delete = message.op == "delete"
            method = self.write.delete_method if delete else self.write.method
            headers = {**message.headers}
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
                what = f"{message.op} of key {_key(self.write.keys, key)}: {method} {self.client.shown(url)}"
                failed.append(f"{what} answered {response.status_code}: {body_start(response)}")
        if failed:
            if self.write.bad_rows == "stop":
                shown = "; ".join(failed[:SHOWN_FAILURES])
                more = f" (and {len(failed) - SHOWN_FAILURES} more)" if len(failed) > SHOWN_FAILURES else ""
                raise TerminalError(f"the API refused {len(failed)} row(s): {shown}{more}")
            for text in failed:
                if self.context.log is not None:
                    self.context.log("warning", f"row skipped: {text}", task=self.context.task)
            self.skipped += len(failed)
        return len(messages) - len(failed)

    def write_rows(self, batch: Batch) -> int:
        keys = [tuple(row[i] for i in self.key_index) for row in batch]
        return self._send(self.maker.upserts(batch), keys)

    def write_keys(self, keys: Batch) -> int:
        return self._send(self.maker.deletes(keys), list(keys))

    def commit(self) -> None:
        pass  # every request was answered before `write_rows` returned

    def close(self) -> None:
        pass  # the connector owns the client

    def __enter__(self) -> HttpWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _key(names: list[str], key: tuple) -> str:
    if not names:
        return "(no keys)"
    return ", ".join(f"{n}={v!r}" for n, v in zip(names, key, strict=True))

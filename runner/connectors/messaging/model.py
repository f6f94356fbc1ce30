"""The `write` of a task whose target is a message broker: what each changed row and each
deleted key becomes (a payload, a key, headers), in templates over the row. Each broker's
model adds where a message goes (an exchange and routing key, a stream, a subject, a topic)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors.messaging.decode import column_type
from runner.definitions.models import Duration, StrictModel
from runner.definitions.needs import Need
from runner.definitions.tasks import ReadModel, Task, WriteModel
from runner.definitions.templates import check_syntax
from runner.streams.types import Column

Structure = str | dict[str, Any] | list[Any]  # a payload template: text, or JSON with template leaves
TEMPLATE_MARK = re.compile(r"\{\{|\{%")

PAYLOAD_HELP = (
    "A mapping (or list) is a JSON payload: each string in it is a Jinja template over the row, "
    "and one that is a single `{{ expression }}` keeps the expression's type (a number stays a "
    "number), so the payload is valid JSON whatever the values hold. A string is a text payload "
    "(a Jinja template rendered as it is, for XML, CSV or plain text). Context: `row` (the row's "
    "columns as JSON encodes them, see README), `key` (the key columns), `op` (`upsert` or "
    "`delete`), `job`, `task`, `run_id`, `id` (the message id)."
)


def check_templates(value: Any, path: str = "") -> None:
    """Every string in a template structure parses as a Jinja template."""
    if isinstance(value, str):
        problem = check_syntax(value)
        if problem:
            raise ValueError(f"{path + ': ' if path else ''}{problem}")
    elif isinstance(value, dict):
        for name, item in value.items():
            check_templates(item, f"{path}.{name}" if path else str(name))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_templates(item, f"{path}[{i}]")


class MessageWrite(WriteModel):
    """What a task publishes: one message per changed row (`op` upsert) and, with deletes
    propagated, one per deleted key (`op` delete). Every message carries an id derived from
    the job, the task, the operation, the key and the row's content: a message sent again
    after a failed run has the id it had, so a consumer can drop the second copy."""

    keys: list[str] = Field(
        default_factory=list,
        description=(
            "Columns that identify a row: the message key and id derive from them; strategies "
            "other than `full`, and deletes, need them."
        ),
    )
    payload: Structure | None = Field(
        None,
        description=(
            "The message of a changed row; unset: the row as a JSON object of its columns. " + PAYLOAD_HELP
        ),
    )
    delete_payload: Structure | None = Field(
        None,
        description="The message of a deleted key; unset: the key columns as a JSON object. Context as "
        "`payload` (`row` is the key columns).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "More headers (a template each, as `payload`'s text). Every message has `runner-op` "
            "(upsert or delete), `runner-id` (its id), `runner-job`, `runner-task` and `runner-run`."
        ),
    )

    @field_validator("payload", "delete_payload")
    @classmethod
    def _structure(cls, value: Structure | None) -> Structure | None:
        if value is not None:
            check_templates(value)
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, template in headers.items():
            if not name or name.lower().startswith("runner-"):
                raise ValueError(f"header {name!r}: names starting with 'runner-' are runner's own")
            check_templates(template, name)
        return headers

    def merged(self) -> bool:
        return False  # a broker keeps what it is sent: it cannot compare or find rows gone

    def unmerged_by(self) -> str:
        return "a message target"

    def describe(self) -> str:
        raise NotImplementedError  # each broker's model says where its messages go

    def needs(self, task: Task) -> list[Need]:
        return [Need("target", "publish", ("write",), "the task publishes a message per changed row")]

    def templates(self, op: str) -> dict[str, str]:
        """Where a message of `op` (upsert or delete) goes, as templates (a routing key, a
        subject): each broker's. A delete's `row` holds the key columns only."""
        return {}


def expand_columns(data: Any) -> Any:
    """A read's `columns` with the shorthand `name: type` written out as `name: {path: name,
    type: type}` (a message's and an API record's columns alike)."""
    columns = data.get("columns") if isinstance(data, dict) else None
    if isinstance(columns, dict):
        expanded = {k: {"path": k, "type": v} if isinstance(v, str) else v for k, v in columns.items()}
        return {**data, "columns": expanded}
    return data


class ColumnPath(StrictModel):
    """Where a column's value is in a JSON payload, and its type."""

    path: str = Field(
        min_length=1, description="A dotted path into the payload: `order.total`, `items.0.sku`."
    )
    type: str = Field(
        min_length=1, description="runner's type: bigint, decimal(12,2), varchar(40), timestamptz, json, ..."
    )

    @field_validator("type")
    @classmethod
    def _type(cls, text: str) -> str:
        column_type(text)
        return text


class MessageRead(ReadModel):
    """What a task consumes from a broker: each message a change of one row, decoded from a
    JSON payload by a mapping of columns (or kept whole in one column); a message whose
    `op_header` says `delete` deletes its key. Messages are acknowledged only after the target
    has committed the batch they are in (`changes.strategy: messages`)."""

    # what a message tells beside its payload, by the name `metadata` gives it (each broker's)
    METADATA: ClassVar[frozenset[str]] = frozenset({"message_id", "headers"})

    columns: dict[str, ColumnPath] | None = Field(
        None,
        description=(
            "The payload (JSON) as columns: `name: type` (the value at the key `name`) or `name: {path, "
            "type}`; a path absent or null is NULL. Values are read as `write` encodes them (README: "
            "values as JSON); a decimal may come as a number, read exactly."
        ),
    )
    content_column: str | None = Field(
        None,
        min_length=1,
        description="Instead of `columns`: the whole payload, as text, in this one column.",
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="More columns from the message itself: `column: what` (message_id, headers as JSON; "
        "each broker adds its own, e.g. RabbitMQ's routing_key, exchange, timestamp, redelivered).",
    )
    op_header: str | None = Field(
        "runner-op",
        min_length=1,
        description="A message whose header of this name says `delete` deletes the row of its key "
        "(with `deletes: propagate` or `soft`; ignored with `ignore`); what runner publishes carries it.",
    )
    max_messages: int | None = Field(
        None, ge=1, description="At most this many messages a run (unset: until the queue is drained)."
    )
    max_wait: Duration = Field(
        "1s",
        description="A run ends once no message has come for this long (the queue is drained).",
    )
    bad_messages: Literal["stop", "dead_letter"] = Field(
        "stop",
        description="A message that cannot become a row: `stop` fails the task (it stays in the queue, "
        "unacknowledged); `dead_letter` sends it, with the reason in the header `runner-error`, to "
        "`dead_letter` and goes on.",
    )
    dead_letter: str | None = Field(
        None, min_length=1, description="Where bad messages go (a queue), with `bad_messages: dead_letter`."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return expand_columns(data)

    @model_validator(mode="after")
    def _shape(self) -> MessageRead:
        if (self.columns is None) == (self.content_column is None):
            raise ValueError("give exactly one of 'columns' (a JSON payload's values) or 'content_column'")
        if (self.bad_messages == "dead_letter") != (self.dead_letter is not None):
            raise ValueError(
                "bad_messages: dead_letter goes with 'dead_letter' (where they go), and only then"
            )
        unknown = sorted(set(self.metadata.values()) - self.METADATA)
        if unknown:
            raise ValueError(
                f"metadata: unknown {', '.join(unknown)}; known: {', '.join(sorted(self.METADATA))}"
            )
        names = [*self.mapping_names(), *self.metadata]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"column {twice[0]!r} is named twice")
        return self

    def mapping_names(self) -> list[str]:
        return list(self.columns) if self.columns is not None else [self.content_column or ""]

    def mapping(self) -> list[tuple[Column, list[str]]]:
        """The payload's columns and their paths (none for `content_column`)."""
        if self.columns is None:
            return []
        return [(Column(name, column_type(c.type)), c.path.split(".")) for name, c in self.columns.items()]

    def describe(self) -> str:
        raise NotImplementedError  # each broker's model says what it consumes

    def lists_deleted_keys(self) -> bool:
        return True  # a delete is a message of its own

    def declared_columns(self) -> list[str] | None:
        named = list(self.columns or {}) + ([self.content_column] if self.content_column else [])
        return [*named, *self.metadata]

    def check(self, task: Task) -> None:
        if task.changes.strategy != "messages":
            raise ValueError("a task consuming messages uses changes.strategy 'messages'")
        if self.content_column is not None and task.write.keys:
            raise ValueError("with read.content_column there is no key to merge by: leave write.keys out")

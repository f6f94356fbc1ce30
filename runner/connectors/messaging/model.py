"""The `write` of a task whose target is a message broker: what each changed row and each
deleted key becomes (a payload, a key, headers), in templates over the row. Each broker's
model adds where a message goes (an exchange and routing key, a stream, a subject, a topic)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from runner.definitions.needs import Need
from runner.definitions.tasks import Task, WriteModel
from runner.definitions.templates import check_syntax

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

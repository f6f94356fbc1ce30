"""A task publishing to a broker is checked with the broker kind's `write` model, located in
the file: its fields only under a broker target, a table's fields never under one, deletes only
where they can be listed, templates that parse, and a password only as a secret reference."""

from __future__ import annotations

import pytest

from runner import services
from runner.errors import DefinitionsInvalid, Problem

CONNECTIONS = """
apiVersion: runner/v1
kind: Connection
metadata: {name: shop}
spec: {type: sqlite, url: "sqlite:///shop.db"}
---
apiVersion: runner/v1
kind: Connection
metadata: {name: rabbit}
spec: {type: rabbitmq, host: 127.0.0.1}
"""


def problems(project) -> list[Problem]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return info.value.problems


def test_a_publishing_task_validates_with_the_broker_kinds_write(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.job(
        "publish",
        "shop",
        "rabbit",
        """
        - name: orders
          read: {table: orders}
          write: {routing_key: "orders.{{ row.region }}", keys: [id], payload: {id: "{{ row.id }}"}}
          changes: {strategy: hash}
          deletes: propagate
        """,
    )
    (job,) = [d for d in services.validate(project.ws) if d.kind == "Job"]
    (task,) = job.spec.tasks
    assert type(task.write).__name__ == "RabbitWrite"
    assert task.write.describe() == "(default exchange)/orders.{{ row.region }}"


def test_table_fields_under_a_broker_and_broker_fields_under_a_table_are_refused(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.job(
        "publish", "shop", "rabbit", "- {name: t, read: {table: a}, write: {table: b, routing_key: k}}"
    )
    project.job("copy", "shop", "shop", "- {name: t, read: {table: a}, write: {table: b, routing_key: k}}")
    found = sorted(
        (p.location.file.rsplit("/", 1)[-1], p.location.field, p.message) for p in problems(project)
    )
    assert found == [
        ("copy.yaml", "spec.tasks[0].write.routing_key", "unknown field 'routing_key'"),
        ("publish.yaml", "spec.tasks[0].write.table", "unknown field 'table'"),
    ]


def test_deletes_a_broker_cannot_be_told_are_refused(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.job(
        "publish",
        "shop",
        "rabbit",
        "- {name: t, read: {table: a}, write: {routing_key: k, keys: [id]}, deletes: propagate}",
    )
    (p,) = problems(project)
    assert p.location.field == "spec.tasks[0]"
    assert "need the deleted keys listed: use strategy 'hash'" in p.message


def test_a_consuming_task_is_checked_with_the_brokers_read(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.job("tables", "rabbit", "shop", "- {name: t, read: {table: a}, write: {table: b}}")
    project.job(
        "strategy",
        "rabbit",
        "shop",
        "- {name: t, read: {queue: q, columns: {id: bigint}}, write: {table: b, keys: [id]}}",
    )
    project.job(
        "types",
        "rabbit",
        "shop",
        """
        - name: t
          read: {queue: q, columns: {id: bigint, at: {path: x.at, type: datetime}}}
          write: {table: b, keys: [id]}
          changes: {strategy: messages}
        """,
    )
    project.job(
        "sql",
        "shop",
        "shop",
        "- {name: t, read: {table: a}, write: {table: b, keys: [id]}, changes: {strategy: messages}}",
    )
    found = sorted(
        (p.location.file.rsplit("/", 1)[-1], p.location.field, p.message) for p in problems(project)
    )
    assert found[0][:2] == ("sql.yaml", "spec.tasks[0].changes.strategy")
    assert "the source connection 'shop' is of type 'sqlite', which cannot (consume)" in found[0][2]
    assert found[1] == (
        "strategy.yaml",
        "spec.tasks[0]",
        "a task consuming messages uses changes.strategy 'messages'",
    )
    assert (
        "tables.yaml",
        "spec.tasks[0].read.queue",
        "required field is missing",
    ) in found  # the broker's read
    assert ("tables.yaml", "spec.tasks[0].read.table", "unknown field 'table'") in found
    (bad_type,) = [f for f in found if f[0] == "types.yaml"]
    assert bad_type[1] == "spec.tasks[0].read.columns.at.type"
    assert bad_type[2].startswith("unknown type 'datetime'; runner's types: smallint")


def test_a_payload_template_that_does_not_parse_is_located(project):
    project.write("connections.d/all.yaml", CONNECTIONS)
    project.job(
        "publish",
        "shop",
        "rabbit",
        """
        - name: t
          read: {table: a}
          write: {routing_key: k, payload: {a: {b: "{{ row.x "}}}
        """,
    )
    (p,) = problems(project)
    assert (p.location.line, p.location.field) == (10, "spec.tasks[0].write.payload")
    assert p.message.startswith("a.b: invalid template")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{type: rabbitmq, host: 127.0.0.1, username: u, password: hunter2}", "the password is written out"),
        ("{type: rabbitmq, host: 127.0.0.1, password: '${env:PW}'}", "a password goes with a 'username'"),
        (
            "{type: rabbitmq, host: mq.example.com, username: u, password: '${env:PW}'}",
            "without TLS would send the password in the clear",
        ),
    ],
)
def test_broker_credentials_are_secret_references_sent_safely(project, spec, message):
    project.write(
        "connections.d/mq.yaml",
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: mq}}\nspec: {spec}\n",
    )
    (p,) = problems(project)
    assert message in p.message
    assert "hunter2" not in str(p)

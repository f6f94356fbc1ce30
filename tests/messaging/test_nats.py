"""The `nats` kind beyond the contract suite: a subject no stream takes, the expected stream,
JetStream's deduplication of a resend by `Nats-Msg-Id`, the write's and the connection's rules,
and `runner connections test`, on the NATS JetStream of this machine."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runner import services
from runner.changes.task import RunOptions
from tests.conftest import _unreachable
from tests.messaging.conftest import define, problems

SPEC = {"type": "nats", "host": "127.0.0.1"}


class JetStream:
    """Streams of a test's own (deleted after), through nats-py in a loop of the test's."""

    def __init__(self) -> None:
        import nats

        async def quiet(exc: Exception) -> None:
            pass

        self.loop = asyncio.new_event_loop()
        try:
            self.nc = self.loop.run_until_complete(
                nats.connect(
                    "nats://127.0.0.1:4222",
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=1,
                    error_cb=quiet,
                )
            )
        except Exception as exc:
            self.loop.close()
            _unreachable("NATS at 127.0.0.1:4222", exc)
        self.js = self.nc.jetstream()
        self.tag = uuid.uuid4().hex[:12]
        self.streams: list[str] = []

    def add(self, role: str, subjects: list[str]) -> str:
        name = f"runner-test-{role}-{self.tag}"
        self.loop.run_until_complete(self.js.add_stream(name=name, subjects=subjects))
        self.streams.append(name)
        return name

    def messages(self, stream: str) -> list[tuple[str, dict[str, str], Any]]:
        async def get() -> list[tuple[str, dict[str, str], Any]]:
            last = (await self.js.stream_info(stream)).state.last_seq
            got = [await self.js.get_msg(stream, seq) for seq in range(1, last + 1)]
            return [(m.subject, dict(m.headers or {}), json.loads(m.data)) for m in got]

        return self.loop.run_until_complete(get())

    def publish(self, subject: str, bodies: list[bytes]) -> None:
        async def send() -> None:
            for body in bodies:
                await self.js.publish_async(subject, body)
            await asyncio.wait_for(self.js.publish_async_completed(), 30)

        self.loop.run_until_complete(send())

    def durable(self, stream: str, name: str, **config: Any) -> Any:
        """A durable pull consumer made as runner makes it, with `config` (none: the server's
        defaults); its info."""
        from nats.js import api

        consumer = api.ConsumerConfig(
            durable_name=name, ack_policy=api.AckPolicy.ALL, ack_wait=3600, **config
        )
        return self.loop.run_until_complete(self.js.add_consumer(stream, consumer))

    def consumer(self, stream: str, name: str) -> Any:
        return self.loop.run_until_complete(self.js.consumer_info(stream, name))

    def close(self) -> None:
        for name in self.streams:
            self.loop.run_until_complete(self.js.delete_stream(name))
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


@pytest.fixture
def jetstream() -> Iterator[JetStream]:
    js = JetStream()
    yield js
    js.close()


def test_subjects_per_row_and_a_resend_stored_once(jetstream, publish, project):
    prefix = f"runner-test.{jetstream.tag}"
    stream = jetstream.add("orders", [f"{prefix}.>"])
    write = {"subject": prefix + ".orders.{{ row.region }}", "delete_subject": f"{prefix}.deleted"}
    first = publish(SPEC, write, deletes="propagate")
    assert (first["status"], first["upserted"]) == ("succeeded", 3)
    messages = jetstream.messages(stream)
    assert sorted((s, b["id"]) for s, _, b in messages) == [
        (f"{prefix}.orders.north", 1),
        (f"{prefix}.orders.north", 3),
        (f"{prefix}.orders.south", 2),
    ]
    assert all(h["Nats-Msg-Id"] == h["runner-id"] for _, h, _ in messages)
    # forgetting the digests sends every row again, with the ids it had: JetStream stores none twice
    again = services.run(project.ws, "publish", RunOptions(resync=True))["tasks"][0]
    assert again["upserted"] == 3
    assert len(jetstream.messages(stream)) == 3


def test_a_subject_no_stream_takes_fails_the_task_and_nothing_is_recorded(jetstream, publish):
    subject = f"runner-test.{jetstream.tag}.nowhere"
    failed = publish(SPEC, {"subject": subject})
    assert failed["status"] == "failed"
    assert f"no JetStream stream takes subject {subject!r} (no responders)" in failed["error"]
    stream = jetstream.add("late", [subject])
    second = publish()
    assert (second["status"], second["upserted"]) == ("succeeded", 3)
    assert len(jetstream.messages(stream)) == 3


def test_the_expected_stream_refuses_a_message_another_stream_takes(jetstream, publish):
    subject = f"runner-test.{jetstream.tag}.orders"
    jetstream.add("taker", [subject])
    failed = publish(SPEC, {"subject": subject, "stream": "some-other-stream"})
    assert failed["status"] == "failed"
    assert "JetStream refused a message: expected stream does not match" in failed["error"]


@pytest.mark.parametrize(
    ("write", "message"),
    [
        ({"subject": "a", "headers": {"bad:name": "x"}}, "a NATS header name is printable ASCII"),
        ({"subject": "a", "headers": {"Nats-Msg-Id": "x"}}, "names starting with 'Nats-' are JetStream's"),
        ({"delete_subject": "a"}, "subject: required field is missing"),
    ],
)
def test_a_write_is_checked_with_the_kinds_rules(project, shop, write, message):
    define(project, SPEC, write)
    (p,) = problems(project)
    assert message in f"{p.location.field.rsplit('.', 1)[-1]}: {p.message}"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"token": "hunter2"}, "the password is written out"),
        ({"token": "${env:T}", "username": "u", "password": "${env:P}"}, "a 'token' or with 'username'"),
        ({"host": "nats.example.com", "token": "${env:T}"}, "would send the token in the clear"),
    ],
)
def test_a_token_is_a_secret_reference_sent_safely(project, shop, spec, message):
    define(project, {**SPEC, **spec}, {"subject": "a"})
    (p,) = problems(project)
    assert message in p.message and "hunter2" not in str(p)


def test_connections_test_signs_in_and_asks_jetstream(jetstream, project, shop):
    define(project, SPEC, {"subject": "a"})
    services.apply(project.ws)
    (result,) = services.connections_test(project.ws, "mq")
    assert result["ok"] and result["server"].startswith("NATS ") and result["server"].endswith("JetStream")
    define(project, {**SPEC, "port": 1}, {"subject": "a"})
    services.apply(project.ws)
    (result,) = services.connections_test(project.ws, "mq")
    assert not result["ok"] and "cannot reach NATS at 127.0.0.1:1" in result["checks"][0]["detail"]


def test_every_header_arrives_the_runs_and_each_messages_own(jetstream, publish):
    """runner encodes the frames itself: the headers every message of the run carries (encoded
    once), each message's own, `Nats-Msg-Id` and `Nats-Expected-Stream`, values stripped."""
    subject = f"runner-test.{jetstream.tag}.orders"
    stream = jetstream.add("headers", [subject])
    write = {
        "subject": subject,
        "stream": stream,
        "headers": {"source": " shop ", "region": "{{ row.region }}"},
    }
    assert publish(SPEC, write)["status"] == "succeeded"
    messages = jetstream.messages(stream)
    assert [(b["id"], h["region"]) for _, h, b in messages] == [(1, "north"), (2, "south"), (3, "north")]
    run_id = messages[0][1]["runner-run"]
    for _, headers, body in messages:
        ident = headers["runner-id"]
        assert headers == {
            "runner-op": "upsert",
            "runner-id": ident,
            "runner-job": "default/publish",
            "runner-task": "orders",
            "runner-run": run_id,
            "source": "shop",
            "region": {1: "north", 2: "south", 3: "north"}[body["id"]],
            "Nats-Expected-Stream": stream,
            "Nats-Msg-Id": ident,
        }


def test_a_header_value_with_a_line_break_fails_the_task(jetstream, publish):
    subject = f"runner-test.{jetstream.tag}.orders"
    stream = jetstream.add("breaks", [subject])
    failed = publish(SPEC, {"subject": subject, "headers": {"note": "{{ row.region }}\nX-Injected: 1"}})
    assert failed["status"] == "failed"
    assert "write.headers.note: a NATS header value holds no line break" in failed["error"]
    assert jetstream.messages(stream) == []


def test_a_message_over_the_servers_max_payload_fails_the_task(jetstream, publish, shop):
    subject = f"runner-test.{jetstream.tag}.orders"
    stream = jetstream.add("big", [subject])
    shop.execute("UPDATE orders SET region = ? WHERE id = 2", ("x" * 2_000_000,))  # nats-server: 1 MB
    shop.commit()
    failed = publish(SPEC, {"subject": subject})
    assert failed["status"] == "failed"
    assert "is larger than the server's max_payload" in failed["error"]
    assert len(jetstream.messages(stream)) <= 1  # the first may have gone: the next run sends it again


def test_more_messages_than_may_be_in_flight_are_each_stored_once(jetstream, publish, shop):
    """Over `IN_FLIGHT` (4,000) unacknowledged, the publisher waits for acknowledgements to free
    a chunk's room: a batch of 9,003 messages, every one stored, none twice."""
    subject = f"runner-test.{jetstream.tag}.orders"
    stream = jetstream.add("many", [subject])
    shop.executemany("INSERT INTO orders VALUES (?, 'east', '1.00')", [(i,) for i in range(4, 9004)])
    shop.commit()
    done = publish(SPEC, {"subject": subject})
    assert (done["status"], done["upserted"]) == ("succeeded", 9003)
    messages = jetstream.messages(stream)
    assert sorted(b["id"] for _, _, b in messages) == list(range(1, 9004))
    assert len({h["Nats-Msg-Id"] for _, h, _ in messages}) == 9003


def test_a_run_consumes_past_jetstreams_default_of_1000_unacknowledged(jetstream, project):
    """JetStream hands a consumer at most its `max_ack_pending` messages unacknowledged (1,000
    unless set), so a fetch stopped there and the run took the stream for drained: runner's
    durable takes three batches' worth (two are pending while the next is read ahead), and one
    made with the default (an older runner's) is raised to that. One run reads the whole
    stream, in four batches of 700."""
    subject = f"runner-test.{jetstream.tag}.items"
    stream = jetstream.add("consume", [subject])
    jetstream.publish(subject, [json.dumps({"id": i}).encode() for i in range(2500)])
    assert jetstream.durable(stream, "runner").config.max_ack_pending == 1000
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    head = "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: mq}\n"
    project.write("connections.d/mq.yaml", f"{head}spec: {json.dumps(SPEC)}\n")
    task = {
        "name": "items",
        "read": {"stream": stream, "columns": {"id": "bigint"}, "max_wait": "0.5s"},
        "write": {"table": "items", "keys": ["id"]},
        "changes": {"strategy": "messages"},
    }
    project.job("consume", "mq", "dst", f"- {json.dumps(task)}", extra="  batch_size: 700\n")
    services.apply(project.ws)
    record = services.run(project.ws, "consume")
    assert (record["status"], record["tasks"][0]["rows_read"]) == ("succeeded", 2500), record["error"]
    db = sqlite3.connect(project.root / "dst.db")
    assert db.execute("SELECT count(*), min(id), max(id) FROM items").fetchone() == (2500, 0, 2499)
    db.close()
    info = jetstream.consumer(stream, "runner")
    assert (info.config.max_ack_pending, info.num_pending, info.num_ack_pending) == (2100, 0, 0)

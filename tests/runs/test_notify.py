"""Notifications (`spec.notify`) against a real SMTP server (aiosmtpd on loopback, with
STARTTLS on a certificate made in the test and a password checked) and a local HTTP endpoint;
one that cannot be delivered is a warning and never changes the run's status; no secret is
ever written."""

from __future__ import annotations

import email
import email.policy
import http.server
import json
import shutil
import socket
import sqlite3
import ssl
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner import services
from runner.changes.task import RunOptions
from runner.cli.app import app
from runner.history import files as history
from runner.runs import notify

PASSWORD = "smtp-pa55word-xyz"
TOKEN = "hook-t0ken-abc123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[list[str], email.message.EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the STARTTLS test")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def mailbox(project) -> Iterator[Mailbox]:
    """An SMTP server on loopback that requires STARTTLS and the password before it takes mail."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    cert, key = _certificate(project.root)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    box = Mailbox(_free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            box.messages.append((list(envelope.rcpt_tos), message))
            return "250 OK"

    def authenticate(server, session, envelope, mechanism, data):
        login, password = data.login.decode(), data.password.decode()
        box.logins.append((login, password))
        return AuthResult(success=(login, password) == ("runner", PASSWORD), handled=False)

    controller = Controller(
        Handler(),
        hostname="127.0.0.1",
        port=box.port,
        tls_context=tls,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    yield box
    controller.stop()


@dataclass
class Hook:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    answer: int = 204
    delay: float = 0.0


@pytest.fixture
def hook() -> Iterator[Hook]:
    """An HTTP endpoint on loopback that keeps what is POSTed to it."""
    port = _free_port()
    found = Hook(f"http://127.0.0.1:{port}/runs")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            found.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            found.paths.append(self.path)
            time.sleep(found.delay)
            self.send_response(found.answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    server.shutdown()
    server.server_close()


def _project(project, notify: str, fail: bool, port: int = 25, starttls: bool = True) -> None:
    db = sqlite3.connect(project.root / "src.db")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(4)])
    db.commit()
    db.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    ca = "\n          ca_file: cert.pem" if starttls else ""
    project.write(
        "connections.d/mail.yaml",
        f"""
        apiVersion: runner/v1
        kind: Connection
        metadata: {{name: mail}}
        spec:
          type: smtp
          host: 127.0.0.1
          port: {port}
          sender: runner@example.com
          username: runner
          password: ${{env:SMTP_PASSWORD}}
          starttls: {str(starttls).lower()}{ca}
        """,
    )
    tasks = "- {name: items, read: {table: items}, write: {table: items, keys: [id]}}"
    if fail:
        tasks += "\n- {name: broken, read: {table: nope}, write: {table: nope}}"
    extra = "  on_error: continue\n  notify:\n" + textwrap.indent(textwrap.dedent(notify).strip("\n"), "    ")
    project.job("copy", "src", "dst", tasks, extra=extra + "\n")
    services.apply(project.ws)


def _everything_written(project, record) -> str:
    """The run's history file and log, and the state store, as text."""
    log = history.find_log(project.ws.history, record["run_id"]).read_text()
    run = history.find_run(project.ws.history, record["run_id"]).read_text()
    store = b"".join(p.read_bytes() for p in project.root.rglob("*.db*")).decode("latin-1")
    return log + run + store


def test_an_email_on_failure_through_starttls_lists_tasks_counts_and_errors(project, mailbox, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    _project(
        project,
        """
        - email:
            connection: mail
            to: [ops@example.com, dba@example.com]
            subject: "[{{ namespace }}] {{ job }} {{ status }}: {{ rows_written }} rows"
        """,
        fail=True,
        port=mailbox.port,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed"
    assert record["notifications"] == [
        {"channel": "email", "to": ["ops@example.com", "dba@example.com"], "status": "sent"}
    ]
    assert mailbox.logins == [("runner", PASSWORD)]
    ((recipients, message),) = mailbox.messages
    assert recipients == ["ops@example.com", "dba@example.com"]
    assert message["From"] == "runner@example.com" and message["To"] == "ops@example.com, dba@example.com"
    assert message["Subject"] == "[default] copy failed: 4 rows"
    body = message.get_content()
    assert f"Run: {record['run_id']} (manual, normal)" in body
    assert "Job default/copy: failed" in body and f"seconds: {record['seconds']}" in body
    assert "Rows read: 4, rows written: 4" in body
    assert "  items: succeeded (rows_read 4, inserted 4, updated 0, upserted 0, deleted 0)" in body
    assert "  broken: failed (rows_read 0," in body and "    error: table 'nope' not found" in body
    on_disk = json.loads(history.find_run(project.ws.history, record["run_id"]).read_text())
    assert on_disk["notifications"] == record["notifications"]
    assert PASSWORD not in _everything_written(project, record)


def test_failure_only_sends_nothing_after_a_success_and_always_does(project, mailbox, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    _project(
        project,
        """
        - email: {connection: mail, to: [ops@example.com]}
        - email: {connection: mail, to: [all@example.com]}
          when: always
        """,
        fail=False,
        port=mailbox.port,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    assert [(to, m["Subject"]) for to, m in mailbox.messages] == [
        (["all@example.com"], "runner: copy succeeded")
    ]
    assert [n["to"] for n in record["notifications"]] == [["all@example.com"]]


def test_a_webhook_posts_the_run_record_with_a_secret_header(project, hook, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    _project(
        project,
        f"""
        - webhook:
            url: {hook.url}
            headers: {{Authorization: "Bearer ${{env:HOOK_TOKEN}}", X-Team: data}}
        """,
        fail=True,
    )
    record = services.run(project.ws, "copy")
    shown = hook.url.rsplit("/", 1)[0] + "/…"  # scheme and host: the path may be a secret
    assert record["notifications"] == [{"channel": "webhook", "url": shown, "status": "sent"}]
    ((headers, body),) = hook.requests
    assert headers["authorization"] == f"Bearer {TOKEN}" and headers["x-team"] == "data"
    assert headers["content-type"] == "application/json"
    posted = json.loads(body)
    assert (posted["run_id"], posted["status"], posted["job"]) == (record["run_id"], "failed", "copy")
    assert [(t["name"], t["status"]) for t in posted["tasks"]] == [
        ("items", "succeeded"),
        ("broken", "failed"),
    ]
    assert posted["error"] == record["error"] and "notifications" not in posted
    assert TOKEN not in _everything_written(project, record)
    result = CliRunner().invoke(app, ["--dir", str(project.root), "run", "copy"])
    assert f"  webhook to {shown}: sent" in result.stdout.splitlines() and TOKEN not in result.output


def test_a_notification_that_cannot_be_delivered_is_a_warning_and_the_run_keeps_its_status(
    project, hook, monkeypatch
):
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-" + PASSWORD)
    hook.answer = 500
    _project(
        project,
        f"""
        - {{email: {{connection: mail, to: [ops@example.com]}}, when: always, timeout: 2}}
        - {{webhook: {{url: {hook.url}}}, when: always}}
        """,
        fail=False,
        port=_free_port(),  # nothing listens there
        starttls=False,
    )
    started = time.monotonic()
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded" and record["error"] is None
    assert [(n["channel"], n["status"]) for n in record["notifications"]] == [
        ("email", "failed"),
        ("webhook", "failed"),
    ]
    assert "ConnectionRefusedError" in record["notifications"][0]["error"]
    shown = hook.url.rsplit("/", 1)[0] + "/…"
    assert record["notifications"][1]["error"] == f"{shown} answered 500 Internal Server Error"
    warnings = [
        e["message"] for e in history.read_log(history.find_log(project.ws.history, record["run_id"]))
    ]
    assert (
        sum(
            m.startswith(("email notification not delivered", "webhook notification not delivered"))
            for m in warnings
        )
        == 2
    )
    assert time.monotonic() - started < 10


def test_a_slow_endpoint_is_given_up_on_after_the_timeout(project, hook):
    hook.delay = 5
    _project(project, f"- {{webhook: {{url: {hook.url}}}, when: always, timeout: 1}}", fail=False)
    started = time.monotonic()
    record = services.run(project.ws, "copy")
    assert time.monotonic() - started < 4
    assert record["status"] == "succeeded" and record["notifications"][0]["status"] == "failed"
    assert "timed out" in record["notifications"][0]["error"]


def test_a_refused_password_is_never_written(project, mailbox, monkeypatch):
    wrong = "wrong-" + PASSWORD
    monkeypatch.setenv("SMTP_PASSWORD", wrong)
    _project(
        project, "- {email: {connection: mail, to: [ops@example.com]}, when: always}", False, mailbox.port
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded" and mailbox.messages == []
    assert set(mailbox.logins) == {("runner", wrong)}  # PLAIN, then LOGIN
    assert "SMTPAuthenticationError" in record["notifications"][0]["error"]
    assert wrong not in _everything_written(project, record)


def test_dry_runs_send_nothing(project, hook):
    _project(project, f"- {{webhook: {{url: {hook.url}}}, when: always}}", fail=False)
    record = services.run(project.ws, "copy", RunOptions(dry_run=True))
    assert record["status"] == "succeeded" and hook.requests == [] and record.get("notifications") == []


def test_connections_test_signs_in_to_the_smtp_server(project, mailbox, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    _project(project, "- {email: {connection: mail, to: [ops@example.com]}}", False, mailbox.port)
    (result,) = services.connections_test(project.ws, "mail")
    assert (result["type"], result["ok"], result["checks"]) == (
        "smtp",
        True,
        [{"check": "connect", "ok": True, "detail": ""}],
    )
    assert result["server"] and mailbox.logins == [("runner", PASSWORD)] and mailbox.messages == []
    monkeypatch.setenv("SMTP_PASSWORD", "wrong-" + PASSWORD)
    (result,) = services.connections_test(project.ws, "mail")
    assert result["ok"] is False and "SMTPAuthenticationError" in result["checks"][0]["detail"]
    assert PASSWORD not in json.dumps(result)


def test_a_subject_leaves_out_what_the_run_has_not():
    # `{{ error }}` of a run that succeeded is empty, not the word None
    record = {"job": "copy", "status": "succeeded", "error": None, "rows_written": 3}
    assert notify.subject("{{ job }} {{ status }} {{ error }}", record) == "copy succeeded"
    assert notify.subject("{{ job }}: {{ error or 'no error' }}", record) == "copy: no error"
    failed = record | {"status": "failed", "error": "task t: boom"}
    assert notify.subject("{{ job }} {{ status }} {{ error }}", failed) == "copy failed task t: boom"


def test_a_webhook_url_held_in_a_secret_sends_no_secret_in_the_clear_beyond_this_machine(
    project, hook, monkeypatch
):
    """A URL given by reference is known only when sent: http:// to a host that is not
    loopback is refused then, before any byte goes. 0.0.0.0 is such a host by its address,
    yet Linux connects it to this machine: without the check the token would reach the hook."""
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("HOOK_URL", hook.url.replace("127.0.0.1", "0.0.0.0"))
    _project(
        project,
        "- {webhook: {url: '${env:HOOK_URL}', headers: {Authorization: 'Bearer ${env:HOOK_TOKEN}'}},"
        " when: always}",
        fail=False,
    )
    record = services.run(project.ws, "copy")
    (sent,) = record["notifications"]
    assert sent["status"] == "failed" and sent["url"] == "${env:HOOK_URL}"
    assert sent["error"] == (
        "the webhook would send the secret in its URL and header 'Authorization' to ${env:HOOK_URL} over "
        "http://, in the clear: use https://; only a server on this machine (localhost) may take it plain"
    )
    assert hook.requests == [] and record["status"] == "succeeded"
    assert TOKEN not in _everything_written(project, record)


def test_a_webhook_url_held_in_a_secret_is_used_and_never_written(project, hook, monkeypatch):
    """Services such as Slack put the secret in the URL's path: the URL may be a reference, and
    logs and history show the reference (or, for a literal URL, its scheme and host) only."""
    secret_path = "T000/B000/s3cr3t-path"
    monkeypatch.setenv("HOOK_URL", f"{hook.url}/{secret_path}")
    _project(project, "- {webhook: {url: '${env:HOOK_URL}'}, when: always}", fail=False)
    record = services.run(project.ws, "copy")
    assert record["notifications"] == [{"channel": "webhook", "url": "${env:HOOK_URL}", "status": "sent"}]
    assert hook.paths == [f"/runs/{secret_path}"]
    assert secret_path not in _everything_written(project, record)

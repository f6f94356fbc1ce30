"""A job's notifications (`spec.notify`): an email through an `smtp` connection or a webhook
(the run's history record POSTed as JSON), after failed runs or after every run.

They are sent once the run's record is written as ended, each within its `timeout`. One that
cannot be delivered is logged as a warning and listed as failed in the record's
`notifications`; it never changes the run's status. Dry and limited runs send none. Secret
header values and the SMTP password are resolved here and redacted from every message.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner.changes.task import Log
from runner.connectors import smtp
from runner.definitions import secrets
from runner.definitions.events import Email, Notification, Webhook, clear_text, shown_url
from runner.definitions.jobs import JobSpec
from runner.definitions.load import resolve_reference
from runner.definitions.models import seconds
from runner.definitions.templates import environment
from runner.errors import RunnerError
from runner.history.records import NotificationRecord, RunRecord


def wanted(notification: Notification, record: RunRecord) -> bool:
    return notification.when == "always" or record.get("status") == "failed"


def send_all(
    spec: JobSpec,
    record: RunRecord,
    connections: dict[tuple[str, str], dict[str, Any]],
    base_dir: Path,
    log: Log,
) -> list[NotificationRecord]:
    """Send the notifications the run's end calls for; what became of each.

    Args:
        connections: the applied connections' specs by (namespace, name), where an email's
            `connection` is looked up from the job's namespace.
    """
    if record.get("mode", "normal") != "normal":
        if any(wanted(n, record) for n in spec.notify):
            log("info", f"no notification sent: a {record.get('mode')} run sends none")
        return []
    sent: list[NotificationRecord] = []
    for notification in spec.notify:
        if not wanted(notification, record):
            continue
        hook = notification.webhook
        result: NotificationRecord = (
            {"channel": "email", "to": list(notification.email.to)}
            if notification.email is not None
            else {"channel": "webhook", "url": shown_url(hook.url) if hook else ""}
        )
        try:
            _deliver(notification, record, connections, base_dir)
            result["status"] = "sent"
            log("info", f"{result['channel']} notification sent", to=result.get("to"), url=result.get("url"))
        except RunnerError as exc:
            result |= {"status": "failed", "error": secrets.redact(str(exc))}
            log("warning", f"{result['channel']} notification not delivered: {result['error']}")
        sent.append(result)
    return sent


def _deliver(
    notification: Notification,
    record: RunRecord,
    connections: dict[tuple[str, str], dict[str, Any]],
    base_dir: Path,
) -> None:
    limit = seconds(notification.timeout)
    if notification.email is not None:
        _email(notification.email, record, connections, base_dir, limit)
    elif notification.webhook is not None:
        _webhook(notification.webhook, record, base_dir, limit)


# --- email ---------------------------------------------------------------------------------


def subject(template: str, record: RunRecord) -> str:
    """The rendered subject on one line.

    Raises:
        RunnerError: the template failed to render (the notification is not sent, and says why).
    """
    names = ("job", "namespace", "run_id", "status", "rows_read", "rows_written", "seconds", "error")
    try:
        # a fact the run has not (`error` of a run that succeeded) is empty, never "None"
        facts = {k: "" if record.get(k) is None else record.get(k) for k in names}
        text = environment().from_string(template).render(facts)
    except Exception as exc:  # noqa: BLE001 - a template's error (TemplateLimit, an undefined name)
        raise RunnerError(f"the subject template failed: {type(exc).__name__}: {exc}") from None
    return " ".join(text.split())[:250]


def body(record: RunRecord) -> str:
    """The message: how the run ended, its tasks with their counts and errors, its events."""
    lines = [
        f"Job {record['namespace']}/{record['job']}: {record.get('status')}",
        f"Run: {record['run_id']} ({record.get('trigger')}, {record.get('mode', 'normal')})",
        f"Started: {record.get('started_at')}, finished: {record.get('finished_at')}, "
        f"seconds: {record.get('seconds')}",
        f"Rows read: {record.get('rows_read', 0)}, rows written: {record.get('rows_written', 0)}",
    ]
    if record.get("error"):
        lines.append(f"Error: {record['error']}")
    tasks = record.get("tasks", [])
    if tasks:
        lines += ["", "Tasks:"]
        for t in tasks:
            counts = ", ".join(
                f"{k} {t.get(k) or 0}" for k in ("rows_read", "inserted", "updated", "upserted", "deleted")
            )
            lines.append(f"  {t.get('name')}: {t.get('status')} ({counts})")
            if t.get("error"):
                lines.append(f"    error: {t['error']}")
    events = record.get("events", [])
    if events:
        lines += ["", "Events:"]
        for e in events:
            error = f": {e['error']}" if e.get("error") else ""
            lines.append(f"  {e['phase']} {e['index'] + 1} ({e['what']}): {e['status']}{error}")
    if record.get("log"):
        lines += ["", f"Run log: {record['log']}"]
    return "\n".join(lines) + "\n"


def _email(
    email: Email,
    record: RunRecord,
    connections: dict[tuple[str, str], dict[str, Any]],
    base_dir: Path,
    timeout: float,
) -> None:
    key = resolve_reference(email.connection, record["namespace"], set(connections))
    if key is None:
        raise RunnerError(f"connection {email.connection!r} is not applied")
    spec = connections[key]
    if spec.get("type") != "smtp":
        raise RunnerError(f"connection {email.connection!r} is of type {spec.get('type')!r}, not 'smtp'")
    message = EmailMessage()
    message["To"] = ", ".join(email.to)
    message["Subject"] = subject(email.subject, record)
    message.set_content(body(record))
    smtp.send("/".join(key), smtp.SmtpConnectionSpec.model_validate(spec), base_dir, message, timeout)


# --- webhook -------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: followed, it would carry the secret headers somewhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _webhook(hook: Webhook, record: RunRecord, base_dir: Path, timeout: float) -> None:
    try:
        headers = {name: secrets.resolve(value, base_dir) for name, value in hook.headers.items()}
    except secrets.SecretError as exc:
        raise RunnerError(f"a header of the webhook: {exc}") from None
    shown = shown_url(hook.url)
    try:
        url = secrets.resolve(hook.url, base_dir)
    except secrets.SecretError as exc:
        raise RunnerError(f"the webhook's URL: {exc}") from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        raise RunnerError(f"the webhook's URL {shown} is not an http(s) URL without a user or password")
    plain = clear_text(hook, url, shown)
    if plain:  # a host given by reference: known only now
        raise RunnerError(plain)
    data = json.dumps({k: v for k, v in record.items() if k != "path"}, default=str).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"User-Agent": "runner", **headers, "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            response.read(1 << 16)
    except urllib.error.HTTPError as exc:
        raise RunnerError(f"{shown} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RunnerError(f"{shown} could not be reached: {secrets.redact(str(reason))}") from None

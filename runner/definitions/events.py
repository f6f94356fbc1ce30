"""What a job does around its run, whatever its type: events before and after it (SQL on the
job's source or target, or a command), notifications when it ends (an email through an `smtp`
connection, a webhook), and the lowest level its run log keeps.

The models live here, beside `JobSpec` which holds them; the checks that need other documents
(the connection an SQL event runs on can run statements, `notify` names an `smtp` connection)
are `event_problems` and `notify_problems`, given the kinds by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from runner.definitions import secrets
from runner.definitions.load import Document
from runner.definitions.models import DURATION_HELP, Duration, StrictModel
from runner.definitions.templates import check_syntax
from runner.errors import MissingName, Problem

if TYPE_CHECKING:
    from runner.definitions.jobs import JobSpec

LogLevel = Literal["debug", "info", "warning"]
COMMAND_TIMEOUT = 60.0  # seconds a command event may take when it states no `timeout`
STATEMENTS = "statements"  # the capability a kind declares when it runs a user's SQL statements
MAIL = "mail"  # the role of a connection kind notifications are sent through (`smtp`)


def _listed(value: Any) -> Any:
    """One statement may be written as a string: it is a list of one."""
    return [value] if isinstance(value, str) else value


class Event(StrictModel):
    """One step before a run: SQL statements on the job's source or target connection, or a
    command. A failing one stops the run before any task."""

    sql: Annotated[list[Annotated[str, Field(min_length=1)]] | None, BeforeValidator(_listed)] = Field(
        None,
        min_length=1,
        description=(
            "SQL statements (one string, or a list), run in order in one transaction on `connection`, "
            "committed after the last; each one's rows affected are logged."
        ),
    )
    connection: Literal["source", "target"] | None = Field(
        None, description="With `sql`: run it on the job's `source` or `target` connection."
    )
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description=(
            "A program and its arguments (no shell), run in the definitions folder with the run's "
            "facts in its environment (RUNNER_JOB, RUNNER_NAMESPACE, RUNNER_RUN_ID, RUNNER_TASKS, and "
            "after a run RUNNER_STATUS, RUNNER_ROWS_READ, RUNNER_ROWS_WRITTEN, RUNNER_ERROR) plus PATH, "
            "HOME and the locale, never the runner's other variables; exit status 0 is success."
        ),
    )
    timeout: Duration | None = Field(
        None,
        description=(
            f"With `command`: stop it (and count it failed) after this long ({DURATION_HELP}); "
            f"default {COMMAND_TIMEOUT:g} seconds."
        ),
    )

    @field_validator("command")
    @classmethod
    def _no_references(cls, command: list[str] | None) -> list[str] | None:
        # arguments are passed as written, and the runner's environment (where an `${env:}`
        # secret lives) is not: a reference would reach the command as its own text
        for arg in command or []:
            match = secrets.REFERENCE.search(arg)
            if match:
                raise ValueError(
                    f"a command's arguments are passed as written: {match.group(0)!r} would reach it as "
                    "that text, and a command gets none of the runner's secrets; have the command read "
                    "its secret itself (from a file or its own configuration)"
                )
        return command

    @model_validator(mode="after")
    def _one_kind(self) -> Event:
        if (self.sql is None) == (self.command is None):
            raise ValueError("give exactly one of 'sql' or 'command'")
        if self.sql is not None and self.connection is None:
            raise ValueError("an 'sql' event needs 'connection: source' or 'connection: target'")
        if self.command is not None and self.connection is not None:
            raise ValueError("'connection' is for an 'sql' event; a command runs on this machine")
        if self.sql is not None and self.timeout is not None:
            raise ValueError("'timeout' is for a command; an SQL event is bounded by the database's own")
        return self

    @property
    def what(self) -> str:
        """How the log and the history name it: `sql on target`, `command ./notify.sh`."""
        if self.command is not None:
            return f"command {self.command[0]}"
        return f"sql on {self.connection}"


class AfterEvent(Event):
    """One step after a run, which sees how the run ended. A failing one is logged as an
    error and listed in the history; the run's status stays what the run made it."""

    when: Literal["succeeded", "failed", "finished"] = Field(
        "finished",
        description="After which runs: succeeded, failed, or finished (every run, cancelled ones too).",
    )


class Events(StrictModel):
    before: list[Event] = Field(
        default_factory=list,
        description="Run in order before the first task; the first that fails stops the run (failed).",
    )
    after: list[AfterEvent] = Field(
        default_factory=list,
        description="Run in order once the tasks are done; each runs even when one before it failed.",
    )


class Email(StrictModel):
    connection: str = Field(
        min_length=1,
        description="An `smtp` connection, named as a job's `source` is (`name` or `namespace/name`).",
    )
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(
        min_length=1, description="Recipients' addresses."
    )
    subject: str = Field(
        "runner: {{ job }} {{ status }}",
        min_length=1,
        description=(
            "A Jinja template (sandboxed) of the subject, given job, namespace, run_id, status, "
            "rows_read, rows_written, seconds and error."
        ),
    )

    @field_validator("subject")
    @classmethod
    def _template(cls, subject: str) -> str:
        problem = check_syntax(subject)
        if problem:
            raise ValueError(problem)
        return subject


class Webhook(StrictModel):
    url: str = Field(
        description=(
            "Where the run record is POSTed as JSON: an http(s) URL, which may be or hold a secret "
            "reference (`${env:SLACK_WEBHOOK}`: services that put the secret in the URL); no user or "
            "password in it (use `headers`). Logs and history show its scheme and host only."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers; a value may be or hold a secret reference (${env:NAME}, ${file:path}).",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: str) -> str:
        if not re.match(r"^(https?://|\$\{)\S+$", url):
            raise ValueError(
                f"{url!r} is not an http(s) URL: write http://… or https://…, or a secret reference "
                "such as ${env:SLACK_WEBHOOK}"
            )
        problems = secrets.check_references(url)
        if problems:
            raise ValueError("; ".join(problems))
        # urllib would take `user:password@` for part of the host name (never sign in with it),
        # and the URL is written to the run log and history as it stands
        if "@" in urlsplit(url).netloc:
            raise ValueError(
                "a webhook URL takes no user or password (it is written to the run log and history); "
                'send them in a header instead: headers: {Authorization: "Basic ${env:NAME}"}'
            )
        return url

    @field_validator("headers")
    @classmethod
    def _references(cls, headers: dict[str, str]) -> dict[str, str]:
        problems = [p for value in headers.values() for p in secrets.check_references(value)]
        if problems:
            raise ValueError("; ".join(problems))
        # as an SMTP password: a credential written out would be kept in git, the state store
        # and `describe`; one header that carries it must reference it
        for name, value in headers.items():
            if secrets.CREDENTIAL_HEADER.search(name) and not secrets.REFERENCE.search(value):
                raise ValueError(
                    f"header {name!r} carries a credential written out: reference it instead, "
                    f'as in "Bearer ${{env:HOOK_TOKEN}}" or ${{file:secrets/hook}}'
                )
        return headers

    @model_validator(mode="after")
    def _not_in_the_clear(self) -> Webhook:
        # as an http connection, a broker or SMTP: a secret crosses the network only under TLS.
        # A host that is itself a reference is checked when the URL is resolved (`clear_text`).
        parts = urlsplit(self.url)
        if not secrets.REFERENCE.search(parts.netloc):
            problem = clear_text(self, self.url, parts.hostname or "")
            if problem:
                raise ValueError(problem)
        return self


def clear_text(hook: Webhook, url: str, shown: str) -> str | None:
    """Why `hook`, POSTed to `url` (resolved or as written; `shown` as messages name it), would
    send a secret in the clear: over http:// to a host other than this machine, with a secret
    reference in its URL or headers. None when it would not."""
    parts = urlsplit(url)
    carried = [f"header {n!r}" for n, v in hook.headers.items() if secrets.REFERENCE.search(v)]
    if secrets.REFERENCE.search(hook.url):
        carried.insert(0, "its URL")
    if parts.scheme != "http" or secrets.loopback(parts.hostname or "") or not carried:
        return None
    return (
        f"the webhook would send the secret in {' and '.join(carried)} to {shown} over "
        "http://, in the clear: use https://; only a server on this machine (localhost) may take it plain"
    )


class Notification(StrictModel):
    """Tell someone how a run ended. A notification that cannot be delivered is logged as a
    warning; it never changes the run's status."""

    email: Email | None = Field(None, description="Send an email through an `smtp` connection.")
    webhook: Webhook | None = Field(None, description="POST the run's history record as JSON.")
    when: Literal["failure", "always"] = Field(
        "failure", description="After failed runs only (not those cancelled by hand), or after every run."
    )
    timeout: Duration = Field(
        30, description=f"Give up delivering after this long ({DURATION_HELP}); logged as a warning."
    )

    @model_validator(mode="after")
    def _one_channel(self) -> Notification:
        if (self.email is None) == (self.webhook is None):
            raise ValueError("give exactly one of 'email' or 'webhook'")
        return self


# --- checks that span documents ------------------------------------------------------------

Resolve = Callable[[str], str | None]  # a connection reference -> its type; None when none exists


def event_problems(
    doc: Document, ends: Mapping[str, str], capabilities: Mapping[str, Collection[str]]
) -> list[Problem]:
    """SQL events on a connection whose kind cannot run statements (`ends`: `source`/`target`
    -> the connection's type), located at the event's `connection`."""
    spec = doc.data.get("spec")
    events = spec.get("events") if isinstance(spec, dict) else None
    problems: list[Problem] = []
    for phase in ("before", "after"):
        listed = events.get(phase) if isinstance(events, dict) else None
        for i, event in enumerate(listed if isinstance(listed, list) else []):
            end = event.get("connection") if isinstance(event, dict) and "sql" in event else None
            kind = ends.get(end) if isinstance(end, str) else None
            if kind and STATEMENTS not in capabilities.get(kind, ()):
                problems.append(
                    Problem(
                        doc.locate(("spec", "events", phase, i, "connection")),
                        f"the {end} connection {spec.get(end)!r} is of type {kind!r}, which cannot run "
                        "SQL statements",
                        "run a command instead, or SQL on a database connection",
                    )
                )
    return problems


def notify_problems(doc: Document, resolve: Resolve, roles: Mapping[str, Collection[str]]) -> list[Problem]:
    """Email notifications naming a connection that does not exist or does not send mail
    (`roles`: connection type -> what it may be used for)."""
    spec = doc.data.get("spec")
    notify = spec.get("notify") if isinstance(spec, dict) else None
    problems: list[Problem] = []
    for i, entry in enumerate(notify if isinstance(notify, list) else []):
        email = entry.get("email") if isinstance(entry, dict) else None
        ref = email.get("connection") if isinstance(email, dict) else None
        if not isinstance(ref, str):
            continue
        where = doc.locate(("spec", "notify", i, "email", "connection"))
        kind = resolve(ref)
        if kind is None:
            problems.append(
                MissingName(where, f"connection {ref!r} does not exist", "define it in connections.d/")
            )
        elif kind and MAIL not in roles.get(kind, ()):
            problems.append(
                Problem(
                    where,
                    f"connection {ref!r} is of type {kind!r}, which cannot send email",
                    "name a connection of type 'smtp'",
                )
            )
    return problems


def header_file_problems(doc: Document, spec: JobSpec, base_dir: Path) -> list[Problem]:
    """`${file:}` references in webhook headers that point outside the folders secrets may be
    read from (as a connection's are checked)."""
    return [
        Problem(doc.locate(("spec", "notify", i, "webhook", "headers", name)), message)
        for i, notification in enumerate(spec.notify)
        if notification.webhook is not None
        for name, value in notification.webhook.headers.items()
        for message in secrets.file_problems(value, base_dir)
    ]


def shown_url(url: str) -> str:
    """A webhook URL as logs, history and errors show it: scheme and host, never the path or
    query (services such as Slack put the secret there); a reference as written."""
    if secrets.REFERENCE.match(url):
        return url
    parts = urlsplit(secrets.REFERENCE.sub("…", url))
    rest = "/…" if parts.path.strip("/") or parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{rest}"

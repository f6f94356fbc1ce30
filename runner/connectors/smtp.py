"""The `smtp` connection kind: a mail server that runs' notifications are sent through.

It is no job's source or target (it registers no connector, and `runner validate` refuses a
job naming it so); a job's `notify` names it. Its password is a secret reference, resolved
when a message is sent and redacted from every message after.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.connectors import registry
from runner.definitions import secrets
from runner.definitions.events import MAIL
from runner.definitions.models import ConnectionSpec
from runner.errors import TerminalError, TransientError


class SmtpConnectionSpec(ConnectionSpec):
    """A mail server (RFC 5321) and how to sign in to it."""

    type: Literal["smtp"] = Field(description="A mail server notifications are sent through.")
    host: str = Field(min_length=1, description="The server's host name or address.")
    port: int = Field(
        25, ge=1, le=65535, description="Its port: usually 25, 587 with `starttls`, 465 with `tls`."
    )
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", description="The From address of the messages sent.")
    username: str | None = Field(None, min_length=1, description="Sign in as this user (with `password`).")
    password: str | None = Field(
        None,
        description="A secret reference, never the password itself: ${env:NAME} or ${file:path}.",
    )
    starttls: bool = Field(False, description="Upgrade the connection with STARTTLS before signing in.")
    tls: bool = Field(False, description="Speak TLS from the start (SMTPS, usually port 465).")
    ca_file: str | None = Field(
        None,
        min_length=1,
        description=(
            "A PEM file of the certificates to trust (relative to the definitions folder), for a "
            "server whose certificate is not signed by a public authority; default the system's."
        ),
    )

    @field_validator("password")
    @classmethod
    def _reference(cls, password: str | None) -> str | None:
        return secrets.check_password(password, "SMTP_PASSWORD", "smtp")

    @model_validator(mode="after")
    def _consistent(self) -> SmtpConnectionSpec:
        if self.starttls and self.tls:
            raise ValueError(
                "choose one of 'starttls' (upgrade a plain connection) or 'tls' (TLS from the start)"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("give 'username' and 'password' together")
        if self.password is not None and not (self.starttls or self.tls) and not secrets.loopback(self.host):
            raise ValueError(
                f"signing in to {self.host} without TLS would send the password in the clear: set "
                "'starttls' (or 'tls'); only a server on this machine (localhost) may take it plain"
            )
        if self.ca_file is not None and not (self.starttls or self.tls):
            raise ValueError(
                "ca_file is for a TLS connection, and this one speaks none: set 'starttls' or 'tls' too"
            )
        return self


TEST_TIMEOUT = 10.0  # seconds `runner connections test` waits for the server


def send(name: str, spec: SmtpConnectionSpec, base_dir: Path, message: EmailMessage, timeout: float) -> None:
    """Deliver `message` (its From is the connection's `sender`) within `timeout` seconds.

    Raises:
        TransientError: the server could not be reached or refused for now.
        TerminalError: the password cannot be resolved, the server refused to sign in or to take
            the message; the message never holds the password.
    """
    message["From"] = spec.sender
    _session(name, spec, base_dir, timeout, lambda client: client.send_message(message))


def check(name: str, spec: SmtpConnectionSpec, base_dir: Path) -> str:
    """Connect, upgrade and sign in as a notification would, send nothing: what the server
    answered to EHLO (its name), for `runner connections test`."""
    said: list[str] = []
    _session(name, spec, base_dir, TEST_TIMEOUT, lambda client: said.append(_banner(client)))
    return said[0]


def _banner(client: Any) -> str:
    answer = client.ehlo_resp or client.helo_resp or b""
    return answer.decode(errors="replace").splitlines()[0] if answer else ""


def _session(
    name: str, spec: SmtpConnectionSpec, base_dir: Path, timeout: float, then: Callable[[Any], object]
) -> None:
    import smtplib  # only when a notification is sent
    import ssl

    try:
        password = secrets.resolve(spec.password, base_dir) if spec.password else None
    except secrets.SecretError as exc:
        raise TerminalError(f"connection {name!r}: {exc}") from None
    try:
        context = ssl.create_default_context(cafile=str(base_dir / spec.ca_file) if spec.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise TerminalError(f"connection {name!r}: ca_file {spec.ca_file!r} cannot be read: {exc}") from None
    try:
        client: smtplib.SMTP
        if spec.tls:
            client = smtplib.SMTP_SSL(spec.host, spec.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(spec.host, spec.port, timeout=timeout)
        with client:
            if spec.starttls:
                client.starttls(context=context)
            if spec.username and password is not None:
                client.login(spec.username, password)
            client.ehlo_or_helo_if_needed()
            then(client)
    except (smtplib.SMTPAuthenticationError, smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
        raise TerminalError(secrets.redact(f"connection {name!r}: {type(exc).__name__}: {exc}")) from None
    except (OSError, smtplib.SMTPException) as exc:
        raise TransientError(secrets.redact(f"connection {name!r}: {type(exc).__name__}: {exc}")) from None


registry.register(registry.Kind("smtp", SmtpConnectionSpec, None, roles=frozenset({MAIL}), test=check))

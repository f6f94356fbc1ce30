"""What every broker connection states: where the broker is, and how to sign in and speak TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from runner.definitions import secrets
from runner.definitions.models import ConnectionSpec

CONNECT_TIMEOUT = 10.0  # seconds to reach a broker and sign in
CONFIRM_TIMEOUT = 60.0  # seconds a broker has to confirm what was sent before the batch fails


class BrokerConnection(ConnectionSpec):
    """A broker's address and credentials; each broker's model adds its `type` and port."""

    host: str = Field(min_length=1, description="The broker's host name or address.")
    username: str | None = Field(None, min_length=1, description="Sign in as this user (with `password`).")
    password: str | None = Field(
        None, description="A secret reference, never the password itself: ${env:NAME} or ${file:path}."
    )
    tls: bool = Field(False, description="Speak TLS to the broker.")
    ca_file: str | None = Field(
        None,
        min_length=1,
        description=(
            "A PEM file of the certificates to trust (relative to the definitions folder), for a "
            "broker whose certificate is not signed by a public authority; default the system's."
        ),
    )

    @field_validator("password")
    @classmethod
    def _reference(cls, password: str | None) -> str | None:
        return secrets.check_password(password, "BROKER_PASSWORD", "broker")

    @model_validator(mode="after")
    def _consistent(self) -> Any:
        if self.password is not None and self.username is None:
            raise ValueError("a password goes with a 'username'")
        if self.password is not None and not self.tls and not secrets.loopback(self.host):
            raise ValueError(
                f"signing in to {self.host} without TLS would send the password in the clear: set "
                "'tls'; only a broker on this machine (localhost) may take it plain"
            )
        if self.ca_file is not None and not self.tls:
            raise ValueError("ca_file is for a TLS connection: set 'tls' too")
        return self

    def secret(self, base_dir: Path) -> str | None:
        """The password, resolved (and remembered for redaction)."""
        return secrets.resolve(self.password, base_dir) if self.password else None

    def ssl_context(self, base_dir: Path) -> Any:
        """The TLS context to connect with, or None without TLS."""
        if not self.tls:
            return None
        import ssl

        cafile = str(base_dir / self.ca_file) if self.ca_file else None
        return ssl.create_default_context(cafile=cafile)

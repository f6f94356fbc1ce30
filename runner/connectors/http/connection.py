"""An `http` connection: where the API is, how to sign in, TLS and a request rate limit.

Every secret (a token, a password, an API key, a client secret) is a reference (`${env:NAME}`,
`${file:path}`), resolved when the connection is opened and remembered for redaction; none may
be written into `base_url`, which is shown in errors and listings."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.definitions import secrets
from runner.definitions.models import ConnectionSpec, Duration, StrictModel, seconds

LONGEST_WAIT = 3600.0  # seconds: `timeout` and `max_retry_wait` at most


def _secret(value: str, env: str) -> str:
    checked = secrets.check_password(value, env, "api")
    assert checked is not None
    return checked


class BearerAuth(StrictModel):
    """`Authorization: Bearer <token>`."""

    type: Literal["bearer"] = Field(description="A bearer token.")
    token: str = Field(description="A secret reference: ${env:NAME} or ${file:path}.")

    @field_validator("token")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _secret(value, "API_TOKEN")


class BasicAuth(StrictModel):
    """HTTP basic authentication."""

    type: Literal["basic"] = Field(description="HTTP basic authentication.")
    username: str = Field(min_length=1, description="The user name.")
    password: str = Field(description="A secret reference: ${env:NAME} or ${file:path}.")

    @field_validator("password")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _secret(value, "API_PASSWORD")


class ApiKeyAuth(StrictModel):
    """An API key sent in a header or a query parameter (redacted wherever the URL is shown)."""

    type: Literal["api_key"] = Field(description="An API key.")
    name: str = Field(min_length=1, description="The header's or parameter's name: `X-API-Key`, `api_key`.")
    location: Literal["header", "query"] = Field(
        "header", alias="in", description="Where the key goes: a `header` or a `query` parameter."
    )
    value: str = Field(description="A secret reference: ${env:NAME} or ${file:path}.")

    model_config = {**StrictModel.model_config, "populate_by_name": True}

    @field_validator("value")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _secret(value, "API_KEY")


class OAuth2Auth(StrictModel):
    """OAuth2 client credentials: a token asked of `token_url` before the first request, and
    again when it expires or the API answers 401."""

    type: Literal["oauth2"] = Field(description="OAuth2 client credentials.")
    token_url: str = Field(
        min_length=1, description="The token endpoint (absolute, https unless on this machine)."
    )
    client_id: str = Field(min_length=1, description="The client id.")
    client_secret: str = Field(description="A secret reference: ${env:NAME} or ${file:path}.")
    scope: str | None = Field(None, min_length=1, description="The scopes asked for, space-separated.")

    @field_validator("client_secret")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _secret(value, "CLIENT_SECRET")

    @field_validator("token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        check_url(value, "token_url")
        return value


Auth = Annotated[BearerAuth | BasicAuth | ApiKeyAuth | OAuth2Auth, Field(discriminator="type")]


def check_url(url: str, what: str) -> urllib.parse.SplitResult:
    """An absolute http(s) URL with no credentials, secret references or query in it."""
    if "${" in url:
        raise ValueError(f"{what} holds no secret: put tokens and keys in 'auth'")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{what} must be an absolute http:// or https:// URL, e.g. https://api.example.com/v1"
        )
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} holds no user or password: use 'auth'")
    if parts.query or parts.fragment:
        raise ValueError(f"{what} has no query or fragment: a task's read.params states parameters")
    return parts


class HttpConnection(ConnectionSpec):
    """A REST API: its base URL, how runner signs in, TLS, and how fast it may be asked."""

    type: Literal["http"] = Field(description="An HTTP (REST) API.")
    base_url: str = Field(
        min_length=1,
        description="The API's root, e.g. `https://api.example.com/v1`; a task's paths are relative to it.",
    )
    auth: Auth | None = Field(
        None,
        description="How runner signs in: `bearer` (token), `basic` (username, password), `api_key` "
        "(name, in: header|query, value) or `oauth2` (client credentials: token_url, client_id, "
        "client_secret, scope). Every secret is a reference.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers sent with every request (no secrets: those go in `auth`).",
    )
    verify: bool = Field(True, description="Check the server's TLS certificate (false only for tests).")
    ca_file: str | None = Field(
        None,
        min_length=1,
        description="A PEM file of the certificates to trust (relative to the definitions folder); "
        "default the system's.",
    )
    rate_limit: float | None = Field(
        None,
        gt=0,
        description="At most this many requests a second, at least 1/3600 (unset: as fast as the API "
        "answers).",
    )
    timeout: Duration = Field(
        "30s", description="How long one request may take, its answer read whole (at most 1h)."
    )
    retries: int = Field(
        5,
        ge=0,
        le=20,
        description="How often a request answered 429 or 5xx (or not answered) is tried again, with "
        "exponential backoff, honouring Retry-After.",
    )
    max_retry_wait: Duration = Field(
        "60s",
        description="The longest wait before a retry, at most 1h (a longer Retry-After fails the request).",
    )

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        check_url(value, "base_url")
        return value.rstrip("/")

    @field_validator("timeout", "max_retry_wait")
    @classmethod
    def _bounded(cls, value: float | str, info: Any) -> float | str:
        # a wait no cancel reaches (runner sleeps, or httpx reads): a definition may not make
        # it days long, holding the worker and its job's lock
        if seconds(value) > LONGEST_WAIT:
            raise ValueError(f"{info.field_name} is at most 1h (a cancel cannot stop the wait)")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _not_too_slow(cls, value: float | None) -> float | None:
        if value is not None and 1.0 / value > LONGEST_WAIT:
            raise ValueError(
                "rate_limit is at least 1/3600 (a request an hour: a cancel cannot stop the wait)"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if "${" in value:
                raise ValueError(f"headers.{name}: no secrets here: a token or key goes in 'auth'")
            if secrets.CREDENTIAL_HEADER.search(name):  # X-Api-Key: abc… would be kept in git and the state
                raise ValueError(
                    f"headers.{name}: credentials go in 'auth', as a secret reference: bearer, basic, "
                    f"or {{type: api_key, name: {name}, in: header, value: ${{env:API_KEY}}}}"
                )
        return headers

    @model_validator(mode="after")
    def _clear_text(self) -> HttpConnection:
        parts = urllib.parse.urlsplit(self.base_url)
        if self.auth is not None and parts.scheme == "http" and not secrets.loopback(parts.hostname or ""):
            raise ValueError(
                f"signing in to {parts.hostname} over http:// would send the secret in the clear: use "
                "https://; only an API on this machine (localhost) may take it plain"
            )
        if isinstance(self.auth, OAuth2Auth):
            token = urllib.parse.urlsplit(self.auth.token_url)
            if token.scheme == "http" and not secrets.loopback(token.hostname or ""):
                raise ValueError("auth.token_url must be https:// (the client secret is sent to it)")
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file is for checking certificates: it goes with verify: true")
        return self

    def tls_verify(self, base_dir: Path) -> Any:
        """What httpx's `verify` takes: False, True (the system's authorities) or a context
        trusting the stated CA file."""
        if not self.verify:
            return False
        if self.ca_file is None:
            return True
        import ssl

        return ssl.create_default_context(cafile=str(base_dir / self.ca_file))

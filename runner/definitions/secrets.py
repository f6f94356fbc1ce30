"""Secret references in connection settings: `${env:NAME}` and `${file:path}`.

Definitions, the state store and plans keep the reference, never the value. A value is read
only when a connection is opened, and every value read is remembered so that `redact` can
blank it out of any message that might carry it (a driver error that echoes a DSN, say).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url

REFERENCE = re.compile(r"\$\{(?P<source>[A-Za-z_]+):(?P<name>[^}]*)\}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLACEHOLDER = REFERENCE_PLACEHOLDER = "RUNNERSECRETREF"  # a reference's stand-in in a parsed URL
_REDACTED = "***"
_known_values: set[str] = set()


class SecretError(ValueError):
    """A reference that is malformed or cannot be resolved; the message never holds a value."""


def check_references(text: str) -> list[str]:
    """Messages for each malformed reference in `text` (empty when all are well-formed)."""
    errors = []
    for match in REFERENCE.finditer(text):
        source, name = match["source"], match["name"]
        if source not in ("env", "file"):
            errors.append(
                f"unknown secret source {source!r} in {match[0]!r}; use ${{env:NAME}} or ${{file:path}}"
            )
        elif source == "env" and not ENV_NAME.match(name):
            errors.append(f"invalid environment variable name {name!r}")
        elif source == "file" and not name:
            errors.append("empty path in ${file:}")
    rest = REFERENCE.sub("", text)
    if "${" in rest:
        errors.append("unterminated or malformed '${...}' reference")
    return errors


def parse_masked(url: str) -> URL:
    """The URL with every reference replaced by a placeholder. The error never quotes the
    URL, which may hold a literal password."""
    try:
        return make_url(REFERENCE.sub(_PLACEHOLDER, url))
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError (a bad port)
        raise ValueError(
            "the URL cannot be parsed; expected scheme://user:password@host:port/database "
            "(a secret reference cannot stand for the port)"
        ) from None


def literal_password(url: str) -> str | None:
    """Where a connection URL holds a password written out instead of referenced, say where
    (`password` or a query parameter's name); None when it has none or only references.

    Raises:
        ValueError: the URL cannot be parsed.
    """
    parsed = parse_masked(url)
    if parsed.password is not None and str(parsed.password).replace(_PLACEHOLDER, ""):
        return "password"
    for key, value in parsed.query.items():
        if "password" in key.lower() or key.lower() in ("passwd", "pwd"):  # also sslpassword
            values = value if isinstance(value, tuple) else (value,)
            if any(v.replace(_PLACEHOLDER, "") for v in values):
                return f"query parameter {key!r}"
    return None


def resolve_url(url: str, base_dir: Path) -> URL:
    """Parse a connection URL and fill in its references component by component, so a
    password holding `@` or `/` needs no percent-encoding in the secret store."""
    refs: list[str] = []

    def mark(match: re.Match[str]) -> str:
        refs.append(match[0])
        return f"{_PLACEHOLDER}{len(refs) - 1}X"

    parsed = make_url(REFERENCE.sub(mark, url))

    def fill(value: str | None) -> str | None:
        if value is None or _PLACEHOLDER not in value:
            return value
        return re.sub(_PLACEHOLDER + r"(\d+)X", lambda m: resolve(refs[int(m[1])], base_dir), value)

    query = {
        k: (tuple(fill(x) for x in v) if isinstance(v, tuple) else fill(v)) for k, v in parsed.query.items()
    }
    return parsed.set(
        username=fill(parsed.username),
        password=fill(parsed.password),
        host=fill(parsed.host),
        database=fill(parsed.database),
        query=query,
    )


def resolve(text: str, base_dir: Path) -> str:
    """Replace every reference in `text` with its value; `${file:}` paths are relative to
    `base_dir`. Values are remembered for `redact`."""

    def value_of(match: re.Match[str]) -> str:
        source, name = match["source"], match["name"]
        if source == "env":
            if name not in os.environ:
                raise SecretError(f"environment variable {name} is not set (referenced as ${{env:{name}}})")
            value = os.environ[name]
        elif source == "file":
            path = Path(name).expanduser()
            path = path if path.is_absolute() else base_dir / path
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"cannot read secret file {name}: {exc.strerror}") from None
        else:
            raise SecretError(f"unknown secret source {source!r}")
        if value:
            _known_values.add(value)
        return value

    return REFERENCE.sub(value_of, text)


def redact(text: str) -> str:
    """`text` with every secret value resolved so far replaced by `***`."""
    for value in sorted(_known_values, key=len, reverse=True):
        text = text.replace(value, _REDACTED)
    return text

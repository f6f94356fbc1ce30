"""Secret references in connection settings: `${env:NAME}` and `${file:path}`.

Definitions, the state store and plans keep the reference, never the value. A value is read
only when a connection is opened, and every value read is remembered so that `redact` can
blank it out of any message that might carry it (a driver error that echoes a DSN, say).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote

from runner.definitions.models import HINT

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

REFERENCE = re.compile(r"\$\{(?P<source>[A-Za-z_]+):(?P<name>[^}]*)\}")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# a header whose name says it carries a credential: its value is a secret, never written out
CREDENTIAL_HEADER = re.compile(
    r"authorization|token|secret|password|api[-_]?key|signature|cookie", re.IGNORECASE
)
# a query parameter that carries one, matched as a whole word of its name: not any `token`
# (`page_token` is a cursor), and not `author` or `authority`
CREDENTIAL_PARAM = re.compile(
    r"(?:^|[^a-z])(?:api[-_]?key|client[-_]?secret|secret|password|passwd|"
    r"(?:access|auth|oauth|id|refresh)[-_]?token|auth|sig|signature)(?:$|[^a-z])",
    re.IGNORECASE,
)
_PLACEHOLDER = REFERENCE_PLACEHOLDER = "RUNNERSECRETREF"  # a reference's stand-in in a parsed URL
_REDACTED = "***"
SECRET_DIRS_ENV = "RUNNER_SECRET_DIRS"  # folders beyond the definitions folder, os.pathsep-separated
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
    if bare := re.search(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", rest):  # a shell's ${NAME}
        errors.append(f"{bare[0]!r} names no secret source; write ${{env:{bare[1]}}} (or ${{file:path}})")
    elif "${" in rest:
        errors.append("unterminated or malformed '${...}' reference")
    return errors


ONE_REFERENCE = re.compile(r"^\$\{[A-Za-z_]+:[^}]*\}$")


def check_password(password: str | None, env: str, file: str) -> str | None:
    """A connection's password field: one secret reference, never the password written out
    (the message suggests `${env:<env>}` or `${file:secrets/<file>}`)."""
    if password is None:
        return None
    problems = check_references(password)
    if problems:
        raise ValueError("; ".join(problems))
    if not ONE_REFERENCE.match(password):
        raise ValueError(
            f"the password is written out{HINT}reference the secret instead: ${{env:{env}}} "
            f"or ${{file:secrets/{file}}}"
        )
    return password


def loopback(host: str) -> bool:
    """Whether `host` is this machine (a password sent in the clear never leaves it)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secret_roots(base_dir: Path) -> list[Path]:
    """The folders a `${file:}` reference may read from: the definitions folder and those the
    operator lists in RUNNER_SECRET_DIRS. It is an operator's setting, never a YAML field, so
    whoever merges a connection file cannot widen it."""
    extra = [Path(p) for p in os.environ.get(SECRET_DIRS_ENV, "").split(os.pathsep) if p.strip()]
    return [p.expanduser().resolve() for p in (base_dir, *extra)]


def secret_file(name: str, base_dir: Path) -> Path:
    """The file a `${file:name}` reference reads, symlinks resolved, when it lies within
    `secret_roots`; relative paths start at `base_dir`.

    Raises:
        SecretError: the file lies outside every allowed folder (after `..`, `~` and symlinks).
    """
    path = Path(name).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    roots = secret_roots(base_dir)
    if not any(path.is_relative_to(root) for root in roots):
        raise SecretError(
            f"secret file {name!r} lies outside the folders secrets may be read from "
            f"({', '.join(str(r) for r in roots)}); keep it below the definitions folder or have "
            f"the operator add its folder to {SECRET_DIRS_ENV}"
        )
    return path


def file_problems(text: str, base_dir: Path) -> list[str]:
    """Messages for each `${file:}` reference in `text` that points outside `secret_roots`."""
    problems = []
    for match in REFERENCE.finditer(text):
        if match["source"] == "file" and match["name"]:
            try:
                secret_file(match["name"], base_dir)
            except SecretError as exc:
                problems.append(str(exc))
    return problems


def strings_in(data: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each text among a document's values (its mappings and lists walked), with where it is."""
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from strings_in(value, (*path, str(key)))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from strings_in(value, (*path, index))


def references_in(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple[str | int, ...], str]]:
    """Each secret reference in a document's values, with where it is: what resolving the
    document would read (a mask's salt, a webhook's header)."""
    return [(where, m[0]) for where, text in strings_in(data, path) for m in REFERENCE.finditer(text)]


_CANNOT_PARSE = (
    "the URL cannot be parsed; expected scheme://user:password@host:port/database "
    "(a secret reference cannot stand for the port)"
)


def parse_masked(url: str) -> URL:
    """The URL with every reference replaced by a placeholder. The error never quotes the
    URL, which may hold a literal password."""
    from sqlalchemy.engine import make_url  # here: validation parses with `_url_parts`

    try:
        return make_url(REFERENCE.sub(_PLACEHOLDER, url))
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError or ValueError (a bad port)
        raise ValueError(_CANNOT_PARSE) from None


# SQLAlchemy's own pattern (`sqlalchemy.engine.url._parse_url`): a URL validates exactly when
# the engine can open it (tests/definitions/test_secret_urls.py holds them to agree)
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)


def _url_parts(url: str) -> tuple[str | None, list[tuple[str, str]]]:
    """A URL's password and query parameters as SQLAlchemy's `make_url` parses them, without
    importing SQLAlchemy (a quarter of a second, on every `runner validate`).

    Raises:
        ValueError: the URL cannot be parsed (the message never quotes it).
    """
    m = _URL.match(url)
    if m is None:
        raise ValueError(_CANNOT_PARSE)
    if m["port"] is not None:  # as SQLAlchemy: an empty port is not an int either
        try:
            int(m["port"])
        except ValueError:
            raise ValueError(_CANNOT_PARSE) from None
    password = None if m["password"] is None else unquote(m["password"])
    return password, parse_qsl(m["query"]) if m["query"] is not None else []


def literal_password(url: str) -> str | None:
    """Where a connection URL holds a password written out instead of referenced, say where
    (`password` or a query parameter's name); None when it has none or only references.

    Raises:
        ValueError: the URL cannot be parsed.
    """
    password, query = _url_parts(REFERENCE.sub(_PLACEHOLDER, url))
    if password is not None and password.replace(_PLACEHOLDER, ""):
        return "password"
    for key, value in query:
        if ("password" in key.lower() or key.lower() in ("passwd", "pwd")) and value.replace(
            _PLACEHOLDER, ""
        ):
            return f"query parameter {key!r}"  # also sslpassword
    return None


def resolve_url(url: str, base_dir: Path) -> URL:
    """Parse a connection URL and fill in its references component by component, so a
    password holding `@` or `/` needs no percent-encoding in the secret store."""
    from sqlalchemy.engine import make_url  # here: opening a connection needs SQLAlchemy anyway

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
    `base_dir` and confined to `secret_roots`. Values are remembered for `redact`."""

    def value_of(match: re.Match[str]) -> str:
        source, name = match["source"], match["name"]
        if source == "env":
            if name not in os.environ:
                raise SecretError(f"environment variable {name} is not set (referenced as ${{env:{name}}})")
            value = os.environ[name]
        elif source == "file":
            path = secret_file(name, base_dir)
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"cannot read secret file {name}: {exc.strerror}") from None
        else:
            raise SecretError(f"unknown secret source {source!r}")
        remember(value)
        return value

    return REFERENCE.sub(value_of, text)


_ECHOED_PREFIXES = (63, 64)  # PostgreSQL cuts names to 63 bytes; MariaDB to 64 characters
_MIN_FORM = 4  # shorter forms of a value would blank out ordinary words


def echoed_forms(value: str) -> set[str]:
    """`value` and the forms a server or runner is known to echo it in: cut to an identifier's
    length, whitespace collapsed to one line, escaped as JSON or a Python repr, and URL-encoded
    (a form or query a server quotes back: an OAuth2 client secret, a DSN's password)."""
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value)}
    data = value.encode()
    for limit in _ECHOED_PREFIXES:
        if len(data) > limit:
            forms.add(data[:limit].decode(errors="ignore"))  # bytes cut inside a character drop it
        if len(value) > limit:
            forms.add(value[:limit])
    for form in list(forms):
        forms.update({" ".join(form.split()), json.dumps(form)[1:-1], repr(form)[1:-1]})
    return {f for f in forms if f == value or len(f) >= _MIN_FORM}


def remember(value: str) -> None:
    """Make `redact` blank out `value` and its echoed forms from now on."""
    if value:
        _known_values.update(echoed_forms(value))


def redact(text: str) -> str:
    """`text` with every secret value resolved so far, in any of its echoed forms, replaced by
    `***`. Call it before normalising a message (collapsing whitespace, say)."""
    for value in sorted(_known_values, key=len, reverse=True):
        text = text.replace(value, _REDACTED)
    return text

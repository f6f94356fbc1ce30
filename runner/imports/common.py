"""What both importers share: the report of what could not be mapped (field by field), names
runner accepts, connections as named references whose secrets become `${env:…}` placeholders,
Quartz crons as runner's, and the YAML files they write (commented, block style, one document
per file).

An importer never invents: a system runner has no kind for (SQL Server, Oracle, a queue, a
drive) is reported as such, and a job that needs it is not written. A password found in the
input is never written anywhere (files, report): it is dropped and the connection references
`${env:NAME_PASSWORD}` instead.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import yaml

from runner.definitions.models import API_VERSION
from runner.errors import RunnerError

# runner's connection kinds an import may write (what a connection string or URL can name)
SQL_SCHEMES = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mariadb": "mariadb",
    "mysql": "mariadb",
}


class ImportFailed(RunnerError):
    """An input that cannot be read at all (not JSON, not a job of the system named)."""


@dataclass
class Report:
    """What an import did not map, one line per field: `job X: Field.Path: what became of it`."""

    lines: list[str] = field(default_factory=list)

    def add(self, where: str, path: str, message: str) -> None:
        """`where` ending in `.` is the start of the field's path (`job X: JobWriter.`)."""
        if where.endswith("."):
            head = where + path if path else where[:-1]
        else:
            head = f"{where}: {path}" if path else where
        self.lines.append(f"{head}: {message}")


def unique(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, … when an earlier job of the import took it."""
    found, n = name, 2
    while found in taken:
        found, n = f"{name[:60]}-{n}", n + 1
    return found


@dataclass
class Imported:
    """The result of importing some files: the documents to write (path relative to the
    output folder -> (header comment lines, document)), and the report."""

    files: dict[str, tuple[list[str], dict[str, Any]]] = field(default_factory=dict)
    report: Report = field(default_factory=Report)
    written: list[Path] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)


def read_json(path: Path) -> Any:
    """The file's JSON; a located error when it is not JSON (`file:line:col`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ImportFailed(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFailed(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None


def name_of(text: str, fallback: str = "imported") -> str:
    """A name runner accepts (lower case, `a-z0-9_.-`, at most 63): `TEST-JOB-ALLDATABASES` ->
    `test-job-alldatabases`, `__FILMS` -> `films`."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", text.strip().lower())
    name = re.sub(r"-{2,}", "-", name).strip("-_.")[:63].strip("-_.")
    return name or fallback


def env_name(name: str, suffix: str) -> str:
    return re.sub(r"[^A-Z0-9_]", "_", f"{name}_{suffix}".upper())


def unquote_identifier(text: str) -> str:
    """`[regression].[SPCompanies2]` / `"a"."b"` / `` `a`.`b` `` -> `regression.SPCompanies2`."""
    parts = re.findall(r'\[([^\]]+)\]|"([^"]+)"|`([^`]+)`|([^.\s]+)', text.strip())
    return ".".join(next(p for p in groups if p) for groups in parts)


@dataclass
class Connection:
    """A connection an import refers to: its runner name, and the spec to write (None: a
    reference to a connection the folder defines already, or one that cannot be written)."""

    name: str
    spec: dict[str, Any] | None = None
    source: str = ""  # what in the input it came from, for the file's header


def url_connection(name: str, url: str, where: str, report: Report) -> Connection:
    """A connection from a URL given on the command line (`--connection KEY=URL`): its password,
    if any, is replaced by `${env:NAME_PASSWORD}` (reported, never written)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    kind = SQL_SCHEMES.get(scheme)
    if kind is None:  # the URL itself is never repeated: it may hold a password
        raise ImportFailed(
            f"--connection {name}: the URL's scheme {scheme!r} is not a kind runner has "
            "(sqlite, postgresql, mariadb)"
        )
    netloc = parts.netloc
    secret = f"${{env:{env_name(name, 'PASSWORD')}}}"
    if parts.password is not None and not parts.password.startswith("${"):
        user = quote(unquote(parts.username or ""), safe="")
        netloc = f"{user}:{secret}@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        report.add(where, "password", f"dropped; the URL references {secret}")
    params = parse_qsl(parts.query, keep_blank_values=True)
    for i, (key, value) in enumerate(params):
        if any(word in key.lower() for word in ("password", "secret")) and not value.startswith("${"):
            ref = f"${{env:{env_name(name, key)}}}"
            params[i] = (key, ref)
            report.add(where, key, f"dropped; the URL references {ref}")
    query = "&".join(f"{k}={v}" for k, v in params)
    if (netloc, query) != (parts.netloc, parts.query):  # urlunsplit would drop sqlite:///'s empty host
        url = f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
    return Connection(name, {"type": kind, "url": url}, f"the option --connection {name}=URL")


def pairs(text: str) -> dict[str, str]:
    """`Host=h;Port=5432;Username=u;Password=p` -> lower-cased keys and their values."""
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def is_connection_string(text: str) -> bool:
    return "=" in text and ";" in text


PASSWORD_KEYS = ("password", "pwd", "accesssecret", "secret")


def string_connection(
    text: str, system: str | None, name: str, where: str, report: Report
) -> Connection | None:
    """A connection from a literal ADO.NET-style connection string (DataZen's `ConnectionString`
    when it is not a key), mapped to a runner kind where the string names one runner has;
    else reported (None). The password is dropped, never written."""
    found = pairs(text)
    if any(k in found for k in PASSWORD_KEYS):
        report.add(
            where,
            "ConnectionString",
            f"a password in the input was dropped (not written); set {env_name(name, 'PASSWORD')}",
        )
    hint = (system or "").lower().replace(" ", "")
    host = found.get("host") or found.get("server") or found.get("data source") or ""
    database = found.get("database") or found.get("initial catalog") or ""
    user = found.get("username") or found.get("user id") or found.get("uid") or found.get("user") or ""
    port = found.get("port", "")
    if "," in host:  # SQL Server's `host,port`
        host, port = host.split(",", 1)
    kind = None
    if hint in ("postgresql", "postgres") or ("host" in found and "username" in found):
        kind = "postgresql"
    elif hint in ("mysql", "mariadb") or (port == "3306"):
        kind = "mariadb"
    elif hint == "sqlite" or (
        set(found) <= {"data source", "version", "mode"} and host.endswith((".db", ".sqlite", ".sqlite3"))
    ):
        kind = "sqlite"
    if kind is None:
        what = (
            system
            if system and system.lower() not in ("generic", "")
            else "SQL Server (an ADO.NET connection string)"
        )
        if "(description=" in text.lower():
            what = "Oracle"
        report.add(where, "ConnectionString", f"no such kind in runner ({what}): the job is not written")
        return None
    if kind == "sqlite":
        return Connection(name, {"type": "sqlite", "url": f"sqlite:///{host}"}, "a connection string")
    scheme = "postgresql" if kind == "postgresql" else "mariadb+pymysql"
    secret = f":${{env:{env_name(name, 'PASSWORD')}}}" if any(k in found for k in PASSWORD_KEYS) else ""
    netloc = f"{quote(user, safe='')}{secret}@" if user else ""
    url = f"{scheme}://{netloc}{host}" + (f":{port}" if port else "") + f"/{database}"
    return Connection(name, {"type": kind, "url": url}, "a connection string")


# --- cron --------------------------------------------------------------------------------

_QUARTZ_DAYS = {str(i): str(i - 1) for i in range(1, 8)}  # Quartz: 1 = Sunday; cron: 0 = Sunday


def quartz_cron(text: str) -> str | None:
    """A Quartz cron (`sec min hour day month weekday [year]`, `?` for "no value", as DataZen
    and CData write them) as runner's (`min hour day month weekday`, or with seconds last when
    they are not 0); None when it cannot be said so (a year, `L`, `W`, `#`)."""
    fields = text.split()
    if len(fields) == 5:  # already a plain cron
        return text.strip()
    if len(fields) == 7 and fields[6] in ("*", "?"):
        fields = fields[:6]
    if len(fields) != 6 or any(c in text for c in ("L", "W", "#")):
        return None
    sec, minute, hour, day, month, weekday = ("*" if f == "?" else f for f in fields)
    weekday = re.sub(r"\d", lambda m: _QUARTZ_DAYS.get(m.group(0), m.group(0)), weekday)
    out = [minute, hour, day, month, weekday]
    if sec != "0":
        out.append(sec)
    return " ".join(out)


# --- writing -----------------------------------------------------------------------------


def document(kind: str, name: str, spec: dict[str, Any], description: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if description:
        metadata["description"] = description
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


class _Dumper(yaml.SafeDumper):
    """Block style with lists indented under their key, as people write YAML by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    """A short list of plain values on one line (`keys: [id]`), others as blocks."""
    flow = (
        all(isinstance(v, str | int | float) and "\n" not in str(v) for v in value) and len(str(value)) < 60
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(list, _list)


def render(header: list[str], doc: dict[str, Any]) -> str:
    """One definition as YAML: the header as comments, then the document in block style with
    keys in the order given (multi-line SQL as literal blocks)."""
    body = yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True
    )
    lines = [f"# {line}".rstrip() for line in header]
    return "\n".join(lines) + "\n" + body


def header(system: str, source: str, report_lines: list[str]) -> list[str]:
    today = dt.date.today().isoformat()
    out = [
        f"Imported by `runner import {system}` from {source} on {today}.",
        "Review it before `runner apply`.",
    ]
    if report_lines:
        out.append("Not mapped (also printed by the import):")
        out += [f"  {line}" for line in report_lines]
    return out


def write(imported: Imported, out: Path, force: bool = False) -> None:
    """Write the documents under `out` (`jobs.d/…`, `connections.d/…`); an existing file is
    kept (reported) unless `force`."""
    for relative, (head, doc) in imported.files.items():
        path = out / relative
        if path.exists() and not force:
            imported.report.add(relative, "", "exists: not overwritten (use --force)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(head, doc), encoding="utf-8")
        imported.written.append(path)

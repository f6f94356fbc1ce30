"""MariaDB's log of a table's changes: the row-based binary log (binlog), read from a GTID
position with the `mysql-replication` package, one reader per task.

Why these pieces:
- `mysql-replication` (`pymysqlreplication`) speaks the replication protocol on top of PyMySQL,
  the driver runner already uses: pure Python, nothing to compile, and it decodes MariaDB's
  GTID events and the row events of every column type (with `binlog_row_metadata=FULL` the
  column names come with each table map, so a change is read in the shape it was logged).
- Positions are MariaDB GTID states (`0-1-42`, one `domain-server-sequence` a domain): a
  reader connects with that state and the server sends the transactions after it, whichever
  binlog file they are in now (rotations and restarts change nothing). A position is stored as
  `<gtid state>@<binlog file>:<offset>`: the state to resume from, the file and offset to
  measure the lag in bytes.
- Nothing is kept on the server for a task (no slot): the binlog is kept as the server's
  `binlog_expire_logs_seconds` says, `confirm` has nothing to tell, and there is nothing to
  drop. A task whose position was purged from the binlog stops with an error that says to
  take a new snapshot (`runner run JOB --resync`).
- The first snapshot is read in a transaction begun `WITH CONSISTENT SNAPSHOT` on a connection
  kept for the snapshot's read (`MariadbConnector.read_connection`); MariaDB says where the
  binlog stood for exactly that snapshot (`binlog_snapshot_file`, `binlog_snapshot_position`,
  turned into a GTID state by `BINLOG_GTID_POS`), so the changes follow it with no gap and no
  overlap, without locking a table.
- Schema changes: with `binlog_row_metadata=FULL` each table map names the table's columns as
  they were when the change was logged, with their binlog types. Where they differ from the
  task's, the reader sends a `Reshape` first (as PostgreSQL's does from a Relation message), so
  the target follows by the task's `schema_changes`. A column's type is the table's declared one
  (`SHOW COLUMNS`, which says `tinyint(1)` where the binlog says only TINY) when it agrees with
  the binlog's (its type, length, precision), else told from the binlog's alone (the table has
  changed again since); a type the binlog cannot tell stops the task naming table and column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import struct
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runner.connectors.changelog import Commit, Lag, LogNames, Reshape, RowChange
from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError, TransientError
from runner.streams.types import Column, ColumnType, split_type

if TYPE_CHECKING:
    from runner.connectors.sql.mariadb import MariadbConnector

PURGED = 1236  # the server cannot send from the requested position (its binlog is gone)
_NAME = r"(?:`(?:[^`]|``)+`|[A-Za-z0-9_$]+)"
_TRUNCATE = re.compile(
    rf"^\s*TRUNCATE\s+(?:TABLE\s+)?({_NAME})(?:\s*\.\s*({_NAME}))?\s*;?\s*$", re.IGNORECASE
)
_FIXED_STRING = 254  # the binlog type of `char(n)`, `binary(n)` and `uuid` (FIELD_TYPE.STRING)
RESYNC = "run the job with --resync (`runner run JOB --resync`) to load the table again"


def _unquote(name: str) -> str:
    return name[1:-1].replace("``", "`") if name.startswith("`") else name


def parse_position(position: str) -> tuple[str, str | None, int]:
    """`<gtid state>@<file>:<offset>` -> (gtid state, file, offset)."""
    state, _, where = position.partition("@")
    file, _, offset = where.rpartition(":")
    return state, file or None, int(offset or 0)


def gtid_state(text: str) -> dict[int, tuple[int, int]]:
    """A GTID state (`0-1-42,1-2-7`) -> {domain: (server, sequence)}."""
    state = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        domain, server, seq = part.split("-")
        state[int(domain)] = (int(server), int(seq))
    return state


def state_text(state: dict[int, tuple[int, int]]) -> str:
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(state.items()))


def _negative_time(value: Any) -> Any:
    """A negative TIME with a fraction: mysql-replication adds the stored fraction where the
    format keeps its complement (-12:30:00.25 reads -12:30:00.75): put it right."""
    if isinstance(value, dt.timedelta) and value < dt.timedelta(0):
        whole = -value
        fraction = whole.microseconds
        if fraction:
            return -(
                dt.timedelta(days=whole.days, seconds=whole.seconds + 1) - dt.timedelta(microseconds=fraction)
            )
    return value


def _uuid(value: Any) -> Any:
    return uuid.UUID(bytes=value) if isinstance(value, bytes) and len(value) == 16 else value


def _padded(width: int) -> Callable[[Any], Any]:
    """The binlog keeps a fixed-width binary value (`binary(n)`, `uuid`) without its trailing
    zero bytes: put back, as a read of the table gives it."""

    def pad(value: Any) -> Any:
        if isinstance(value, str) and not value:  # mysql-replication's empty binary value
            value = b""
        return value.ljust(width, b"\0") if isinstance(value, bytes) else value

    return pad


def _through(value: Any, steps: tuple[Callable[[Any], Any], ...]) -> Any:
    for step in steps:
        value = step(value)
    return value


def _bytes(value: Any) -> Any:
    """mysql-replication gives an empty binary value as '' (a non-empty one as bytes)."""
    return value.encode() if isinstance(value, str) else value


def _unmapped(declared: str) -> Callable[[Any], Any] | None:
    """A value of a type runner reads as text (`MariadbConnector.unmapped_expr`), from the
    binlog's: an address's bytes as the server writes it, a set's members in their declared
    order (None: the binlog's value is that text already, as a bit(n)'s n 0s and 1s are)."""
    name = declared.split("(")[0].strip().lower()
    if name == "inet4":
        return _inet4
    if name == "inet6":
        return _inet6
    if name == "set":
        order = [m.replace("''", "'") for m in re.findall(r"'((?:[^']|'')*)'", declared)]
        return lambda v: ",".join(m for m in order if m in v) if isinstance(v, set) else v
    return None


def _inet4(value: Any) -> Any:
    return str(ipaddress.IPv4Address(value)) if isinstance(value, bytes) and len(value) == 4 else value


def _inet6(value: Any) -> Any:
    """MariaDB's text of an address: RFC 5952's, but IPv4-compatible (`::1.2.3.4`) and
    IPv4-mapped (`::ffff:1.2.3.4`) addresses end in dotted form."""
    if not isinstance(value, bytes) or len(value) != 16:
        return value
    words = struct.unpack(">8H", value)
    if words[:5] == (0, 0, 0, 0, 0) and (words[5] == 0xFFFF or (words[5] == 0 and words[6] != 0)):
        return f"::{'ffff:' if words[5] else ''}{ipaddress.IPv4Address(value[12:])}"
    return ipaddress.IPv6Address(value).compressed


class MariadbChangeLog:
    """One task's binlog reading of one table (`runner.connectors.changelog.ChangeLog`)."""

    def __init__(
        self,
        connector: MariadbConnector,
        names: LogNames,
        table: str,
        columns: list[Column],
        keys: list[str],
    ):
        self.c = connector
        self.names = names
        self.table = table
        self.columns = columns
        self.keys = keys

    # --- setup -----------------------------------------------------------------------------

    def check_setup(self) -> None:
        ((log_bin, fmt, image),) = self.c._query(
            "checking the settings for change data capture",
            "SELECT @@global.log_bin, @@global.binlog_format, @@global.binlog_row_image",
        )
        problems = []
        if not int(log_bin):
            problems.append(
                "log_bin is OFF; start the server with log_bin (e.g. log_bin = mariadb-bin and a "
                "server_id in its [mariadbd] settings), binlog_format = ROW and binlog_row_image = FULL"
            )
        else:
            if str(fmt).upper() != "ROW":
                problems.append(
                    f"binlog_format is {fmt}; set it to ROW (SET GLOBAL binlog_format = 'ROW', and in "
                    "the server's settings)"
                )
            if str(image).upper() != "FULL":
                problems.append(
                    f"binlog_row_image is {image}; set it to FULL (SET GLOBAL binlog_row_image = 'FULL', "
                    "and in the server's settings)"
                )
        if not problems:
            problems = self._privileges()
        if problems:
            raise TerminalError(
                f"the source connection {self.c.name!r} is not ready for strategy 'cdc': "
                + "; ".join(problems)
            )

    def _privileges(self) -> list[str]:
        """What the user may not do that a run does: read where the binlog stands (BINLOG
        MONITOR) and read the binlog as a replica (REPLICATION SLAVE). Both are tried, not
        looked up in the grants, so privileges through roles count."""
        ((user,),) = self.c._query("reading the user", "SELECT CURRENT_USER()")
        who = "'" + "'@'".join(str(user).rsplit("@", 1)) + "'"
        problems = []
        try:
            self.c._query("reading the binlog's state", "SHOW MASTER STATUS")
        except TerminalError as exc:
            if not _denied(exc):
                raise
            problems.append(
                f"user {who} may not read the binlog's state: GRANT BINLOG MONITOR ON *.* TO {who} "
                "(REPLICATION CLIENT before MariaDB 10.5)"
            )
        ((state,),) = self.c._query("reading the binlog's position", "SELECT @@global.gtid_binlog_pos")
        try:
            self._first_event(str(state), "reading the binlog as a replica")
        except TerminalError as exc:
            if not _denied(exc):
                raise
            problems.append(f"user {who} may not read the binlog: GRANT REPLICATION SLAVE ON *.* TO {who}")
        return problems

    def _where(self) -> tuple[str, str]:
        """The table's (schema, name); the connection's database when the table names none."""
        schema, _, name = self.table.rpartition(".")
        if not schema:
            ((schema,),) = self.c._query("reading the connection's database", "SELECT DATABASE()")
            if schema is None:
                raise TerminalError(
                    f"table {self.table!r} names no database and connection {self.c.name!r} has none; "
                    "write read.table as database.table"
                )
        return _unquote(schema), _unquote(name)

    def _settings(self) -> dict[str, Any]:
        """PyMySQL connection arguments of the connection (its secret resolved, never shown)."""
        url = self.c.engine.url
        settings: dict[str, Any] = dict(url.translate_connect_args(username="user", database="database"))
        settings.pop("database", None)
        if "unix_socket" in url.query:
            settings["unix_socket"] = url.query["unix_socket"]
        settings.setdefault("host", "127.0.0.1")
        settings.setdefault("password", "")
        settings["charset"] = "utf8mb4"
        settings["connect_timeout"] = self.c.engine_options()["connect_args"]["connect_timeout"]
        # the server gives up on a reader that takes no data for net_write_timeout (60 s by
        # default), as while a large batch is merged into the target
        settings["init_command"] = "SET SESSION net_write_timeout = 3600"
        return settings

    def _server_id(self) -> int:
        """The replica id the reader registers with: one per task (the server ends an older
        reader registered with the same id), high enough to miss the ids servers are given."""
        return 0x40000000 + int(hashlib.sha256(self.names.slot.encode()).hexdigest()[:7], 16)

    # --- the protocol ----------------------------------------------------------------------

    def exists(self) -> bool:
        """Nothing is kept on the server for a task: a purged position is found by `changes`."""
        return True

    @contextmanager
    def start(self) -> Iterator[str]:
        self.check_setup()
        doing = "taking a consistent snapshot"
        with self.c.errors(doing):
            dbapi = self.c.engine.raw_connection()
        try:
            with self.c.errors(doing):
                cursor = dbapi.cursor()
                cursor.execute("SET SESSION time_zone = '+00:00'")  # TIMESTAMPs as the binlog has them: UTC
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                cursor.execute("SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
                status = {str(k).lower(): v for k, v in cursor.fetchall()}
                file, offset = status["binlog_snapshot_file"], int(status["binlog_snapshot_position"])
                cursor.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, offset))
                (state,) = cursor.fetchone()
                cursor.close()
            if state is None:
                raise TerminalError(
                    f"{doing} (connection {self.c.name!r}): the server gives no GTID position for binlog "
                    f"{file}:{offset}"
                )
            self.c._pinned = dbapi  # the snapshot's read runs in this transaction
            try:
                yield f"{state}@{file}:{offset}"
            finally:
                self.c._pinned = None
        finally:
            try:
                dbapi.rollback()
            finally:
                dbapi.close()

    def end(self) -> str:
        doing = "reading the binlog's end"
        with self.c.connection(doing) as dbapi:
            cursor = dbapi.cursor()
            cursor.execute("SELECT @@global.gtid_binlog_pos")
            (state,) = cursor.fetchone()
            cursor.execute("SHOW MASTER STATUS")
            row = cursor.fetchone()
            dbapi.rollback()
        if row is None:
            raise TerminalError(f"connection {self.c.name!r}: the server writes no binlog (log_bin is OFF)")
        return f"{state}@{row[0]}:{row[1]}"

    def changes(self, after: str, upto: str) -> Iterator[RowChange | Commit | Reshape]:
        from pymysqlreplication.event import HeartbeatLogEvent, MariadbGtidEvent, QueryEvent, XidEvent
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

        doing = f"reading the binlog of {self.table}"
        schema, name = self._where()
        state = gtid_state(parse_position(after)[0])
        limit = gtid_state(parse_position(upto)[0])
        names = [c.name for c in self.columns]
        key_names = list(self.keys)
        convert: list[Callable[[Any], Any] | None] = []  # by each table map's columns
        if state == limit:  # nothing was written since
            return
        end_at = parse_position(upto)[1:]
        stream = self._stream(
            state_text(state),
            self._server_id(),
            [MariadbGtidEvent, XidEvent, QueryEvent, WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent],
            only_tables=[name],
            only_schemas=[schema],
        )
        checked: set[int] = set()
        gtid: tuple[int, int, int] | None = None  # the transaction being read: (domain, server, sequence)
        committed_at: dt.datetime | None = None
        try:
            while True:
                with _purged(self, after), self.c.errors(doing):
                    event = stream.fetchone()
                if event is None:
                    break
                if isinstance(event, HeartbeatLogEvent):  # the server has nothing more now
                    if gtid is None and _reached(stream, end_at):
                        break
                    continue
                if isinstance(event, MariadbGtidEvent):
                    server, seq = limit.get(event.domain_id, (0, -1))
                    if event.gtid_seq_no > seq:  # committed after the run began: the next run's
                        break
                    gtid = (event.domain_id, event.server_id, event.gtid_seq_no)
                    committed_at = dt.datetime.fromtimestamp(event.timestamp, dt.UTC).replace(tzinfo=None)
                    continue
                if isinstance(event, QueryEvent):
                    query = event.query.strip()
                    if query.upper() == "BEGIN":
                        continue
                    if query.upper() != "COMMIT":  # a statement of its own (DDL): its own transaction
                        yield from self._statement(event, query, schema, name)
                elif not isinstance(event, XidEvent):  # a row event of the table
                    if event.table_id not in checked:  # a new table map: the table's shape then
                        shape = self._shape(event.columns)
                        if shape != self.columns:  # the table changed: the task follows it
                            yield Reshape(shape)
                            self.columns = shape
                            names = [c.name for c in shape]
                        checked.add(event.table_id)
                        convert = self._converters(event.columns)
                    yield from self._rows(event, names, key_names, convert)
                    continue
                if gtid is None:
                    continue
                state[gtid[0]] = (gtid[1], gtid[2])
                gtid = None
                yield Commit(f"{state_text(state)}@{stream.log_file}:{stream.log_pos}", committed_at)
                if _reached(stream, end_at):
                    break
        finally:
            stream.close()

    def _statement(self, event: Any, query: str, schema: str, name: str) -> Iterator[RowChange]:
        """A TRUNCATE of the table (logged as a statement, even with binlog_format=ROW)."""
        match = _TRUNCATE.match(query)
        if match is None:
            return
        first, second = match.groups()
        default = event.schema.decode() if isinstance(event.schema, bytes) else str(event.schema or "")
        where = (_unquote(first), _unquote(second)) if second else (default, _unquote(first))
        if where == (schema, name):
            yield RowChange("truncate")

    def _shape(self, logged: list[Any]) -> list[Column]:
        """The columns of a table map (`binlog_row_metadata=FULL`), typed as a read of the
        table would type them."""
        if any(c.name is None for c in logged):
            raise TerminalError(
                f"the binlog of connection {self.c.name!r} does not name the columns of table "
                f"{self.table!r}: set binlog_row_metadata = FULL on the server, then {RESYNC}"
            )
        doing = f"reading the columns of {self.table}"
        with self.c.connection(doing) as dbapi, self.c.errors(doing):
            declared = dict(self.c.declared_columns(dbapi.cursor(), ReadSpec(table=self.table)))
            dbapi.rollback()
        shape = []
        for column in logged:
            text = declared.get(column.name)
            if text is None or not _agrees(str(text), column):
                text = _declared(column)
            if text is None:
                raise TerminalError(
                    f"column {column.name!r} of table {self.table!r} changed in the binlog to a type "
                    f"runner cannot tell from the log (binlog type {column.type}); {RESYNC}"
                )
            ctype = self.c.parse_type(str(text))
            shape.append(
                Column(column.name, ctype) if ctype else Column(column.name, ColumnType("text"), str(text))
            )
        return shape

    def _converters(self, logged: list[Any]) -> list[Callable[[Any], Any] | None]:
        """Per task column: the binlog's value turned into what a read of the table gives
        (`logged`: the table map's columns, which say which are fixed-width binary)."""
        fixed = {
            c.name: c.max_length
            for c in logged
            if c.type == _FIXED_STRING and _charset(c) == "binary" and getattr(c, "max_length", None)
        }
        found: list[Callable[[Any], Any] | None] = []
        for column in self.columns:
            steps: list[Callable[[Any], Any]] = []
            if column.name in fixed:
                steps.append(_padded(fixed[column.name]))
            kind = column.type.kind
            if kind == "duration":
                steps.append(_negative_time)
            elif kind == "uuid":
                steps.append(_uuid)
            elif kind == "binary":
                steps.append(_bytes)
            elif column.unmapped and (text := _unmapped(column.unmapped)) is not None:
                steps.append(text)
            decoder = None if column.unmapped else self.c.decoder(column.type)
            if decoder is not None:
                steps.append(decoder)
            if not steps:
                found.append(None)
            elif len(steps) == 1:
                found.append(steps[0])
            else:
                found.append(lambda v, chain=tuple(steps): None if v is None else _through(v, chain))
        return found

    def _rows(
        self, event: Any, names: list[str], keys: list[str], convert: list[Callable[[Any], Any] | None]
    ) -> Iterator[RowChange]:
        from pymysqlreplication.constants.NONE_SOURCE import EMPTY_SET
        from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent

        def row(values: dict[str, Any], nones: dict[str, str] | None) -> tuple:
            # mysql-replication gives an empty set as None, as it gives NULL, and says which
            if nones and EMPTY_SET in nones.values():
                values = values | {n: set() for n, why in nones.items() if why == EMPTY_SET}
            return tuple(
                values[n] if f is None or values[n] is None else f(values[n])
                for n, f in zip(names, convert, strict=True)
            )

        key_at = [names.index(k) for k in keys]
        for change in event.rows:
            if isinstance(event, DeleteRowsEvent):
                old = row(change["values"], change.get("none_sources"))
                yield RowChange("delete", tuple(old[i] for i in key_at))
            elif isinstance(event, UpdateRowsEvent):
                old = row(change["before_values"], change.get("before_none_sources"))
                new = row(change["after_values"], change.get("after_none_sources"))
                old_key = tuple(old[i] for i in key_at)
                if old_key != tuple(new[i] for i in key_at):
                    yield RowChange("delete", old_key)  # a changed key: the old row goes
                yield RowChange("upsert", new)
            else:
                yield RowChange("upsert", row(change["values"], change.get("none_sources")))

    def confirm(self, position: str) -> None:
        """Nothing to tell: the server keeps its binlog by its own expiry, not for a reader."""

    def lag(self, seconds: bool = False, position: str | None = None) -> Lag:
        """How much binlog was written after `position` (the task's stored one): bytes, and with
        `seconds`, how long ago the first transaction after it committed."""
        if position is None:
            return Lag(0, 0)
        state, file, offset = parse_position(position)
        logs = self.c._query("reading the binlog's files", "SHOW BINARY LOGS")
        sizes = [(str(r[0]), int(r[1])) for r in logs]
        files = [f for f, _ in sizes]
        if file in files:
            at = files.index(file)
            behind = max(sizes[at][1] - offset, 0) + sum(size for _, size in sizes[at + 1 :])
        else:  # purged: every byte the server still has is behind it
            behind = sum(size for _, size in sizes)
        if not seconds:
            return Lag(behind, behind)
        return Lag(behind, behind, self._seconds_behind(state) if behind else 0.0)

    def _stream(self, state: str, server_id: int, events: list[Any], **only: Any) -> Any:
        """A binlog reader from GTID state `state`. Blocking, with a heartbeat a second when the
        server has nothing to send: a non-blocking dump ends with the server closing the
        connection at the binlog's end, which resets it under a reader still reading (the
        data sent and not yet read is lost); the reader stops itself at the end it was given."""
        from pymysqlreplication import BinLogStreamReader
        from pymysqlreplication.event import HeartbeatLogEvent

        return BinLogStreamReader(
            connection_settings=self._settings(),
            server_id=server_id,
            pymysql_wrapper=_connect_once(self.c.name),
            blocking=True,
            slave_heartbeat=1,
            is_mariadb=True,
            auto_position=state,
            only_events=[*events, HeartbeatLogEvent],
            enable_logging=False,
            **only,
        )

    def _first_event(self, state: str, doing: str) -> Any:
        """The first transaction's GTID event after GTID state `state` (None: there is none)."""
        from pymysqlreplication.event import MariadbGtidEvent

        stream = self._stream(state, self._server_id() ^ 1, [MariadbGtidEvent])  # not a run's reader id
        try:
            with self.c.errors(doing):
                event = stream.fetchone()
        finally:
            stream.close()
        return event if isinstance(event, MariadbGtidEvent) else None

    def _seconds_behind(self, state: str) -> float | None:
        try:
            event = self._first_event(state, "reading the oldest change not applied")
        except TerminalError:
            return None
        if event is None:
            return 0.0
        committed = dt.datetime.fromtimestamp(event.timestamp, dt.UTC)
        return max(0.0, round((dt.datetime.now(dt.UTC) - committed).total_seconds(), 1))

    def drop(self) -> list[str]:
        """Nothing was made on the server for the task."""
        return []


# binlog column types (pymysqlreplication's FIELD_TYPE) by the declared type's first word
_BINLOG_TYPES = {
    "tinyint": {1},
    "bool": {1},
    "boolean": {1},
    "smallint": {2},
    "mediumint": {9},
    "int": {3},
    "integer": {3},
    "bigint": {8},
    "float": {4},
    "double": {5},
    "decimal": {246},
    "numeric": {246},
    "date": {10, 14},
    "time": {11, 19},
    "datetime": {12, 18},
    "timestamp": {7, 17},
    "year": {13},
    "varchar": {15, 253},
    "varbinary": {15, 253},
    "char": {254},
    "binary": {254},
    "uuid": {254},
    "inet4": {254},
    "inet6": {254},
    "enum": {247, 254},
    "set": {248, 254},
    "bit": {16},
}
_BLOBS = {"tiny": 1, "": 2, "medium": 3, "long": 4}  # a text or blob type's length bytes
_CHARSET_BYTES = {"utf8mb4": 4, "utf8mb3": 3, "utf8": 3, "ucs2": 2, "utf16": 4, "utf32": 4}


def _agrees(declared: str, column: Any) -> bool:
    """Whether a declared type (`SHOW COLUMNS`) is the one a binlog column was logged with."""
    name, a, b = split_type(declared)
    first = name.split("(")[0].split()[0]  # enum(...) and set(...) keep their values in the name
    if first == "json" or first.endswith(("text", "blob")):
        size = _BLOBS.get(first.removesuffix("text").removesuffix("blob"), 4 if first == "json" else 0)
        return column.type in (252, 245, 249, 250, 251) and getattr(column, "length_size", size) == size
    if column.type not in _BINLOG_TYPES.get(first, set()):
        return False
    if bool(getattr(column, "unsigned", False)) != ("unsigned" in name):
        return False
    if first in ("decimal", "numeric"):
        return (column.precision, column.decimals) == (a or 10, b or 0)
    if first in ("datetime", "timestamp", "time"):
        return getattr(column, "fsp", a or 0) == (a or 0)
    if first in ("varchar", "varbinary", "char", "binary") and a:
        bytes_ = getattr(column, "max_length", None)
        per = _per_char(column) if first in ("varchar", "char") else 1
        if bytes_ is None:
            return True
        return bytes_ == a * per if per else bytes_ % a == 0 and bytes_ // a in (1, 2, 3, 4)
    return True


def _charset(column: Any) -> str:
    """A binlog column's character set, told by its collation's name (`utf8mb4_bin`): the
    `character_set_name` mysql-replication gives is Python's codec (`utf8` for utf8mb4 too)."""
    return str(getattr(column, "collation_name", None) or "").split("_")[0]


def _per_char(column: Any) -> int | None:
    """The most bytes a character of a binlog column's character set takes (None: not known)."""
    charset = _charset(column)
    return 1 if charset in ("latin1", "ascii", "binary") else _CHARSET_BYTES.get(charset)


def _declared(column: Any) -> str | None:
    """A binlog column's type as MariaDB would declare it, told from the log alone (None: it
    cannot be told)."""
    unsigned = " unsigned" if getattr(column, "unsigned", False) else ""
    simple = {1: "tinyint", 2: "smallint", 9: "mediumint", 3: "int", 8: "bigint"}
    if column.type in simple:
        return simple[column.type] + unsigned
    if column.type == 246:
        return f"decimal({column.precision},{column.decimals})"
    if column.type in (4, 5, 10, 14, 13):
        return {4: "float", 5: "double", 10: "date", 14: "date", 13: "year"}[column.type]
    if column.type in (18, 17, 19):
        fsp = getattr(column, "fsp", 0)
        word = {18: "datetime", 17: "timestamp", 19: "time"}[column.type]
        return f"{word}({fsp})" if fsp else word
    charset = _charset(column)
    if column.type in (252, 249, 250, 251):
        size = {1: "tiny", 2: "", 3: "medium", 4: "long"}.get(getattr(column, "length_size", 4), "long")
        return f"{size}{'blob' if charset == 'binary' else 'text'}"
    if column.type in (15, 253, 254) and getattr(column, "max_length", None):
        word = "var" if column.type != 254 else ""
        if charset == "binary":
            return f"{word}binary({column.max_length})" if word else f"binary({column.max_length})"
        per = _per_char(column)
        if per is None:
            return None
        return f"{word}char({column.max_length // per})"
    return None


def _reached(stream: Any, end_at: tuple[str | None, int]) -> bool:
    """Whether the reader is at or past binlog file and offset `end_at`."""
    file, offset = end_at
    return (
        file is not None
        and stream.log_file is not None
        and (stream.log_file, stream.log_pos) >= (file, offset)
    )


def _connect_once(name: str) -> Callable[..., Any]:
    """PyMySQL's connect for a reader that connects its binlog stream once: mysql-replication
    connects again by itself when the stream's connection is lost, and a stream connected again
    was seen to lose its connection again and again, sending the same transactions over. The
    run stops instead (transient: the daemon retries it), and the next one reads from the
    stored position."""
    import pymysql

    streams: list[bool] = []

    def connect(**settings: Any) -> Any:
        if "cursorclass" not in settings:  # the stream's (the control connection has a DictCursor)
            if streams:
                raise TransientError(
                    f"the binlog connection of connection {name!r} was lost while reading; the next "
                    "run reads again from the last position stored"
                )
            streams.append(True)
        return pymysql.connect(**settings)

    return connect


def _denied(exc: Exception) -> bool:
    """An error of a missing privilege (1227: access denied, you need …; 1045: access denied)."""
    text = str(exc)
    return "1227" in text or "1045" in text or "Access denied" in text


@contextmanager
def _purged(log: MariadbChangeLog, position: str) -> Iterator[None]:
    """The server's refusal to send from a position its binlog no longer holds, as an error
    that says how to recover."""
    try:
        yield
    except TerminalError as exc:
        if f"{PURGED}" not in str(exc) and "purged" not in str(exc).lower():
            raise
        raise TerminalError(
            f"the binlog of connection {log.c.name!r} no longer holds the task's position "
            f"{parse_position(position)[0]!r} (purged: PURGE BINARY LOGS, or binlog_expire_logs_seconds "
            f"passed); changes since are lost to the log: {RESYNC}"
        ) from None


class MariadbLogSource:
    """The `LogSource` methods of `MariadbConnector`."""

    log_slot = False  # the binlog is the server's, kept by its own expiry

    _pinned: Any = None  # while a cdc snapshot is read: its connection, in its transaction

    def change_log(
        self, names: LogNames, table: str, columns: list[Column], keys: list[str]
    ) -> MariadbChangeLog:
        return MariadbChangeLog(self, names, table, columns, keys)  # type: ignore[arg-type]

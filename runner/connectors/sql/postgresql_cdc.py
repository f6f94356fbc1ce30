"""PostgreSQL's log of a table's changes: logical decoding with the built-in `pgoutput` plugin,
through a replication slot and a publication of the table, one of each per task.

Why these pieces:
- `pgoutput` ships with every PostgreSQL since 10 (no extension to install, unlike wal2json),
  sends whole rows, the old key of an update that changed it, deletes and truncates, and
  names each column's type, so psycopg's own loaders turn its text into exactly the values a
  read of the table gives.
- The changes are read with the SQL function `pg_logical_slot_peek_binary_changes` (no
  replication protocol to keep alive): peeking leaves the slot where it was, the target
  commits, the position is stored, and only then is the slot moved on
  (`pg_replication_slot_advance`). A run killed anywhere peeks again from the slot and skips
  the transactions the stored position says are applied: "confirmed only after the target
  commits" needs no more than that order.
- The first snapshot is the one the slot exports when it is created on a replication
  connection (`CREATE_REPLICATION_SLOT … (SNAPSHOT 'export')`): the tables read in it are
  exactly as of the slot's first position, so the changes follow them with no gap and no
  overlap. (`pg_create_logical_replication_slot` exports none: a snapshot taken after it may
  already hold changes the slot will send again, or miss some it will not.)
- pgoutput sends a Relation message (the table's columns, their types and modifiers) before
  the first change of each read and again after the table changed: where its columns differ
  from the task's, the reader sends a `Reshape` first, typed as a read of the table would be
  (`format_type` of each type and modifier), and reads on in the new shape.

Names: slot and publication are both `runner_<job>_<task>_<hash>`
(`runner.connectors.changelog.log_names`).
"""

from __future__ import annotations

import datetime as dt
import re
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runner.connectors.changelog import Commit, Lag, LogNames, Reshape, RowChange
from runner.errors import TerminalError, TransientError
from runner.streams.types import Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.sql.postgresql import PostgresqlConnector

PG_EPOCH = dt.datetime(2000, 1, 1)
FETCH = 2_000  # log messages per fetch from the server-side cursor
TEXT_OID = 25  # PostgreSQL's text type
IDLE_WAIT = 15.0  # seconds to wait for a slot a killed run still holds


def lsn_int(lsn: str) -> int:
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


UNCHANGED = object()  # in a logged tuple, a large value an update left as it was (not sent)


class _Reader:
    """Parses pgoutput (protocol 1) messages."""

    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at : end].decode()
        self.at = end + 1
        return text

    def row(self, loads: list[Any]) -> tuple[list[Any], bool]:
        """A tuple's values, each loaded by its column's loader (the relation's order), and
        whether one is an unchanged TOAST value the log does not carry (`UNCHANGED` in its
        place). One pass, no struct calls: this is where a run spends its time per change."""
        data, at = self.data, self.at
        count = (data[at] << 8) | data[at + 1]
        at += 2
        values: list[Any] = []
        append = values.append
        unchanged = False
        for i in range(count):
            kind = data[at]
            at += 1
            if kind == 116:  # t: the value as text
                size = int.from_bytes(data[at : at + 4], "big")
                at += 4
                append(loads[i](data[at : at + size]))
                at += size
            elif kind == 110:  # n: NULL
                append(None)
            else:  # u: an unchanged TOAST value, not sent
                append(UNCHANGED)
                unchanged = True
        self.at = at
        return values, unchanged


class PostgresqlChangeLog:
    """One task's slot and publication on one table (`runner.connectors.changelog.ChangeLog`)."""

    def __init__(
        self,
        connector: PostgresqlConnector,
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
        ((level, slots, allowed, user),) = self.c._query(
            "checking the settings for change data capture",
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int, "
            "(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), current_user",
        )
        problems = []
        if level != "logical":
            problems.append(
                f"wal_level is {level!r}; set it to 'logical' (ALTER SYSTEM SET wal_level = logical, "
                "then restart the server)"
            )
        if slots < 1:
            problems.append(
                "max_replication_slots is 0; give it one slot per cdc task (then restart the server)"
            )
        if not allowed:
            problems.append(f"role {user!r} may not read the log; ALTER ROLE {user} REPLICATION")
        if problems:
            raise TerminalError(
                f"the source connection {self.c.name!r} is not ready for strategy 'cdc': "
                + "; ".join(problems)
            )

    def _table_info(self, cursor: Any) -> tuple[int, str, str, str]:
        cursor.execute(
            "SELECT c.oid, n.nspname, c.relname, c.relreplident FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            (self.c.quote_table(self.table),),
        )
        row = cursor.fetchone()
        if row is None:
            raise TerminalError(f"table {self.table!r} not found (connection {self.c.name!r})")
        return int(row[0]), row[1], row[2], row[3]

    def _check_identity(self, cursor: Any, oid: int, identity: str) -> None:
        """The log names an updated or deleted row by the table's replica identity: it must be
        write.keys (or the whole row)."""
        if identity == "f":
            return
        which = "indisprimary" if identity == "d" else "indisreplident"
        cursor.execute(
            f"SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            f"AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.{which}",
            (oid,),
        )
        identity_columns = {r[0] for r in cursor.fetchall()}
        if identity == "n" or not identity_columns:
            raise TerminalError(
                f"table {self.table!r} has no replica identity, so the log cannot say which row an update "
                f"or delete changed; add a primary key, or ALTER TABLE {self.table} REPLICA IDENTITY FULL"
            )
        if identity_columns != set(self.keys):
            raise TerminalError(
                f"write.keys ({', '.join(self.keys)}) are not the replica identity of table {self.table!r} "
                f"({', '.join(sorted(identity_columns))}), by which the log names a changed row; make "
                f"write.keys those columns, or ALTER TABLE {self.table} REPLICA IDENTITY FULL"
            )

    def _publication(self, cursor: Any, schema: str, name: str) -> None:
        """Create the task's publication of the table, or make it publish exactly the table."""
        pub = self.c.quote(self.names.publication)
        cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.names.publication,))
        if cursor.fetchone() is None:
            # a partitioned table's changes are published as the table's own, not its partitions'
            options = " WITH (publish_via_partition_root = true)" if self.c.server_version() >= 130000 else ""
            cursor.execute(f"CREATE PUBLICATION {pub} FOR TABLE {self.c.quote_table(self.table)}{options}")
            return
        cursor.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
            (self.names.publication,),
        )
        if [tuple(r) for r in cursor.fetchall()] != [(schema, name)]:
            cursor.execute(f"ALTER PUBLICATION {pub} SET TABLE {self.c.quote_table(self.table)}")

    def _replication_connection(self) -> Any:
        import psycopg

        url = self.c.engine.url
        params: dict[str, Any] = dict(url.translate_connect_args(username="user", database="dbname"))
        params.update({k: v for k, v in url.query.items() if isinstance(v, str)})
        params.update(self.c.engine_options()["connect_args"])
        return psycopg.connect(autocommit=True, replication="database", **params)

    # --- the protocol ----------------------------------------------------------------------

    def exists(self) -> bool:
        rows = self.c._query(
            "looking up the replication slot",
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
            (self.names.slot,),
        )
        return bool(rows)

    @contextmanager
    def start(self) -> Iterator[str]:
        self.check_setup()
        doing = "creating the replication slot"
        with self.c.connection(doing) as dbapi, self.c.errors(doing):
            cursor = dbapi.cursor()
            oid, schema, name, identity = self._table_info(cursor)
            self._check_identity(cursor, oid, identity)
            self._publication(cursor, schema, name)  # before the slot: decoding looks it up as of then
            dbapi.commit()
        self._drop_slot()
        with self.c.errors(doing):
            replication = self._replication_connection()
        try:
            with self.c.errors(doing):
                syntax = "(SNAPSHOT 'export')" if self.c.server_version() >= 150000 else "EXPORT_SNAPSHOT"
                slot = self.c.quote(self.names.slot)
                result = replication.pgconn.exec_(
                    f"CREATE_REPLICATION_SLOT {slot} LOGICAL pgoutput {syntax}".encode()
                )
                if result.error_message:
                    said = result.error_message.decode(errors="replace").strip()
                    raise TerminalError(f"{doing} (connection {self.c.name!r}): {said}")
                position = result.get_value(0, 1).decode()
                exported = result.get_value(0, 2).decode()
            if not re.fullmatch(r"[0-9A-F-]+", exported):
                raise TerminalError(f"unexpected snapshot id from the server: {exported!r}")
            self.c._snapshot = exported  # every read meanwhile is in the slot's snapshot (`begin_read`)
            try:
                yield position
            finally:
                self.c._snapshot = None
        finally:
            replication.close()

    def end(self) -> str:
        # flushed, not written: decoding reads only flushed WAL (a commit made with
        # synchronous_commit = off shows up by the next run)
        ((lsn,),) = self.c._query("reading the log's end", "SELECT pg_current_wal_flush_lsn()::text")
        return str(lsn)

    def changes(self, after: str, upto: str) -> Iterator[RowChange | Commit | Reshape]:
        from psycopg import pq
        from psycopg.adapt import Transformer

        doing = f"reading the log of {self.table}"
        after_at = reached = lsn_int(after)
        names = [c.name for c in self.columns]
        key_at = [names.index(k) for k in self.keys]
        with self.c.connection(doing) as dbapi, self.c.errors(doing):
            cursor = dbapi.cursor()
            oid, schema, name, _ = self._table_info(cursor)
            cursor.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (self.names.publication,),
            )
            if [tuple(r) for r in cursor.fetchall()] != [(schema, name)]:
                raise TerminalError(
                    f"the publication {self.names.publication!r} does not publish table {self.table!r} "
                    "(the task's table changed, or the publication was altered); run with --resync"
                )
            cursor.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.names.slot,))
            if cursor.fetchone() is None:
                raise TerminalError(
                    f"the replication slot {self.names.slot!r} of table {self.table!r} is gone (dropped on "
                    f"the source, connection {self.c.name!r}); run with --resync to load the table again"
                )
            self._wait_idle(cursor)
            driver = dbapi.driver_connection
            loaders = Transformer(driver)
            log = driver.cursor(name="runner_log")
            log.itersize = FETCH
            log.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, %s::pg_lsn, NULL, "
                "'proto_version', '1', 'publication_names', %s)",
                (self.names.slot, upto, self.names.publication),
            )
            loads: list[Any] = []  # per column of the relation, its loader's `load`
            at: list[int] = []  # per task column, its place in the relation's tuples
            skip = False
            committed_at: dt.datetime | None = None
            while messages := log.fetchmany(FETCH):
                for (data,) in messages:
                    data = bytes(data)
                    r = _Reader(data)
                    r.at = 1
                    kind = data[0]
                    if kind == 66:  # B: begin
                        final_lsn, stamp = r.take("!Q"), r.take("!q")
                        skip = final_lsn < after_at  # applied by an earlier run
                        committed_at = PG_EPOCH + dt.timedelta(microseconds=stamp)
                    elif kind == 67:  # C: commit
                        r.take("!B")
                        r.take("!Q")
                        end_lsn = r.take("!Q")
                        if not skip:
                            reached = max(reached, end_lsn)
                            yield Commit(lsn_text(end_lsn), committed_at)
                    elif kind == 82:  # R: a relation's columns (before its first change, and after a change)
                        relid = r.take("!I")
                        r.string()
                        r.string()
                        r.take("!B")
                        relation = []
                        for _ in range(r.take("!h")):
                            r.take("!B")
                            relation.append((r.string(), r.take("!I"), r.take("!i")))
                        if relid == oid:
                            shape = self._shape(cursor, relation)
                            if shape != self.columns:  # the table changed: the task follows it
                                yield Reshape(shape)
                                self.columns = shape
                                names = [c.name for c in shape]
                                key_at = [names.index(k) for k in self.keys]
                            at, loads = self._relation(relation, names, loaders, pq.Format.TEXT)
                    elif skip:
                        continue
                    elif kind in (73, 85, 68):  # I, U, D: insert, update, delete
                        if r.take("!I") != oid:
                            continue
                        yield from self._row_change(kind, r, at, loads, key_at)
                    elif kind == 84:  # T: truncate
                        count, _ = r.take("!I"), r.take("!B")
                        if oid in [r.take("!I") for _ in range(count)]:
                            yield RowChange("truncate")
            dbapi.rollback()
        # Every transaction committed before `upto` was read (and one whose commit record
        # straddles it): the log up to there holds nothing more for the task. Saying so lets
        # the slot move on past other tables' changes, or a quiet table's slot would keep the
        # whole server's log for ever.
        if lsn_int(upto) > reached:
            yield Commit(upto, None)

    def _shape(self, cursor: Any, relation: list[tuple[str, int, int]]) -> list[Column]:
        """The columns of a Relation message (name, type, type modifier) as a read of the table
        would give them (`SqlReading._columns`): a type runner cannot map is read as its text."""
        cursor.execute(
            "SELECT format_type(t, m) FROM unnest(%s::oid[], %s::int[]) WITH ORDINALITY AS u(t, m, i) "
            "ORDER BY i",
            ([t for _, t, _ in relation], [m for _, _, m in relation]),
        )
        shape = []
        for (name, _, _), (declared,) in zip(relation, cursor.fetchall(), strict=True):
            ctype = self.c.parse_type(declared)
            shape.append(Column(name, ctype) if ctype else Column(name, ColumnType("text"), declared))
        return shape

    def _relation(
        self, relation: list[tuple[str, int, int]], names: list[str], loaders: Any, text: Any
    ) -> tuple[list[int], list[Any]]:
        """Where each of the task's columns is in the relation's tuples, and its loader; the
        columns differ from the task's (a reader told of a `Reshape` that did not follow it):
        stop (a change read in the old shape would be written into the new one)."""
        logged = [n for n, _, _ in relation]
        if set(logged) != set(names):
            raise TerminalError(
                f"the columns of table {self.table!r} changed: the log has changes with columns "
                f"({', '.join(logged)}) where the task reads ({', '.join(names)}); strategy 'cdc' stops "
                "there: run with --resync to load the table in its new shape"
            )
        at = [logged.index(n) for n in names]
        # a column of a type runner cannot map is read as its text (`read.unmapped_types: text`)
        unmapped = {logged.index(c.name) for c in self.columns if c.unmapped}
        oids = [TEXT_OID if i in unmapped else relation[i][1] for i in range(len(relation))]
        return at, [loaders.get_loader(oid, text).load for oid in oids]

    def _row_change(
        self, kind: int, r: _Reader, at: list[int], loads: list[Any], key_at: list[int]
    ) -> Iterator[RowChange]:
        old: list[Any] | None = None
        marker = r.data[r.at]
        r.at += 1
        if marker in (75, 79):  # K: the old key, O: the old row (REPLICA IDENTITY FULL)
            old, _ = r.row(loads)
            if kind == 68:
                yield RowChange("delete", tuple(old[at[k]] for k in key_at))
                return
            marker = r.data[r.at]
            r.at += 1
        assert marker == 78  # N: the new row
        new, unchanged = r.row(loads)
        if unchanged:
            new = self._unchanged(new, old, at)
        row = tuple([new[i] for i in at])
        if old is not None:
            old_key = tuple(old[at[k]] for k in key_at)
            if old_key != tuple(row[k] for k in key_at):
                yield RowChange("delete", old_key)  # a changed key: the old row goes
        yield RowChange("upsert", row)

    def _unchanged(self, new: list[Any], old: list[Any] | None, at: list[int]) -> list[Any]:
        """An update's large values left as they were, from the old row when the log has it."""
        filled = list(new)
        for i, value in enumerate(new):
            if value is UNCHANGED:
                if old is None or old[i] is None or old[i] is UNCHANGED:
                    name = self.columns[at.index(i)].name
                    raise TerminalError(
                        f"an update of table {self.table!r} left column {name!r} (a large value) "
                        f"unchanged, and the log does not carry it; ALTER TABLE {self.table} REPLICA "
                        "IDENTITY FULL, then run with --resync"
                    )
                filled[i] = old[i]
        return filled

    def confirm(self, position: str) -> None:
        doing = "confirming the log position"
        with self.c.connection(doing) as dbapi, self.c.errors(doing):
            cursor = dbapi.cursor()
            cursor.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                (self.names.slot,),
            )
            row = cursor.fetchone()
            if row is not None and row[0] is not None and lsn_int(row[0]) < lsn_int(position):
                self._wait_idle(cursor)
                cursor.execute(
                    "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.names.slot, position)
                )
            dbapi.commit()

    def lag(self, seconds: bool = False, position: str | None = None) -> Lag:
        rows = self.c._query(
            "reading the slot's lag",
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, active_pid "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (self.names.slot,),
        )
        if not rows:
            return Lag(0, 0)
        behind, kept, active = rows[0]
        lag = Lag(max(int(behind or 0), 0), max(int(kept or 0), 0))
        if not seconds or active is not None:  # a run holds the slot: it is catching up now
            return lag
        if not lag.bytes:
            return Lag(lag.bytes, lag.retained, 0.0)
        # the oldest transaction not applied: the first the slot would send (its BEGIN has the
        # commit time); the server decodes up to it, so this is asked only on demand
        first = self.c._query(
            "reading the oldest change not applied",
            "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, 1, 'proto_version', '1', "
            "'publication_names', %s) LIMIT 1",
            (self.names.slot, self.names.publication),
        )
        if not first or bytes(first[0][0])[:1] != b"B":
            return Lag(lag.bytes, lag.retained, 0.0)
        stamp = struct.unpack_from("!q", bytes(first[0][0]), 9)[0]
        committed = PG_EPOCH + dt.timedelta(microseconds=stamp)
        behind_s = (dt.datetime.now(dt.UTC).replace(tzinfo=None) - committed).total_seconds()
        return Lag(lag.bytes, lag.retained, max(0.0, round(behind_s, 1)))

    def _wait_idle(self, cursor: Any) -> None:
        """Wait for the slot to be free: a run killed a moment ago may hold it until its server
        process notices (the job's lock says no other run is using it).

        Raises:
            TransientError: still in use after `IDLE_WAIT` seconds.
        """
        deadline = time.monotonic() + IDLE_WAIT
        while True:
            cursor.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self.names.slot,)
            )
            row = cursor.fetchone()
            if row is None or row[0] is None:
                return
            if time.monotonic() > deadline:
                raise TransientError(
                    f"the replication slot {self.names.slot!r} is in use by server process {row[0]} "
                    f"(connection {self.c.name!r})"
                )
            time.sleep(0.2)

    def _drop_slot(self) -> bool:
        doing = "dropping the replication slot"
        with self.c.connection(doing) as dbapi, self.c.errors(doing):
            cursor = dbapi.cursor()
            self._wait_idle(cursor)
            cursor.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                (self.names.slot,),
            )
            dropped = cursor.fetchone() is not None
            dbapi.commit()
        return dropped

    def drop(self) -> list[str]:
        dropped = []
        if self._drop_slot():
            dropped.append(f"replication slot {self.names.slot}")
        doing = "dropping the publication"
        with self.c.connection(doing) as dbapi, self.c.errors(doing):
            cursor = dbapi.cursor()
            cursor.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.names.publication,))
            if cursor.fetchone() is not None:
                cursor.execute(f"DROP PUBLICATION {self.c.quote(self.names.publication)}")
                dropped.append(f"publication {self.names.publication}")
            dbapi.commit()
        return dropped


class PostgresqlLogSource:
    """The `LogSource` methods of `PostgresqlConnector`."""

    log_slot = True

    def change_log(
        self, names: LogNames, table: str, columns: list[Column], keys: list[str]
    ) -> PostgresqlChangeLog:
        return PostgresqlChangeLog(self, names, table, columns, keys)  # type: ignore[arg-type]

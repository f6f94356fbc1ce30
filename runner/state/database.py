"""The state store's database: one SQLAlchemy engine on the store's URL, shared by every
concern (`objects`, `tasks`, `locks`, …), with what every one of them relies on: SQLite writers
that queue at BEGIN, a SQLite file in WAL mode, driver errors reported as an unusable store,
and `check`, which notices a SQLite file deleted or replaced under a running process.

WAL (write-ahead log): a commit is one fsync of the log rather than the two or three of a
rollback journal (a daemon's 500 runs a minute make thousands of commits, taken one at a time),
and readers (the API, `runner status`) neither wait for a writer nor make it wait. Every commit
is still synced before it returns (`synchronous` stays FULL), so what a run committed survives
a power cut as before. Processes on one host share it through the `-wal` and `-shm` files
beside the store (as they shared the rollback journal); the store is switched once, by the first
process that opens it to write, and stays so.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from runner.errors import StateError, StateUnavailable, StoreMissing
from runner.state import migrations, schema

READ = "runner_read"  # the execution option of a read-only transaction
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return os.environ.get("USER", "unknown")


def _sqlite_begin_immediate(engine: sa.Engine, guard: Callable[[bool], None]) -> None:
    """Make every SQLite transaction take the write lock at BEGIN, so two processes queue on
    the busy timeout instead of failing with 'database is locked' half-way (the pysqlite
    recipe from the SQLAlchemy documentation); then `guard(writes)` checks the file."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        # every commit synced before it returns, whatever a SQLite build defaults to in WAL mode
        dbapi_connection.execute("PRAGMA synchronous = FULL")

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # a read (`Database.read`) does not queue behind a writer: a long apply must not
        # stall the API's key checks and listings
        read = conn.get_execution_options().get(READ)
        conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")
        guard(not read)


def _read_only(engine: sa.Engine) -> None:
    """Make the database refuse writes on every connection of `engine` (a `StateReader`'s),
    so a read path that wrote by mistake fails instead of changing the state."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        if engine.dialect.name == "sqlite":
            dbapi_connection.execute("PRAGMA query_only = ON")
        else:  # psycopg: each transaction begins READ ONLY (no session setting for a pooler to leak)
            dbapi_connection.read_only = True


def _unavailable(engine: sa.Engine) -> None:
    """Turn the driver's errors into `StateUnavailable`, so every caller (the CLI, the API, the
    daemon's loop) reports a deleted, corrupted or unreachable store as such instead of as a
    traceback. Integrity errors are left alone: locks and keys take them as answers."""

    @event.listens_for(engine, "handle_error")
    def _handle(ctx: sa.engine.ExceptionContext) -> None:
        if ctx.is_pre_ping or isinstance(ctx.sqlalchemy_exception, sa.exc.IntegrityError):
            return
        detail = " ".join(str(ctx.original_exception).split())
        raise StateUnavailable(f"the state store cannot be used: {detail}") from None


class _Heads:
    """One read-only descriptor per SQLite store file (by device and inode) for this process,
    to read its header: closed when the last `Database` on the file closes, after its engine's
    connections, because closing any descriptor of a file drops all of the process's POSIX
    locks on it, SQLite's included (a lock dropped under a WAL connection lets another process
    take itself for the file's last user and remove the `-wal` file in use here)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._open: dict[tuple[int, int], list[int]] = {}  # identity -> [descriptor, users]

    def open(self, file: Path) -> tuple[int, int] | None:
        """The file's identity (device, inode), its descriptor opened or shared; None when it
        cannot be opened (gone already: `check` says so, and writes are refused)."""
        with self._guard:
            try:
                st = os.stat(file)
                held = self._open.get((st.st_dev, st.st_ino))
                if held is not None:
                    held[1] += 1
                    return st.st_dev, st.st_ino
                fd = os.open(file, os.O_RDONLY)
            except OSError:
                return None
            st = os.fstat(fd)  # the file opened, should it have been replaced since the stat
            identity = (st.st_dev, st.st_ino)
            if identity in self._open:  # never closed, which would drop the locks (see above)
                self._open[identity][1] += 1
            else:
                self._open[identity] = [fd, 1]
            return identity

    def read(self, identity: tuple[int, int]) -> bytes:
        held = self._open.get(identity)
        if held is None:
            return b""
        try:
            return os.pread(held[0], len(SQLITE_HEADER), 0)
        except OSError:
            return b""

    def close(self, identity: tuple[int, int]) -> None:
        with self._guard:
            held = self._open.get(identity)
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                del self._open[identity]
                os.close(held[0])


_HEADS = _Heads()


class Database:
    """The engine behind a state store URL (`sqlite:///…` or `postgresql://…`).

    With `create` False, a SQLite file that does not exist yet is an error rather than created
    empty: a store deleted by mistake must not come back empty and silently restart every job
    from scratch. With `read_only`, the database itself refuses writes, and SQLite reads do not
    take the write lock even to open."""

    def __init__(self, url: str, create: bool = True, read_only: bool = False):
        self.url = url
        self.file: Path | None = None  # a SQLite store's file, watched by `check`
        self._writer = threading.RLock()  # see `_turn`
        self._identity: tuple[int, int] | None = None
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise StateError(
                "the state store URL cannot be parsed; use sqlite:///path or postgresql://…"
            ) from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                self.file = Path(parsed.database).resolve()
                if not create and not self.file.exists():
                    raise StoreMissing(f"no state store at {self.file}")
                self.file.parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(parsed, connect_args={"timeout": 60})
            _sqlite_begin_immediate(self.engine, self._guard)
        elif parsed.get_backend_name() == "postgresql":
            self.engine = sa.create_engine(parsed, pool_pre_ping=True)
        else:
            raise StateError(
                f"unsupported state store {parsed.get_backend_name()!r}; use sqlite or postgresql"
            )
        self.read_only = read_only
        if read_only:
            _read_only(self.engine)
        _unavailable(self.engine)

    def open(
        self, prepare: Callable[[sa.Connection], None], ready: Callable[[sa.Connection], bool] | None = None
    ) -> None:
        """Run `prepare` (the migrations, or a check of the version) in the store's first
        transaction, then remember the SQLite file's identity, which `check` compares. A store
        that `ready` finds needing nothing (read first, without the write lock: a store in use
        is at the latest schema already) skips `prepare`'s write transaction.

        Raises:
            StoreMissing: `prepare` found no store.
            StateUnavailable: the store cannot be opened (unreachable, not a database).
        """
        try:
            done = False
            if ready is not None and not self.read_only:
                with self.read() as conn:
                    done = ready(conn)
            if not done:
                with self.read() if self.read_only else self.write() as conn:
                    prepare(conn)
        except StoreMissing:
            raise
        except StateUnavailable as exc:
            raise StateUnavailable(str(exc).replace("cannot be used", "cannot be opened")) from None
        if self.file is not None and not self.read_only and not done:
            self._journal_in_wal()
        self._identity = _HEADS.open(self.file) if self.file is not None else None

    def _journal_in_wal(self) -> None:
        """Switch the SQLite file to WAL (a no-op once it is): outside any transaction, on a
        connection of its own; the switch waits, like any writer, for other processes' locks.
        A file that cannot be switched (locked past the busy timeout) works in its old mode,
        only slower; the next process that opens it tries again."""
        raw = self.engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA journal_mode = WAL").fetchall()
        except self.engine.dialect.loaded_dbapi.Error:
            pass
        finally:
            raw.close()

    def close(self) -> None:
        self.engine.dispose()
        if self._identity is not None:  # after the engine's connections: see `_Heads`
            _HEADS.close(self._identity)
            self._identity = None

    def read(self) -> sa.Connection:
        """A connection for reads only (SQLite: a deferred transaction, see `_begin`)."""
        return self.engine.connect().execution_options(**{READ: True})

    def write(self) -> AbstractContextManager[sa.Connection]:
        """A transaction that commits at the end of its `with` block (SQLite: BEGIN IMMEDIATE)."""
        if self.file is None:
            return self.engine.begin()
        return self._turn()

    @contextmanager
    def _turn(self) -> Iterator[sa.Connection]:
        """A SQLite write transaction, the threads of this process taking turns for it here:
        in SQLite's busy handler, hundreds of them (a daemon's runs) would sleep up to 100 ms
        between tries while the file is free. Other processes still queue on the busy timeout."""
        with self._writer, self.engine.begin() as conn:
            yield conn

    # --- health ----------------------------------------------------------------------

    def _file_identity(self) -> tuple[int, int] | None:
        if self.file is None:
            return None
        st = os.stat(self.file)
        return st.st_dev, st.st_ino

    def _guard(self, writes: bool) -> None:
        """At every SQLite transaction's start, what SQLite itself noticed in a rollback
        journal's mode and no longer does in WAL mode, where pages come from the log: a file
        whose header is not SQLite's (overwritten in place), and, for a write, a file deleted
        or replaced since it was opened (the write would go into a log no one reads again).
        The header is read through a descriptor kept open (`_Heads`): closing one would drop
        this process's locks on the file, SQLite's included.

        Raises:
            StateUnavailable: the file is not a database, or a write's file is gone.
        """
        if self._identity is None:  # still opening (SQLite checks it), or not a file
            return
        head = _HEADS.read(self._identity)
        if head and head != SQLITE_HEADER:
            raise StateUnavailable("the state store cannot be used: file is not a database")
        if not writes:
            return  # a read of a file deleted or replaced answers from the file open, as always
        problem = self._moved()
        if problem is not None:
            raise StateUnavailable(f"the state store cannot be used: {problem}")

    def _moved(self) -> str | None:
        """What became of the SQLite file since it was opened (deleted, replaced, unreadable),
        or None when it is still the one opened (or the store is not a file)."""
        if self.file is None:
            return None
        try:
            identity = self._file_identity()
        except FileNotFoundError:
            return f"the state store file {self.file} was deleted"
        except OSError as exc:
            return f"the state store file {self.file} cannot be read: {exc.strerror}"
        if identity != self._identity:
            return f"the state store file {self.file} was replaced since it was opened"
        return None

    def check(self) -> str | None:
        """What is wrong with the store, or None when it is usable. A SQLite file deleted or
        replaced under a running process still answers reads from the old file (and refuses
        writes), so its identity is compared with the one opened; then one read proves the
        file is a readable store of this runner's schema."""
        problem = self._moved()
        if problem is not None:
            return problem
        try:
            version = self.schema_version()
        except StateError as exc:
            return str(exc)
        if version != migrations.LATEST:
            return f"the state store is at schema version {version}, expected {migrations.LATEST}"
        return None

    def schema_version(self) -> int:
        with self.read() as conn:
            return conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar() or 0


class Concern:
    """One concern of the state store (a few tables and their transactions) over its shared
    database."""

    def __init__(self, db: Database):
        self.db = db

"""Named locks in the state store: one holder at a time, across processes and hosts (the apply
lock, a job's run lock, the daemon's lock). A lock records who holds it (user, host, pid), so a
timeout names the holder.

Every lock is a lease: it expires `LEASE_SECONDS` (30 s) after it was taken or last renewed, and
a heartbeat thread in the holding process renews it every `HEARTBEAT_SECONDS` (10 s). A process
id means nothing on another host, so an expired lease is what says its holder is gone: it is
taken over (`on_takeover` hears of it, to record the run it belonged to as interrupted). A lock
of a dead process on this host is taken over at once, without waiting for its lease. A holder
whose renewal finds its lock gone (taken over after the store was unreachable for a whole
lease) hears it through `on_lost` and must stop. Expiry times are compared on the clocks of
the hosts, which must agree to well within a lease (NTP).

This module is the only place lock names are made (`APPLY`, `DAEMON`, `WRITE_BACK`, `job_lock`,
`range_lock`) and read
back (`LocksReader.jobs`): two spellings of one lock's name would let two holders in.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.errors import LockTimeout, NotFound, NotRunning
from runner.state import schema
from runner.state.database import Concern, current_user, utcnow

APPLY = "apply"  # held while a plan is made and applied: applies serialise
DAEMON = "daemon"  # held by the one daemon of a state store
WRITE_BACK = "write-back"  # held while a change is written to the definitions, committed and applied
_JOB = "job:"  # + "namespace/name": held by the job's run
_RANGE = "range:"  # + "namespace/name:task:index": held by whoever runs a split task's key range

# a lease's length and how often its holder renews it (RUNNER_LEASE_SECONDS sets both, for tests
# that want a dead worker's run taken over sooner; the heartbeat is always a third of the lease)
LEASE_SECONDS = float(os.environ.get("RUNNER_LEASE_SECONDS") or 30)
HEARTBEAT_SECONDS = LEASE_SECONDS / 3


def lease_end(seconds: float = LEASE_SECONDS) -> str:
    """When a lease taken or renewed now expires (UTC ISO, comparable as text)."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(timespec="microseconds")


def job_lock(ref: str) -> str:
    """The lock a job's run holds (`ref` is namespace/name): one run of a job at a time,
    across processes."""
    return f"{_JOB}{ref}"


def range_lock(ref: str, task: str, idx: int) -> str:
    """The lock whoever runs one key range of a split task holds (`runner.changes.split`)."""
    return f"{_RANGE}{ref}:{task}:{idx}"


def job_of(name: str) -> str | None:
    """The job ref (namespace/name) whose run holds the lock `name`, or None for another lock."""
    return name.removeprefix(_JOB) if name.startswith(_JOB) else None


def holder() -> str:
    """This process, as a lock (and a switch, a key, a pointer set by hand) names it."""
    return f"{current_user()}@{socket.gethostname()} pid {os.getpid()}"


@dataclass(frozen=True)
class Lock:
    name: str
    lock_id: str
    holder: str
    acquired_at: str
    host: str | None = None
    pid: int | None = None
    run_id: str | None = None
    cancel_requested: str | None = None
    expires_at: str | None = None  # None: taken before leases (never expires by time)

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at < utcnow()

    @property
    def alive(self) -> bool:
        """False when the lease expired, or the holder is a dead process on this host."""
        dead_here = self.host == socket.gethostname() and self.pid and not _alive(self.pid)
        return not (dead_here or self.expired)

    @classmethod
    def from_row(cls, row: Any) -> Lock:
        return cls(
            row.name,
            row.lock_id,
            row.holder,
            row.acquired_at,
            row.host,
            row.pid,
            row.run_id,
            row.cancel_requested,
            row.expires_at,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class LocksReader(Concern):
    """Who holds what: what `runner status` and a run's record read."""

    def info(self, name: str) -> Lock | None:
        with self.db.read() as conn:
            row = conn.execute(sa.select(schema.locks).where(schema.locks.c.name == name)).first()
        return Lock.from_row(row) if row else None

    def jobs(self) -> dict[str, Lock]:
        """Job ref (namespace/name) -> the lock its run holds, for every job whose lock is
        held (by a live process or not: see `Lock.alive`), in order of name."""
        query = sa.select(schema.locks).where(schema.locks.c.name.startswith(_JOB, autoescape=True))
        with self.db.read() as conn:
            return {
                r.name.removeprefix(_JOB): Lock.from_row(r)
                for r in conn.execute(query.order_by(schema.locks.c.name))
            }

    def ranges(self) -> dict[tuple[str, str, int], Lock]:
        """(job ref, task, range index) -> the lock of whoever runs that key range now."""
        query = sa.select(schema.locks).where(schema.locks.c.name.startswith(_RANGE, autoescape=True))
        found = {}
        with self.db.read() as conn:
            for r in conn.execute(query.order_by(schema.locks.c.name)):
                job, task, idx = r.name.removeprefix(_RANGE).rsplit(":", 2)
                found[(job, task, int(idx))] = Lock.from_row(r)
        return found

    def stale(self) -> list[Lock]:
        """The locks whose holders are gone (lease expired, or a dead process on this host)."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(schema.locks).order_by(schema.locks.c.name)).all()
        return [lock for lock in map(Lock.from_row, rows) if not lock.alive]


class _Heartbeat:
    """One thread per store that renews the leases this process holds, every
    `HEARTBEAT_SECONDS`; a lease found gone is reported to its holder's `on_lost`."""

    def __init__(self, db: Any):
        self.db = db
        self.held: dict[str, Callable[[], None] | None] = {}  # lock id -> on_lost
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()  # a forked child holds none of its parent's leases

    def add(self, lock_id: str, on_lost: Callable[[], None] | None) -> None:
        with self._guard:
            if self._pid != os.getpid():
                self.held, self._thread, self._pid = {}, None, os.getpid()
            self.held[lock_id] = on_lost
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="runner-heartbeat", daemon=True)
                self._thread.start()

    def remove(self, lock_id: str) -> None:
        with self._guard:
            self.held.pop(lock_id, None)

    def _loop(self) -> None:
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            self.beat()

    def beat(self) -> None:
        """Renew every held lease now; tell the holders of those found gone."""
        with self._guard:
            held = dict(self.held)
        if not held:
            return
        try:
            with self.db.write() as conn:
                conn.execute(
                    schema.locks.update()
                    .where(schema.locks.c.lock_id.in_(list(held)))
                    .values(expires_at=lease_end())
                )
                kept = set(
                    conn.execute(
                        sa.select(schema.locks.c.lock_id).where(schema.locks.c.lock_id.in_(list(held)))
                    ).scalars()
                )
        except Exception:  # noqa: BLE001 - the store away for a while: renew at the next beat
            return
        for lock_id, on_lost in held.items():
            if lock_id not in kept:
                with self._guard:
                    if self.held.pop(lock_id, False) is False:
                        continue  # released meanwhile
                if on_lost is not None:
                    on_lost()


class Locks(LocksReader):
    def __init__(self, db: Any):
        super().__init__(db)
        self.heartbeat = _Heartbeat(db)

    def _take_over_if_stale(self, name: str, on_takeover: Callable[[Lock], None] | None) -> bool:
        """Release `name` when its holder is gone: its lease expired (a process on any host that
        stopped renewing it), or it was a process on this host that no longer runs (a run
        killed with SIGKILL cannot release its lock). Deletes by lock id, so a lock renewed or
        taken since is never released; `on_takeover` gets the lock taken over."""
        held = self.info(name)
        if held is None or held.alive:
            return False
        with self.db.write() as conn:
            gone = conn.execute(
                schema.locks.delete().where(
                    (schema.locks.c.lock_id == held.lock_id)
                    & (schema.locks.c.expires_at.is_(None) | (schema.locks.c.expires_at == held.expires_at))
                )
            ).rowcount
        if gone and on_takeover is not None:
            on_takeover(held)
        return True

    def take_over(self, lock: Lock, on_takeover: Callable[[Lock], None] | None = None) -> bool:
        """Release a stale lock found by `stale` (unless renewed since); True when released."""
        return self._take_over_if_stale(lock.name, on_takeover)

    def acquire(
        self,
        name: str,
        timeout: float,
        poll: float = 0.1,
        run_id: str | None = None,
        on_lost: Callable[[], None] | None = None,
        on_takeover: Callable[[Lock], None] | None = None,
    ) -> str:
        """Take the named lock, waiting up to `timeout` seconds for its holder, and keep its
        lease renewed until `release`.

        Args:
            on_lost: called (on the heartbeat thread) if the lease is found taken over.
            on_takeover: called with a stale lock this call took over from a gone holder.
        Returns:
            The lock id, needed to release it.
        Raises:
            LockTimeout: naming the holder and how to release a stale lock.
        """
        lock_id = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.db.write() as conn:
                    conn.execute(
                        schema.locks.insert().values(
                            name=name,
                            lock_id=lock_id,
                            holder=holder(),
                            acquired_at=utcnow(),
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            run_id=run_id,
                            expires_at=lease_end(),
                        )
                    )
                self.heartbeat.add(lock_id, on_lost)
                return lock_id
            except sa.exc.IntegrityError:
                if self._take_over_if_stale(name, on_takeover):
                    continue
                if time.monotonic() >= deadline:
                    held = self.info(name)
                    if held is None:
                        continue  # released in between: try once more
                    raise LockTimeout(
                        f"the {name} lock is held by {held.holder} since {held.acquired_at} "
                        f"(lock id {held.lock_id}); if that process is gone, release it with "
                        f"`runner force-unlock {held.lock_id}`"
                    ) from None
                time.sleep(poll)

    def acquire_free(
        self, wanted: Sequence[tuple[str, str | None, Callable[[], None] | None]]
    ) -> dict[str, str]:
        """Take, in one transaction, each lock of `wanted` (name, run id, on_lost) that no one
        holds: a burst of runs (a cron slot's hundreds) pays one commit, not one each. A lock
        held (alive or stale) is left out, and so is every one when another process took one
        of them meanwhile: its run takes it the usual way (`acquire`), which refuses it, takes
        over a stale one, or waits. Returns name -> lock id of those taken."""
        if not wanted:
            return {}
        names = [name for name, _, _ in wanted]
        taken: dict[str, str] = {}
        rows = []
        try:
            with self.db.write() as conn:
                held = set(
                    conn.execute(
                        sa.select(schema.locks.c.name).where(schema.locks.c.name.in_(names))
                    ).scalars()
                )
                me, host, pid, now, end = holder(), socket.gethostname(), os.getpid(), utcnow(), lease_end()
                for name, run_id, _ in wanted:
                    if name in held or name in taken:
                        continue
                    taken[name] = uuid.uuid4().hex
                    rows.append(
                        {
                            "name": name,
                            "lock_id": taken[name],
                            "holder": me,
                            "acquired_at": now,
                            "host": host,
                            "pid": pid,
                            "run_id": run_id,
                            "cancel_requested": None,
                            "expires_at": end,
                        }
                    )
                if rows:
                    conn.execute(schema.locks.insert(), rows)
        except sa.exc.IntegrityError:
            return {}
        for name, _, on_lost in wanted:
            if name in taken:
                self.heartbeat.add(taken[name], on_lost)
        return taken

    def release(self, name: str, lock_id: str) -> None:
        self.heartbeat.remove(lock_id)
        with self.db.write() as conn:
            conn.execute(
                schema.locks.delete().where(
                    (schema.locks.c.name == name) & (schema.locks.c.lock_id == lock_id)
                )
            )

    @contextmanager
    def locked(self, name: str, timeout: float) -> Iterator[str]:
        lock_id = self.acquire(name, timeout)
        try:
            yield lock_id
        finally:
            self.release(name, lock_id)

    def force_unlock(self, lock_id: str) -> Lock:
        """Release a lock whose holder is gone; the id must match, so a lock taken since by
        someone else is never released by mistake."""
        with self.db.write() as conn:
            row = conn.execute(sa.select(schema.locks).where(schema.locks.c.lock_id == lock_id)).first()
            if row is None:
                raise NotFound(f"no lock with id {lock_id} (already released?)")
            conn.execute(schema.locks.delete().where(schema.locks.c.lock_id == lock_id))
        return Lock.from_row(row)

    def request_cancel(self, name: str, by: str) -> Lock:
        """Ask the holder of `name` (a running job) to stop at its next batch boundary."""
        with self.db.write() as conn:
            row = conn.execute(sa.select(schema.locks).where(schema.locks.c.name == name)).first()
            if row is None:
                raise NotRunning(f"{name.removeprefix(_JOB)} is not running")
            conn.execute(
                schema.locks.update().where(schema.locks.c.lock_id == row.lock_id).values(cancel_requested=by)
            )
        return Lock.from_row(row)

    def cancel_requested(self, lock_id: str) -> str | None:
        """Who asked the holder of this lock to cancel, if anyone did."""
        with self.db.read() as conn:
            query = sa.select(schema.locks.c.cancel_requested).where(schema.locks.c.lock_id == lock_id)
            return conn.execute(query).scalar()

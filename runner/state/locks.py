"""Named locks in the state store: one holder at a time, across processes and hosts (the apply
lock, a job's run lock, the daemon's lock). A lock records who holds it (user, host, pid), so a
timeout names the holder and a lock left by a killed process on this host is taken over.

This module is the only place lock names are made (`APPLY`, `DAEMON`, `WRITE_BACK`, `job_lock`) and read
back (`LocksReader.jobs`): two spellings of one lock's name would let two holders in.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
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


def job_lock(ref: str) -> str:
    """The lock a job's run holds (`ref` is namespace/name): one run of a job at a time,
    across processes."""
    return f"{_JOB}{ref}"


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

    @property
    def alive(self) -> bool:
        """False only when the holder is known to be a dead process on this host."""
        return not (self.host == socket.gethostname() and self.pid and not _alive(self.pid))

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


class Locks(LocksReader):
    def _release_if_dead(self, name: str) -> bool:
        """Release `name` when its holder was a process on this host that no longer runs (a
        run killed with SIGKILL cannot release its lock). Checks the lock id, so a lock taken
        since by a live process is never released."""
        held = self.info(name)
        if held is None or held.host != socket.gethostname() or not held.pid or _alive(held.pid):
            return False
        with self.db.write() as conn:
            conn.execute(schema.locks.delete().where(schema.locks.c.lock_id == held.lock_id))
        return True

    def acquire(self, name: str, timeout: float, poll: float = 0.1, run_id: str | None = None) -> str:
        """Take the named lock, waiting up to `timeout` seconds for its holder.

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
                        )
                    )
                return lock_id
            except sa.exc.IntegrityError:
                if self._release_if_dead(name):
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

    def release(self, name: str, lock_id: str) -> None:
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

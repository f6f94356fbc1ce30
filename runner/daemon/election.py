"""Which daemon schedules: the one holding the daemon's lease in the state store.

Several daemons may run on one (PostgreSQL) state store for availability. The first to take
the `DAEMON` lease is the scheduler: it reconciles, fires cron slots, follows runs and retries.
The others wait as standbys, trying to take the lease every `STANDBY_POLL_SECONDS`; when the
scheduler dies its lease is no longer renewed and expires after `LEASE_SECONDS` (30 s), so a
standby takes over within `TAKEOVER_SECONDS` (31 s). A scheduler whose lease was taken over
(the store out of its reach for a whole lease) hears it from the heartbeat and stops.

The lease is enough for one scheduler at a time; the cron slots it fires are also recorded
under a unique key (`runner.state.cluster`), so a slot is never fired twice even while an old
scheduler has not yet heard that it lost its lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from runner import services
from runner.daemon.logs import DaemonLog
from runner.errors import LockTimeout, RunnerError

if TYPE_CHECKING:
    from runner.state.store import StateStore

STANDBY_POLL_SECONDS = 1.0
TAKEOVER_SECONDS = services.locks.LEASE_SECONDS + STANDBY_POLL_SECONDS


def lead(
    store: StateStore,
    log: DaemonLog,
    standby: bool,
    stop: threading.Event,
    on_lost: Callable[[], None],
) -> str | None:
    """Take the daemon's lease; returns its lock id, or None when `stop` was set first.

    Without `standby`, a lease held by a live daemon is an error (one daemon per store, as
    before); with it, this daemon waits as a standby until the lease is free or expired.

    Raises:
        RunnerError: not `standby`, and another daemon holds the lease.
    """
    waiting = False
    while not stop.is_set():
        try:
            return store.locks.acquire(services.locks.DAEMON, timeout=0, on_lost=on_lost)
        except LockTimeout:
            held = store.locks.info(services.locks.DAEMON)
            if not standby:
                raise RunnerError(
                    f"a daemon already runs on this state store ({held.holder if held else 'unknown'}, "
                    f"since {held.acquired_at if held else '?'}); one daemon per state store, or start "
                    f"this one with --standby to take over when it stops. If that process is gone, "
                    f"release its lock with `runner force-unlock {held.lock_id if held else 'LOCK_ID'}`"
                ) from None
            if not waiting:
                log(
                    "info",
                    "standby: another daemon schedules; taking over when its lease ends",
                    scheduler=held.holder if held else None,
                    takeover_seconds=TAKEOVER_SECONDS,
                )
                waiting = True
        stop.wait(STANDBY_POLL_SECONDS)
    return None

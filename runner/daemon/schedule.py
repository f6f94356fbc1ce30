"""When jobs are due: cron slots per job in its time zone, and the misfire policy.

The scheduler remembers, per job, the last cron slot it fired the job for (kept in the state
store, so it survives a restart). A job is due when a slot has come since that mark; however
many slots passed while the daemon was down, paused, or the job suspended, it runs once, and
the mark moves to the latest slot that has passed. A job seen for the first time is marked at
"now": it waits for its next slot instead of firing at once.

Nothing here reads the wall clock: callers pass `now`, so tests drive time by hand.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from typing import Any

from croniter import croniter


@dataclass(frozen=True)
class Cron:
    """A cron expression (5 fields, or 6 with seconds last) read in an IANA time zone."""

    expression: str
    timezone: str = "UTC"

    @classmethod
    def of(cls, schedule: dict[str, Any]) -> Cron:
        return cls(schedule["cron"], schedule.get("timezone", "UTC"))

    def _iter(self, start: dt.datetime) -> croniter:
        return croniter(self.expression, start.astimezone(zoneinfo.ZoneInfo(self.timezone)))

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first slot strictly after `moment`, in UTC."""
        return self._iter(moment).get_next(dt.datetime).astimezone(dt.UTC)

    def latest_until(self, moment: dt.datetime) -> dt.datetime:
        """The last slot at or before `moment`, in UTC."""
        nxt = self.next_after(moment)
        return self._iter(nxt).get_prev(dt.datetime).astimezone(dt.UTC)


@dataclass(frozen=True)
class Due:
    job: str  # namespace/name
    slot: dt.datetime  # the latest slot that has passed
    missed: int  # slots passed since the last fire, beyond the one that fires now (capped)


MISSED_CAP = 1000  # counting missed slots of a per-second cron after a long downtime stops here


class Scheduler:
    """Cron bookkeeping for the daemon; `marks` are the last fired slots (UTC)."""

    def __init__(self, marks: dict[str, dt.datetime] | None = None):
        self.crons: dict[str, Cron] = {}
        self.marks: dict[str, dt.datetime] = dict(marks or {})

    def set_jobs(self, crons: dict[str, Cron], now: dt.datetime) -> list[str]:
        """Replace the scheduled jobs; returns the ones seen for the first time (marked `now`)."""
        self.crons = dict(crons)
        new = [job for job in crons if job not in self.marks]
        for job in new:
            self.marks[job] = now
        return new

    def due(self, now: dt.datetime, skip: set[str] = frozenset()) -> list[Due]:  # type: ignore[assignment]
        """Jobs with a slot since their mark, each once; their marks move to the latest slot.
        Jobs in `skip` (suspended, or the whole daemon paused) keep their mark, so they run
        once when they are resumed."""
        out = []
        for job, cron in sorted(self.crons.items()):
            if job in skip:
                continue
            nxt = cron.next_after(self.marks[job])
            if nxt > now:
                continue
            latest = cron.latest_until(now)
            missed, probe = 0, nxt
            while missed < MISSED_CAP:
                probe = cron.next_after(probe)
                if probe > latest:
                    break
                missed += 1
            self.marks[job] = latest
            out.append(Due(job, latest, missed))
        return out

    def next_wakeup(self, skip: set[str] = frozenset()) -> dt.datetime | None:  # type: ignore[assignment]
        """The earliest slot to come among the jobs not skipped."""
        slots = [cron.next_after(self.marks[job]) for job, cron in self.crons.items() if job not in skip]
        return min(slots) if slots else None

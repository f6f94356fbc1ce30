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

    @property
    def key(self) -> str:
        return f"{self.expression}|{self.timezone}"

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first slot strictly after `moment`, in UTC. When clocks go back, a cron with a
        fixed hour fires once, in the first pass of the repeated hour (as cron does)."""
        nxt = self._iter(moment).get_next(dt.datetime)
        fields = self.expression.split()
        if nxt.fold == 1 and fields[1] != "*" and self._shadowed(nxt):
            nxt = self._iter(nxt).get_next(dt.datetime)
        return nxt.astimezone(dt.UTC)

    def _shadowed(self, slot: dt.datetime) -> bool:
        """Whether the same wall time, in the first pass of a repeated hour, is a slot too."""
        first = slot.replace(fold=0)
        return first.utcoffset() != slot.utcoffset() and self._iter(first - dt.timedelta(seconds=1)).get_next(
            dt.datetime
        ).replace(tzinfo=None) == first.replace(tzinfo=None)

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

    def __init__(self, marks: dict[str, dt.datetime] | None = None, made_by: dict[str, str] | None = None):
        self.crons: dict[str, Cron] = {}
        self.marks: dict[str, dt.datetime] = dict(marks or {})
        # the schedule each mark was made by ("cron|timezone"); a mark of unknown origin is kept
        self.made_by: dict[str, str] = dict(made_by or {})

    def set_jobs(self, crons: dict[str, Cron], now: dt.datetime) -> list[str]:
        """Replace the scheduled jobs; returns the ones marked `now`: seen for the first time,
        or with a schedule other than the one of their mark (a slot of the new schedule between
        the old mark and now was never missed). Jobs no longer scheduled lose their mark."""
        fresh = [
            job
            for job, cron in crons.items()
            if job not in self.marks or self.made_by.setdefault(job, cron.key) != cron.key
        ]
        for job in fresh:
            self.marks[job] = now
            self.made_by[job] = crons[job].key
        for job in set(self.marks) - set(crons):
            del self.marks[job]
            self.made_by.pop(job, None)
        self.crons = dict(crons)
        return fresh

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

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
import functools
import re
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


@functools.lru_cache(maxsize=4096)
def _next_after(cron: Cron, moment: dt.datetime) -> dt.datetime:
    """`cron.next_after(moment)`, kept: after a slot, its hundreds of jobs share one mark."""
    return cron.next_after(moment)


MISSED_CAP = 1000  # counting missed slots of a per-second cron after a long downtime stops here


class Scheduler:
    """Cron bookkeeping for the daemon; `marks` are the last fired slots (UTC). Each job's next
    slot after its mark is computed once and kept until the mark or the schedule changes: the
    loop asks what is due and when to wake on every turn, and a daemon of hundreds of jobs
    would otherwise walk every cron expression each time."""

    def __init__(self, marks: dict[str, dt.datetime] | None = None, made_by: dict[str, str] | None = None):
        self.crons: dict[str, Cron] = {}
        self.marks: dict[str, dt.datetime] = dict(marks or {})
        # the schedule each mark was made by ("cron|timezone"); a mark of unknown origin is kept
        self.made_by: dict[str, str] = dict(made_by or {})
        self._next: dict[str, dt.datetime] = {}  # job -> its first slot after its mark

    def _next_slot(self, job: str) -> dt.datetime:
        slot = self._next.get(job)
        if slot is None:
            slot = self._next[job] = _next_after(self.crons[job], self.marks[job])
        return slot

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
        self._next = {job: slot for job, slot in self._next.items() if job in crons and job not in fresh}
        self.crons = dict(crons)
        return fresh

    def due(self, now: dt.datetime, skip: set[str] = frozenset()) -> list[Due]:  # type: ignore[assignment]
        """Jobs with a slot since their mark, each once; their marks move to the latest slot.
        Jobs in `skip` (suspended, or the whole daemon paused) keep their mark, so they run
        once when they are resumed."""
        out = []
        # a slot's jobs mostly share a schedule and a mark: its latest slot and missed count
        # are worked out once for them all (a slot of 500 jobs, not 500 walks of croniter)
        found: dict[tuple[Cron, dt.datetime], tuple[dt.datetime, int]] = {}
        for job, cron in sorted(self.crons.items()):
            if job in skip:
                continue
            nxt = self._next_slot(job)
            if nxt > now:
                continue
            if (cron, nxt) not in found:
                latest = cron.latest_until(now)
                missed, probe = 0, nxt
                while missed < MISSED_CAP:
                    probe = cron.next_after(probe)
                    if probe > latest:
                        break
                    missed += 1
                found[cron, nxt] = latest, missed
            latest, missed = found[cron, nxt]
            self.marks[job] = latest
            self._next.pop(job, None)
            out.append(Due(job, latest, missed))
        return out

    def next_wakeup(self, skip: set[str] = frozenset()) -> dt.datetime | None:  # type: ignore[assignment]
        """The earliest slot to come among the jobs not skipped."""
        slots = [self._next_slot(job) for job in self.crons if job not in skip]
        return min(slots) if slots else None


MONTHS = ("", "January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")  # fmt: skip
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EVERY = ("*", "*/1")


def _named(field: str, names: tuple[str, ...]) -> str:
    """`1-5` -> `Monday-Friday`: the numbers of a month or weekday field as names."""
    named = re.sub(
        r"\d+", lambda m: names[int(m.group())] if int(m.group()) < len(names) else m.group(), field
    )
    return named.replace(",", ", ")


def _unit(field: str, unit: str) -> str:
    """`5` -> `minute 5`, `0,30` -> `minutes 0, 30`, `*/15` -> `every 15th minute`."""
    if field.startswith("*/"):
        n = int(field[2:])
        suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"every {n}{suffix} {unit}"
    return f"{unit} {field}" if field.isdigit() else f"{unit}s {field.replace(',', ', ')}"


def _time_of_day(second: str, minute: str, hour: str) -> str:
    """The second, minute and hour fields in words."""
    if minute.isdigit() and hour.isdigit() and second.isdigit():
        return f"at {int(hour):02}:{int(minute):02}" + (f":{int(second):02}" if int(second) else "")
    if second == "0":  # once a minute, at its start
        if minute in EVERY:
            words = "every minute"
        elif minute.startswith("*/"):
            words = f"every {minute[2:]} minutes"
        else:
            words = f"at {_unit(minute, 'minute')}"
    else:
        if second in EVERY:
            words = "every second"
        elif second.startswith("*/"):
            words = f"every {second[2:]} seconds"
        else:
            words = f"at {_unit(second, 'second')}"
        if minute.isdigit() and hour.isdigit():
            return f"{words} from {int(hour):02}:{int(minute):02}:00 to {int(hour):02}:{int(minute):02}:59"
        if minute not in EVERY:
            words += f" during {_unit(minute, 'minute')}"
    if hour.isdigit():
        return f"{words} of hour {hour}"
    if hour not in EVERY:
        return f"{words}, during {_unit(hour, 'hour')}"
    return words + (" of every hour" if minute not in EVERY and not minute.startswith("*/") else "")


def describe_cron(expression: str) -> str:
    """A cron expression in words, so a reviewer sees what it does: `*/15 * * * *` is "every
    15 minutes", `5 * * * * *` (seconds last) is "every second during minute 5 of every hour"."""
    fields = expression.split()
    minute, hour, day, month, weekday = fields[:5]
    second = fields[5] if len(fields) == 6 else "0"
    words = _time_of_day("*" if second == "0-59" else second, minute, hour)
    if day not in EVERY:
        words += f", on {_unit(day, 'day')} of the month"
    if month not in EVERY:
        words += f", in {_named(month, MONTHS)}"
    if weekday not in EVERY:
        words += f", on {_named(weekday, WEEKDAYS)}"
    elif day in EVERY and hour.isdigit():
        words += ", every day"
    return words

"""A table's changes read from the source's own log (`Capabilities.log_changes`): what the
`cdc` strategy (`runner.changes.cdc`) drives. A kind that declares `log_changes` gives a
`ChangeLog` per task (`LogSource.change_log`); each kind's log reader is one module (PostgreSQL:
`runner.connectors.sql.postgresql_cdc`, MariaDB: `runner.connectors.sql.mariadb_cdc`).

A log is read from a stored position up to an end taken when the read begins, as row changes
grouped by transaction, each closed by a `Commit` carrying the position just past it. The
strategy stores that position only after the target committed the transaction, and only then
tells the source (`confirm`) that the log up to there may go: a run killed anywhere reads again
from the stored position and the target ends equal to the source.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from runner.streams.types import Column

POSITION = "lsn"  # a cdc task's pointer type: a position in the source's log


@dataclass(frozen=True)
class RowChange:
    """One row's change: `upsert` carries the whole row (the task's columns, in order), `delete`
    the key (the task's keys, in order), `truncate` neither."""

    op: Literal["upsert", "delete", "truncate"]
    values: tuple | None = None


@dataclass(frozen=True)
class Commit:
    """The end of a transaction: `position` is just past it (what the task stores)."""

    position: str
    committed_at: dt.datetime | None  # naive UTC; None: the end of what was read, no transaction


@dataclass(frozen=True)
class Reshape:
    """The table's columns changed (a column added, dropped, or its type changed): the changes
    after this come in `columns` (the table's, in its order, as a read would type them); a
    reader that sends it must have its task's columns told (`columns`) before it reads on."""

    columns: list[Column]


@dataclass(frozen=True)
class Lag:
    """How far the source's log runs ahead of what the task confirmed, and the log it keeps."""

    bytes: int  # written since the confirmed position
    retained: int  # kept on the source's disk for the task (from the slot's restart point)
    seconds: float | None = None  # since the oldest change not applied committed (when asked)


@dataclass(frozen=True)
class LogNames:
    """What a task's log reading is called in the source (a replication slot and a publication)."""

    slot: str
    publication: str


class ChangeLog(Protocol):
    names: LogNames

    def check_setup(self) -> None:
        """Raise a TerminalError naming each server setting or privilege to change."""
        ...

    def exists(self) -> bool:
        """Whether the task's slot exists (it was dropped, or never made, when not)."""
        ...

    def start(self) -> AbstractContextManager[str]:
        """(Re)create the slot; while the block runs, the source's reads see the snapshot taken
        exactly where the log starts. Yields that position."""
        ...

    def end(self) -> str:
        """The log's current end: a run reads up to here."""
        ...

    def changes(self, after: str, upto: str) -> Iterator[RowChange | Commit | Reshape]:
        """The changes of the transactions that committed after position `after` and before
        `upto`, in commit order, each transaction followed by its `Commit`; last, a `Commit`
        with no changes when the log read reaches past the last transaction's (other tables'
        changes, which the task's position may pass too). A reader that follows the table's
        columns as they change sends a `Reshape` where they changed; one that does not stops
        there with a TerminalError."""
        ...

    def confirm(self, position: str) -> None:
        """Tell the source the log up to `position` was applied (it may recycle it)."""
        ...

    def lag(self, seconds: bool = False, position: str | None = None) -> Lag:
        """The task's lag now; with `seconds`, also how long ago the oldest change not yet
        applied committed (0 when none is pending; the source may have to decode to find it).
        `position` is the task's stored one, for a source that keeps none for the task
        (MariaDB's binlog); a slot's source knows its own."""
        ...

    def drop(self) -> list[str]:
        """Drop the slot and the publication; what was dropped, in words."""
        ...


class LogSource(Protocol):  # `log_changes`
    # whether the source keeps a slot (and a publication) per task, which holds its log until
    # dropped (PostgreSQL); False: nothing is kept for a task (MariaDB's binlog expires by the
    # server's own settings), so a deleted task only has its stored position forgotten
    log_slot: ClassVar[bool]

    def change_log(self, names: LogNames, table: str, columns: list[Column], keys: list[str]) -> ChangeLog:
        """The log reader of one task's table (`columns` as the source's read has them; none
        needed to `drop` it)."""
        ...


def log_names(namespace: str, job: str, task: str) -> LogNames:
    """A task's slot and publication, named from its job and task alone (so a run finds its own
    again, and `runner apply` knows what to drop when the task goes): `runner_<job>_<task>_<8
    hex of a hash of namespace/job/task>`, lower-case letters, digits and `_`, within
    PostgreSQL's 63 bytes. Slots are per server: two runner installations sharing a server and
    a job name would share a slot; give one of them another namespace."""
    digest = hashlib.sha256(f"{namespace}/{job}/{task}".encode()).hexdigest()[:8]

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")

    name = f"runner_{slug(job)[:24]}_{slug(task)[:20]}_{digest}"
    return LogNames(name, name)


def recorded_lag(task: str, pointer: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any] | None:
    """A cdc task's lag as its last run left it (`_report_lag`): the log the source kept for it
    then, its limit, whether it was past it, and the seconds since that run read up to the
    log's end (the target is at most that far behind, unless a run failed since)."""
    if not pointer or pointer.get("type") != POSITION or "checked_at" not in pointer:
        return None
    checked = dt.datetime.fromisoformat(pointer["checked_at"])
    retained, limit = int(pointer.get("retained_bytes", 0)), int(pointer.get("max_lag", 0))
    return {
        "task": task,
        "slot": pointer.get("slot"),
        "position": pointer.get("value"),
        "lag_bytes": int(pointer.get("lag_bytes", 0)),
        "retained_bytes": retained,
        "max_lag": limit,
        "over_max_lag": bool(limit) and retained > limit,
        "checked_at": pointer["checked_at"],
        "seconds_since": max(0.0, round((now - checked).total_seconds(), 1)),
    }

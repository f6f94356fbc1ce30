"""Exceptions shared by every layer.

One base class, `RunnerError`; the CLI turns any of them into a message and an exit code.
Messages never carry secret values: connection errors pass through `secrets.redact` first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """Where a value came from: a file, its line and column (1-based), and the field path."""

    file: str
    line: int = 0
    col: int = 0
    field: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}:{self.col}" if self.col else f":{self.line}"
        return f"{where}: {self.field}" if self.field else where


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the definitions, with where it is and, optionally, how to fix it."""

    location: Location
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        loc = self.location
        return {
            "file": loc.file,
            "line": loc.line,
            "col": loc.col,
            "field": loc.field,
            "message": self.message,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class MissingName(Problem):
    """A reference to a connection or job that no definition read states. When a file could
    not be read whole (a YAML syntax error), the name may well be in it: validation then
    leaves these out rather than burying the syntax error under them."""


class RunnerError(Exception):
    """Base class of every error runner raises on purpose."""

    exit_code = 1


# --- definitions -------------------------------------------------------------------------


class DefinitionsInvalid(RunnerError):
    """The definitions folder has problems; `problems` lists all of them, not only the first."""

    def __init__(self, problems: list[Problem], warnings: list[Problem] | None = None):
        self.problems = sorted(problems, key=lambda p: p.location)
        self.warnings = sorted(warnings or [], key=lambda p: p.location)  # shown beside the problems
        super().__init__(f"{len(self.problems)} problem(s) in the definitions")


class InvalidValue(RunnerError):
    """A value a command or request gives is invalid (a pointer that does not parse, say);
    `field` names the value (the API answers 422 with it)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


class Unreviewed(InvalidValue):
    """A change through the API that would apply, without a review, what only a reviewed
    definition may hold (a job's events and notifications); the API answers 403 with `field`."""


# --- state and apply ---------------------------------------------------------------------


class StateError(RunnerError):
    """The state store cannot be opened or is at a version this runner does not know."""


class StateUnavailable(StateError):
    """The state store is missing, deleted, replaced or unreadable: nothing that needs it can go on."""


class StoreMissing(StateUnavailable):
    """No state store where one was expected (creating one was not allowed there)."""


class StoreOutdated(StateError):
    """The state store is at an older schema version: only a writer, which migrates it, may
    open it (a `StateReader` never migrates)."""


class HistoryUnwritable(RunnerError):
    """The history folder cannot be written (full, read-only): a run could not record itself."""


class LockTimeout(RunnerError):
    """Another process holds the lock past the wait; says who and how to release a stale one."""


class StaleState(RunnerError):
    """A saved plan was made against a state that has changed since."""


class NotFound(RunnerError):
    """A named object (job, connection, run) is not in the applied state."""


class WriteBackRefused(RunnerError):
    """A change to the definitions cannot be written back to git now: the folder is not a git
    work tree, the file has uncommitted changes, or a commit moved the branch meanwhile.
    Nothing was written or committed."""


# --- runs --------------------------------------------------------------------------------


class TransientError(RunnerError):
    """A failure that may pass by itself (connection refused, deadlock); a retry may succeed."""


class TerminalError(RunnerError):
    """A failure that a retry will not fix (bad SQL, missing table, bad data)."""


class JobBusy(RunnerError):
    """The job is already running in another process; a job never runs twice at once."""


class RunStarted(RunnerError):
    """A run request delivered again (a worker killed, a broker's redelivery) whose run already
    started: it is not run twice; a run cut short is run again by the daemon, not the broker."""


class Cancelled(RunnerError):
    """A run was asked to stop (cancel, timeout, shutdown); raised at a batch boundary."""


class NotRunning(RunnerError):
    """Asked to cancel a job that is not running."""


class NameTaken(RunnerError):
    """An ad-hoc run asked for the name of an applied job."""

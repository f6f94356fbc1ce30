"""History files: `<history>/<namespace>/<job>/<run-id>.json`, one per run.

A file is written when the run starts (status `running`) and rewritten when it ends, always
atomically (write a temporary file, fsync, rename), so a reader never sees half a file and a
killed run leaves a record that says it never finished.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from runner.definitions import secrets
from runner.errors import HistoryUnwritable

RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,63}")  # what `new_run_id` makes, with room


def new_run_id(now: dt.datetime | None = None) -> str:
    """Sortable by start time, to the millisecond (runs follow each other closely under the
    daemon: a retry, a trigger): `20261123T013405.042-3fa9c1`."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%S}.{now.microsecond // 1000:03d}-{os.urandom(3).hex()}"


def run_path(root: Path, namespace: str, job: str, run_id: str) -> Path:
    return root / namespace / job / f"{run_id}.json"


def log_path(root: Path, namespace: str, job: str, run_id: str) -> Path:
    return root / namespace / job / f"{run_id}.log.jsonl"


def pointer_log_path(root: Path, namespace: str, job: str) -> Path:
    """Pointers set by hand are logged beside the job's runs."""
    return root / namespace / job / "pointers.log.jsonl"


MIN_FREE = 1 << 20  # bytes free in the history folder before a run (or the daemon) starts
RESERVE = 32 << 10  # bytes set aside per run, so its final record fits on a disk it filled


def check_space(folder: Path) -> None:
    """Refuse to start a run (or the daemon) where its record and log may not fit.

    Raises:
        HistoryUnwritable: less than `MIN_FREE` bytes are free, or the folder is unusable.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stat = os.statvfs(folder)
    except OSError as exc:
        raise HistoryUnwritable(f"the history folder {folder} is not writable: {exc.strerror}") from None
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_FREE:
        raise HistoryUnwritable(
            f"the history folder {folder} has {free // 1024} KB free; a run needs at least "
            f"{MIN_FREE // 1024} KB for its record and log: free some space"
        )


def make_folder(folder: Path) -> bool:
    """Make a job's history folder; True when this call made it (the job's first run). One
    system call where the folder is there, as it is for every run but a job's first."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        return False
    except FileNotFoundError:  # its namespace's folder too
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(folder)
        except FileExistsError:
            return False
    return True


def reserve(path: Path) -> Path:
    """Set `RESERVE` bytes aside beside a run's record (written, not sparse), to be released
    just before the final record is written: a run that fills the disk still records how it
    ended and what it committed."""
    spare = path.with_name(f".{path.name}.reserve")
    try:
        with spare.open("wb") as f:
            f.write(b"\0" * RESERVE)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        spare.unlink(missing_ok=True)
        raise
    return spare


LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


class RunLog:
    """A run's log: one JSON object per line (`ts`, `level`, `message`, fields), appended and
    flushed line by line so a killed run keeps what it logged. Secret values are redacted.
    A line that cannot be written (a full disk) never stops the run: `error` says what was
    lost, for the run's record.

    The file keeps lines at `level` or above (the job's `log_level`), and whatever the level
    the lines whose message is in `always`: those the history reads back (a task's counts after
    each commit) and those an error needs (its traceback). `echo` gets every line as before."""

    def __init__(
        self,
        path: Path,
        echo: Callable[[dict[str, Any]], None] | None = None,
        level: str = "debug",
        always: tuple[str, ...] = (),
        folder_made: bool = False,
    ):
        """`folder_made`: the caller made the file's folder already (`make_folder`)."""
        self.path = path
        self.echo = echo  # e.g. the CLI printing each line as it is logged
        self.error: str | None = None
        self.lowest = LEVELS[level]
        self.always = frozenset(always)
        if not folder_made:
            path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, level: str, message: str, **fields: Any) -> None:
        entry = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "level": level,
            "message": message,
            **{k: v for k, v in fields.items() if v is not None},
        }
        line = secrets.redact(json.dumps(entry, ensure_ascii=False, default=str))
        if LEVELS.get(level, 3) >= self.lowest or message in self.always:
            try:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
            except OSError as exc:
                self.error = self.error or f"the run log is incomplete: {exc.strerror}"
        if self.echo and level != "debug":
            self.echo(json.loads(line))


def _find(root: Path, run_id: str, suffix: str) -> Path | None:
    """A run's file by id, in whichever namespace and job folder it is; never outside `root`."""
    if not RUN_ID.fullmatch(run_id):  # not one runner made: no file to look for (nor a name too long)
        return None
    matches = sorted(root.glob(f"*/*/{glob_escape(run_id)}{suffix}"))
    return matches[0] if matches else None


def find_log(root: Path, run_id: str) -> Path | None:
    return _find(root, run_id, ".log.jsonl")


def read_log(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"level": "warning", "message": f"unreadable log line: {line[:200]}"})
    return entries


def committed_counts(log: Path, marker: str) -> dict[str, dict[str, int]]:
    """Task -> its counts on the last `marker` line of a run log: what the target had
    committed when the run was cut (the log is appended line by line, the record only when a
    task ends)."""
    counts: dict[str, dict[str, int]] = {}
    try:
        entries = read_log(log)
    except OSError:
        return counts
    for entry in entries:
        if entry.get("message") == marker and isinstance(entry.get("task"), str):
            fields = ("rows_read", "inserted", "updated", "upserted", "deleted", "filtered")
            counts[entry["task"]] = {k: int(entry.get(k) or 0) for k in fields}
    return counts


def logged_lists(log: Path, marker: str, fields: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Task -> the `fields` of each of its `marker` lines in a run log, in order: what a run
    cut short had done step by step (a backfill's windows)."""
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        entries = read_log(log)
    except OSError:
        return found
    for entry in entries:
        if entry.get("message") == marker and isinstance(entry.get("task"), str):
            found.setdefault(entry["task"], []).append({k: entry.get(k) for k in fields})
    return found


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def iter_runs(root: Path, namespace: str, job: str) -> Iterator[dict[str, Any]]:
    """The job's runs, newest first, read one at a time; unreadable files are skipped. Every
    file is listed: listings go through the state store's index instead (`services.job_runs`)."""
    folder = root / namespace / job
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json"), reverse=True):
        try:
            yield read_run(path)
        except (OSError, ValueError):
            continue


def read_run(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    data["path"] = str(path)
    return data


def find_run(root: Path, run_id: str) -> Path | None:
    return _find(root, run_id, ".json")

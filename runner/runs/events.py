"""A job's events (`spec.events`): SQL statements on its source or target, or commands, run
before its tasks and after them.

A before-event that fails (an error, a non-zero exit, a timeout) stops the run: the run
fails with that reason and no task runs. An after-event sees how the run ended (`when`, and
the run's facts in a command's environment); one that fails is logged as an error and listed
in the history's `events`, and the run's status stays what its tasks made it (the data is
committed by then: a failed clean-up does not make a succeeded copy a failed one).

A command runs without a shell, in the definitions folder, with an environment of its own:
the run's facts (`RUNNER_*`), PATH, HOME and the locale, never the runner's other variables
(a `${env:}` secret is one). Its output (stdout and stderr together) goes to the run log, the
last `OUTPUT_LIMIT` bytes of it. Dry and limited runs run no event: an event may change data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from runner.changes.task import Log
from runner.connectors import registry
from runner.definitions.events import COMMAND_TIMEOUT, AfterEvent, Event
from runner.definitions.jobs import JobSpec
from runner.definitions.models import seconds
from runner.errors import RunnerError
from runner.history.records import EventRecord, Failure, RunRecord
from runner.jobs.sync import failure_class
from runner.streams.cancel import CancelToken

POLL = 0.2  # seconds between looks at a running command's cancel token
OUTPUT_LIMIT = 64 << 10  # bytes of a command's output the run log keeps (the last ones)
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")  # from the runner's environment


Ends = dict[str, tuple[str, dict[str, Any]]]  # `source`/`target` -> (connection ref, applied spec)


def run_before(
    spec: JobSpec,
    ends: Ends,
    base_dir: Path,
    record: RunRecord,
    tasks: list[str],
    log: Log,
    cancel: CancelToken | None = None,
) -> tuple[str, Failure] | None:
    """Run the job's before-events in order, listing each in `record["events"]`; when one
    failed, the reason the run stops and its failure class (a timeout or a lost connection is
    transient: the daemon's `retry` tries again), else None. A command is stopped when the run
    is cancelled or its job's `timeout` passes (`cancel`)."""
    events = spec.events.before if spec.events else []
    for i, event in enumerate(events):
        if _skipped_in_a_dry_run(record, "before", i, event, log):
            continue
        result = _run(event, "before", i, ends, base_dir, record, tasks, log, cancel)
        if result["status"] == "failed":
            reason = f"before-event {i + 1} ({result['what']}) failed: {result.get('error')}"
            return reason, result.get("failure") or "terminal"
    return None


def run_after(
    spec: JobSpec, ends: Ends, base_dir: Path, record: RunRecord, tasks: list[str], log: Log
) -> None:
    """Run the after-events whose `when` matches the run's status (in `record`), each even when
    one before it failed; failures are logged and listed, the run's status stays."""
    events = spec.events.after if spec.events else []
    for i, event in enumerate(events):
        if event.when != "finished" and record.get("status") != event.when:
            continue
        if not _skipped_in_a_dry_run(record, "after", i, event, log):
            _run(event, "after", i, ends, base_dir, record, tasks, log)


def _skipped_in_a_dry_run(record: RunRecord, phase: str, i: int, event: Event, log: Log) -> bool:
    if record.get("mode", "normal") == "normal":
        return False
    log("info", f"{phase}-event not run: a {record.get('mode')} run runs no events", event=event.what)
    record.setdefault("events", []).append(
        {"phase": phase, "index": i, "what": event.what, "status": "skipped"}  # type: ignore[typeddict-item]
    )
    return True


def _run(
    event: Event | AfterEvent,
    phase: str,
    i: int,
    ends: Ends,
    base_dir: Path,
    record: RunRecord,
    tasks: list[str],
    log: Log,
    cancel: CancelToken | None = None,
) -> EventRecord:
    result: EventRecord = {"phase": phase, "index": i, "what": event.what, "status": "succeeded"}
    log("info", f"{phase}-event started", event=event.what, index=i)
    started = time.perf_counter()
    try:
        if event.command is not None:
            result |= _command(event, facts(record, phase, tasks), base_dir, log, cancel)
        else:
            result["rows_affected"] = _statements(event, ends, base_dir, log)
    except RunnerError as exc:
        result |= {"status": "failed", "error": str(exc), "failure": failure_class(exc)}
    result["seconds"] = round(time.perf_counter() - started, 3)
    if result["status"] == "failed":
        log("error", f"{phase}-event failed: {result.get('error')}", event=event.what, index=i)
    else:
        log("info", f"{phase}-event succeeded", event=event.what, index=i, seconds=result["seconds"])
    record.setdefault("events", []).append(result)
    return result


def _statements(event: Event, ends: Ends, base_dir: Path, log: Log) -> list[int]:
    """Run an SQL event's statements on the job's source or target, in one transaction."""
    assert event.sql is not None and event.connection is not None
    connector = registry.open_connector(*ends[event.connection], base_dir)
    try:
        if not connector.capabilities.statements:
            raise RunnerError(
                f"the {event.connection} connection {ends[event.connection][0]!r} is of type "
                f"{connector.kind!r}, which cannot run SQL statements"
            )
        return connector.run_statements(event.sql, log)  # type: ignore[attr-defined]
    finally:
        connector.close()


def facts(record: RunRecord, phase: str, tasks: list[str]) -> dict[str, str]:
    """What a command's environment says of the run: never a secret (an error is redacted)."""
    env = {
        "RUNNER_PHASE": phase,
        "RUNNER_JOB": record["job"],
        "RUNNER_NAMESPACE": record["namespace"],
        "RUNNER_RUN_ID": record["run_id"],
        "RUNNER_TRIGGER": record.get("trigger", ""),
        "RUNNER_MODE": record.get("mode", "normal"),
        "RUNNER_SOURCE": record.get("source", ""),
        "RUNNER_TARGET": record.get("target", ""),
        "RUNNER_TASKS": ",".join(tasks),
    }
    if phase == "after":
        env |= {
            "RUNNER_STATUS": str(record.get("status", "")),
            "RUNNER_ROWS_READ": str(record.get("rows_read", 0)),
            "RUNNER_ROWS_WRITTEN": str(record.get("rows_written", 0)),
            "RUNNER_FAILED_TASKS": ",".join(record.get("failed_tasks", [])),
            "RUNNER_ERROR": record.get("error") or "",
        }
    return env


class _Tail:
    """The last `limit` bytes read from a stream, read to its end in a thread of its own."""

    def __init__(self, stream: IO[bytes], limit: int):
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.cut = False
        self.limit = limit
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: stream.read1(8192), b""):  # type: ignore[attr-defined]
            self.chunks.append(chunk)
            self.size += len(chunk)
            while self.size - len(self.chunks[0]) >= self.limit:
                self.size -= len(self.chunks.popleft())
                self.cut = True

    def text(self) -> str:
        self.thread.join(5)
        data = b"".join(self.chunks)
        if len(data) > self.limit:
            data, self.cut = data[-self.limit :], True
        return data.decode("utf-8", errors="replace")


def _command(
    event: Event, env: dict[str, str], cwd: Path, log: Log, cancel: CancelToken | None
) -> dict[str, Any]:
    """Run a command event; its exit code and, when it failed, why. It is stopped (with its
    process group) at its `timeout`, or when `cancel` is set."""
    assert event.command is not None
    limit = seconds(event.timeout) if event.timeout is not None else COMMAND_TIMEOUT
    env = {k: os.environ[k] for k in PASSED_ON if k in os.environ} | env
    try:
        process = subprocess.Popen(
            event.command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout stops its children too
        )
    except OSError as exc:
        raise RunnerError(f"cannot start {event.command[0]!r}: {exc.strerror}") from None
    assert process.stdout is not None
    tail = _Tail(process.stdout, OUTPUT_LIMIT)
    deadline = time.monotonic() + limit
    stopped: str | None = None  # why it was stopped, if it was
    try:
        while True:
            try:
                code = process.wait(max(min(POLL, deadline - time.monotonic()), 0))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    stopped = f"timed out after {limit:g} s (stopped)"
                elif cancel is not None and cancel.cancelled:
                    stopped = f"stopped: {cancel.reason}"
                else:
                    continue
            with suppress(ProcessLookupError):  # it ended meanwhile
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait()
            break
    finally:
        output = tail.text()
        process.stdout.close()
    failed = stopped is not None or code != 0
    if output:
        log(
            "error" if failed else "info",
            "event output",
            event=event.what,
            output=output,
            **({"output_cut": f"the last {OUTPUT_LIMIT // 1024} KiB"} if tail.cut else {}),
        )
    if stopped is not None:
        return {"status": "failed", "exit_code": None, "error": stopped, "failure": "transient"}
    if code != 0:
        return {
            "status": "failed",
            "exit_code": code,
            "error": f"exited with status {code}",
            "failure": "terminal",
        }
    return {"exit_code": 0}

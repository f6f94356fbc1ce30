"""The daemon's own log: one line per event on stderr, JSON when stderr is not a terminal
(for journald, Docker, a log shipper), `time level event key=value` on a terminal."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from collections import deque
from typing import Any, TextIO

from runner.definitions import secrets


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    return value


class DaemonLog:
    def __init__(self, stream: TextIO | None = None, as_json: bool | None = None):
        self.stream = stream or sys.stderr
        self.as_json = (not self.stream.isatty()) if as_json is None else as_json
        self._lock = threading.Lock()  # held by the thread writing
        self._pending: deque[str] = deque()  # lines not yet written, in order

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        fields = {k: _redacted(v) for k, v in fields.items() if v is not None}  # before any escaping
        if self.as_json:
            entry = {"ts": now.isoformat(timespec="milliseconds"), "level": level, "event": event, **fields}
            line = json.dumps(entry, ensure_ascii=False, default=str)
        else:
            pairs = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{now:%H:%M:%S} {level:<7} {event}" + (f"  {pairs}" if pairs else "")
        self._pending.append(line + "\n")
        self._write()

    def _write(self) -> None:
        """Write the lines pending, in order: a thread finding another writing leaves its line
        to it, rather than queue on the lock. Hundreds of runs starting at once (a cron slot)
        each log a line, and a line's write and flush hand the interpreter to the other runs:
        queued on the lock, the 500th run waited behind 499 such turns, one at a time. The
        writer looks again once it lets go, so no line is left behind."""
        while self._pending and self._lock.acquire(blocking=False):
            try:
                lines = []
                while self._pending:
                    lines.append(self._pending.popleft())
                self.stream.write("".join(lines))
                self.stream.flush()
            finally:
                self._lock.release()

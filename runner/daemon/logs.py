"""The daemon's own log: one line per event on stderr, JSON when stderr is not a terminal
(for journald, Docker, a log shipper), `time level event key=value` on a terminal."""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
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
        self._lock = threading.Lock()

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        now = dt.datetime.now(dt.UTC)
        fields = {k: _redacted(v) for k, v in fields.items() if v is not None}  # before any escaping
        if self.as_json:
            entry = {"ts": now.isoformat(timespec="milliseconds"), "level": level, "event": event, **fields}
            line = json.dumps(entry, ensure_ascii=False, default=str)
        else:
            pairs = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"{now:%H:%M:%S} {level:<7} {event}" + (f"  {pairs}" if pairs else "")
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

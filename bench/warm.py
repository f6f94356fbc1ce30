"""The daemon's warm path in the benchmark (issue 21): `runner daemon --http` started once on a
definitions folder, each run triggered through the API and timed from the request to its end.

`runner keys create bench --scope operate` makes the key; the daemon listens on a free loopback
port, its stdout and stderr in `daemon.log` of the folder. A run is `POST
/api/v1/jobs/{job}/runs`, then `GET /api/v1/runs/{id}` every 50 ms on one kept-alive connection
until the record's status is final (a GET costs the daemon ~2 ms, in the process that runs the
job: polling faster would slow the run it measures). Figures per run:

- `seconds`: from the request to the run's end, the record's `finished_at` minus the wall clock
  when the request was sent (same machine, same clock; microseconds);
- `api_seconds`: wall time from the request until the API said the run had ended (at most one
  polling interval later than `seconds`);
- `queue_s`: the record's `started_at` minus the request; `runner_seconds`: its own `seconds`;
- `rss_mb`: the daemon's peak resident set so far (`VmHWM`), one process serving every run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.05
FINAL = ("succeeded", "failed", "cancelled", "not_started")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class WarmDaemon:
    """Owns one daemon process (its own process group); `stop()` ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self, runner: Path, folder: Path, env: dict[str, str], run: Callable[..., Any], error: type[Exception]
    ) -> None:
        self.runner, self.folder, self.env, self.run, self.error = runner, folder, env, run, error
        self.proc: subprocess.Popen[bytes] | None = None
        self.conn: http.client.HTTPConnection | None = None
        self.port = 0
        self.key = ""

    def start(self, timeout: float = 60) -> None:
        created = self.run(
            [str(self.runner), "--dir", str(self.folder), "keys", "create", "bench", "--scope", "operate"],
            what="runner keys create",
        )
        self.key = created.stdout.strip().splitlines()[-1]
        self.port = free_port()
        log = (self.folder / "daemon.log").open("wb")
        cmd = [str(self.runner), "--dir", str(self.folder), "daemon", "--http", f"127.0.0.1:{self.port}"]
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise self.error(f"runner daemon exited ({self.proc.returncode}):\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/api/v1/status")[0] == 200:
                    return
            if time.monotonic() > deadline:
                raise self.error(f"runner daemon did not answer within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 15) -> str:
        text = (self.folder / "daemon.log").read_text(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, fresh: bool = False
    ) -> tuple[int, Any]:
        """One request on the kept-alive connection (`fresh`: on a new one, as the server closes
        idle ones after a few seconds and a POST is not sent twice)."""
        if fresh and self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        try:
            payload = json.dumps(body or {}) if method == "POST" else None
            self.conn.request(method, path, body=payload, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        return resp.status, json.loads(data) if data else None

    def trigger(self, job: str) -> dict[str, Any]:
        """Start a run of `job` through the API and wait for its end; its figures and record."""
        wall = time.time()
        t0 = time.perf_counter()
        status, body = self.request("POST", f"/api/v1/jobs/{job}/runs", {}, fresh=True)
        if status != 202:
            raise self.error(f"POST /api/v1/jobs/{job}/runs answered {status}: {body}")
        run_id = body["run_id"]
        deadline = t0 + 3600
        while True:
            status, record = self.request("GET", f"/api/v1/runs/{run_id}")
            if status == 200 and record.get("status") in FINAL:
                break
            if time.perf_counter() > deadline:
                raise self.error(f"run {run_id} of {job} did not end within an hour")
            time.sleep(POLL_SECONDS)
        api_seconds = time.perf_counter() - t0
        if record["status"] != "succeeded":
            tasks = record.get("tasks", [])
            errors = [f"task {t.get('name')}: {t.get('error')}" for t in tasks if t.get("error")]
            raise self.error(f"run {run_id} of {job} {record['status']}: {record.get('error')} {errors}")
        task = record["tasks"][0]
        return {
            "seconds": round(epoch(record["finished_at"]) - wall, 3),
            "api_seconds": round(api_seconds, 3),
            "queue_s": round(epoch(record["started_at"]) - wall, 3),
            "runner_seconds": record.get("seconds"),
            "rss_mb": self.peak_rss_mb(),
            "run_id": run_id,
            "rows_read": record.get("rows_read"),
            "rows_written": record.get("rows_written"),
            **{k: task.get(k) for k in ("inserted", "updated", "upserted", "deleted", "unchanged")},
            "read_seconds": task.get("read_seconds"),
            "write_seconds": task.get("write_seconds"),
        }

    def peak_rss_mb(self) -> float | None:
        """The daemon's peak resident set (VmHWM of its process) in MB."""
        with contextlib.suppress(OSError, AttributeError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():  # type: ignore[union-attr]
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        return None

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

"""The daemon's log lines: JSON or text, and never a secret, whatever characters it holds."""

from __future__ import annotations

import io
import json
import threading
import time

from runner.daemon.logs import DaemonLog
from runner.definitions import secrets


def test_secrets_are_redacted_before_json_escapes_them(tmp_path):
    value = 'pa"ss\\w0rd-ÿ'  # a quote and a backslash: JSON writes them escaped
    (tmp_path / "pw").write_text(value)
    secrets.resolve("${file:pw}", tmp_path)  # resolved once, as a run opening its connection does
    for as_json in (True, False):
        out = io.StringIO()
        DaemonLog(out, as_json=as_json)(
            "error",
            "run failed",
            error=f"login failed for {value}",
            changed=[f"x {value}"],
            nested={"k": value},
        )
        text = out.getvalue()
        assert "w0rd" not in text and text.count("***") == 3
        if as_json:
            line = json.loads(text)
            assert line["error"] == "login failed for ***" and line["changed"] == ["x ***"]
            assert line["level"] == "error" and line["event"] == "run failed"
        else:
            assert "error   run failed  error=login failed for ***" in text


class _SlowStream(io.StringIO):
    """A stream whose first write waits until told, as a write to a busy disk or pipe does."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.go = threading.Event(), threading.Event()

    def write(self, text: str) -> int:
        if not self.entered.is_set():
            self.entered.set()
            self.go.wait(10)
        return super().write(text)


def test_a_line_logged_while_another_thread_writes_is_written_by_that_thread_in_order():
    out = _SlowStream()
    log = DaemonLog(out, as_json=True)
    first = threading.Thread(target=log, args=("info", "first"))
    first.start()
    assert out.entered.wait(10)
    begun = time.monotonic()
    log("info", "second")  # returns at once: the writing thread takes it
    log("info", "third")
    assert time.monotonic() - begun < 5  # never queued on the lock behind the slow write
    out.go.set()
    first.join(10)
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["first", "second", "third"]


def test_many_threads_logging_at_once_lose_and_split_no_line():
    out = io.StringIO()
    log = DaemonLog(out, as_json=True)

    def lines(n: int) -> None:
        for i in range(50):
            log("info", "run started", job=f"j{n}", i=i)

    threads = [threading.Thread(target=lines, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    logged = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(logged) == 20 * 50
    for n in range(20):  # each thread's lines in its own order
        assert [e["i"] for e in logged if e["job"] == f"j{n}"] == list(range(50))

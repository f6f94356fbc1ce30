"""The daemon's log lines: JSON or text, and never a secret, whatever characters it holds."""

from __future__ import annotations

import io
import json

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

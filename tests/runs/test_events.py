"""Events before and after a run (`spec.events`): SQL on the job's source or target, commands
with the run's facts in their environment, what a failing one does, and dry runs."""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
import threading

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.changes.task import RunOptions
from runner.cli.app import app
from runner.errors import DefinitionsInvalid
from runner.history import files as history
from runner.streams.cancel import CancelToken

PY = sys.executable


def _seed(path, rows: int = 5) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(rows)])
    db.commit()
    db.close()


def _job(project, events: str, target_url: str = "sqlite:///dst.db", extra: str = "") -> None:
    _seed(project.root / "src.db")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", target_url.split(":")[0].split("+")[0], target_url)
    project.job(
        "copy",
        "src",
        "dst",
        "- {name: items, read: {table: items}, write: {table: items, keys: [id]}}",
        extra="  events:\n" + textwrap.indent(textwrap.dedent(events).strip("\n"), "    ") + "\n" + extra,
    )
    services.apply(project.ws)


def _log(project, record) -> list[dict]:
    return history.read_log(history.find_log(project.ws.history, record["run_id"]))


def _script(project, name: str, body: str) -> str:
    path = project.root / name
    path.write_text(textwrap.dedent(body))
    return name


def test_sql_events_run_on_the_target_before_and_after_the_tasks(project):
    _job(
        project,
        """
        before:
          - connection: target
            sql:
              - CREATE TABLE IF NOT EXISTS audit (what TEXT, n INTEGER)
              - INSERT INTO audit VALUES ('before', (SELECT count(*) FROM sqlite_master WHERE name = 'items'))
        after:
          - connection: target
            sql: "INSERT INTO audit SELECT 'after', count(*) FROM items"
          - {connection: source, sql: "DELETE FROM items WHERE id < 2", when: succeeded}
          - {connection: source, sql: "DELETE FROM items", when: failed}
        """,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    with sqlite3.connect(project.root / "dst.db") as db:
        assert db.execute("SELECT what, n FROM audit ORDER BY what DESC").fetchall() == [
            ("before", 0),  # before the task created the table
            ("after", 5),
        ]
    with sqlite3.connect(project.root / "src.db") as db:
        assert db.execute("SELECT count(*) FROM items").fetchone() == (3,)  # `when: failed` did not run
    events = [
        (e["phase"], e["index"], e["what"], e["status"], e.get("rows_affected")) for e in record["events"]
    ]
    assert events == [
        ("before", 0, "sql on target", "succeeded", [-1, 1]),
        ("after", 0, "sql on target", "succeeded", [1]),
        ("after", 1, "sql on source", "succeeded", [2]),
    ]
    on_disk = json.loads(
        project.ws.history.joinpath("default", "copy", f"{record['run_id']}.json").read_text()
    )
    assert on_disk["events"] == record["events"]
    log = _log(project, record)
    statements = [e["sql"] for e in log if e["message"] == "event statement"]
    assert statements[1].startswith("INSERT INTO audit VALUES ('before'")
    assert [e["rows_affected"] for e in log if e["message"] == "event statement done"] == [-1, 1, 1, 2]
    messages = [e["message"] for e in log]
    assert messages.index("before-event succeeded") < messages.index("task started")
    assert messages.index("task succeeded") < messages.index("after-event started")


@pytest.mark.parametrize("server", ["postgresql", "mariadb"])
def test_sql_events_run_on_server_targets(project, server, request):
    url = request.getfixturevalue("pg_url" if server == "postgresql" else "maria_url")
    _job(
        project,
        """
        before:
          - connection: target
            sql: ["CREATE TABLE marks (what VARCHAR(20))", "INSERT INTO marks VALUES ('a'), ('b')"]
        after:
          - {connection: target, sql: "UPDATE marks SET what = 'done'"}
        """,
        target_url=url,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded", record["error"]
    assert [e.get("rows_affected") for e in record["events"]] == [
        [-1 if server == "postgresql" else 0, 2],
        [2],
    ]
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT what FROM marks").fetchall() == [("done",), ("done",)]
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 5
    engine.dispose()


FACTS = """
import json, os, sys
with open(sys.argv[1], "a") as f:
    print(json.dumps(dict(os.environ)), file=f)
print("hello from", os.environ["RUNNER_PHASE"])
sys.exit(int(sys.argv[2]))
"""


def test_commands_get_the_runs_facts_and_no_secret(project, monkeypatch):
    monkeypatch.setenv("DST_TOKEN", "s3cr3t-token-value")
    monkeypatch.setenv("UNRELATED", "x")
    _script(project, "facts.py", FACTS)
    _job(
        project,
        f"""
        before:
          - command: ["{PY}", facts.py, env.jsonl, "0"]
        after:
          - command: ["{PY}", facts.py, env.jsonl, "0"]
            timeout: 30s
        """,
        target_url="sqlite:///${env:DST_TOKEN}.db",
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    before, after = [json.loads(line) for line in (project.root / "env.jsonl").read_text().splitlines()]
    assert before["RUNNER_JOB"] == "copy" and before["RUNNER_NAMESPACE"] == "default"
    assert before["RUNNER_RUN_ID"] == record["run_id"] and before["RUNNER_TASKS"] == "items"
    assert before["RUNNER_PHASE"] == "before" and "RUNNER_STATUS" not in before
    assert (after["RUNNER_STATUS"], after["RUNNER_ROWS_READ"], after["RUNNER_ROWS_WRITTEN"]) == (
        "succeeded",
        "5",
        "5",
    )
    for env in (before, after):
        assert "DST_TOKEN" not in env and "UNRELATED" not in env and "PATH" in env
        assert "s3cr3t-token-value" not in json.dumps(env)
    outputs = [e for e in _log(project, record) if e["message"] == "event output"]
    assert [(e["level"], e["output"]) for e in outputs] == [
        ("info", "hello from before\n"),
        ("info", "hello from after\n"),
    ]
    assert [(e["status"], e["exit_code"]) for e in record["events"]] == [("succeeded", 0), ("succeeded", 0)]


def test_a_failing_before_event_stops_the_run_before_any_task(project):
    _script(project, "facts.py", FACTS)
    _job(
        project,
        f"""
        before:
          - command: ["{PY}", facts.py, env.jsonl, "3"]
          - {{connection: target, sql: "CREATE TABLE never (x INTEGER)"}}
        after:
          - {{command: ["{PY}", facts.py, env.jsonl, "0"], when: failed}}
          - {{command: ["{PY}", facts.py, env.jsonl, "0"], when: succeeded}}
        """,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed" and record["failure"] == "terminal"
    assert record["error"] == "before-event 1 (command " + PY + ") failed: exited with status 3"
    assert record["tasks"] == [] and record["rows_written"] == 0
    assert [(e["phase"], e["index"], e["status"]) for e in record["events"]] == [
        ("before", 0, "failed"),
        ("after", 0, "succeeded"),
    ]
    assert not (project.root / "dst.db").exists()  # no task, and not the second before-event
    after = json.loads((project.root / "env.jsonl").read_text().splitlines()[1])
    assert after["RUNNER_STATUS"] == "failed" and after["RUNNER_ERROR"] == record["error"]
    log = _log(project, record)
    (failed,) = [e for e in log if e["message"].startswith("before-event failed")]
    assert failed["level"] == "error" and "exited with status 3" in failed["message"]
    assert any(e["message"] == "event output" and e["level"] == "error" for e in log)
    assert not any(e["message"] == "task started" for e in log)
    # and `runner run` says why
    result = CliRunner().invoke(app, ["--dir", str(project.root), "run", "copy"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:4] == [
        f"  before-event 1 (command {PY}): failed: exited with status 3",
        f"  error: before-event 1 (command {PY}) failed: exited with status 3",
        f"  after-event 1 (command {PY}): succeeded",
    ]


def test_a_before_event_that_times_out_is_stopped_and_fails_the_run(project):
    _script(project, "slow.py", "import time\nprint('waiting', flush=True)\ntime.sleep(60)\n")
    _job(project, f"""before: [{{command: ["{PY}", slow.py], timeout: 1}}]""")
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed" and record["failure"] == "transient"
    assert record["error"].endswith("failed: timed out after 1 s (stopped)")
    assert record["seconds"] < 10 and record["events"][0]["exit_code"] is None
    assert [e["output"] for e in _log(project, record) if e["message"] == "event output"] == ["waiting\n"]


def test_a_failing_after_event_is_listed_and_the_run_keeps_its_status(project):
    _job(
        project,
        f"""
        after:
          - {{connection: target, sql: "UPDATE no_such_table SET x = 1"}}
          - command: ["{PY}", -c, "import sys; sys.exit(2)"]
          - command: [no-such-program-here]
          - {{connection: target, sql: "CREATE TABLE ran (x INTEGER)"}}
        """,
    )
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded" and record["error"] is None and record["rows_written"] == 5
    assert [(e["status"], e.get("error", "")[:40]) for e in record["events"]] == [
        ("failed", "running an event's SQL (connection 'defa"),
        ("failed", "exited with status 2"),
        ("failed", "cannot start 'no-such-program-here': No "),
        ("succeeded", ""),
    ]
    errors = [e["message"] for e in _log(project, record) if e["level"] == "error"]
    assert len(errors) == 3 and all(m.startswith("after-event failed") for m in errors)


def test_a_commands_output_in_the_log_is_its_last_64_kib(project):
    script = "import sys\nfor i in range(20000): print(f'line {i:05d}')\n"
    _job(project, f"""before: [{{command: ["{PY}", -c, "{script!s}"]}}]""".replace("\n", "\\n"))
    record = services.run(project.ws, "copy")
    assert record["status"] == "succeeded"
    (entry,) = [e for e in _log(project, record) if e["message"] == "event output"]
    assert len(entry["output"]) == 64 << 10 and entry["output"].endswith("line 19999\n")
    assert entry["output_cut"] == "the last 64 KiB"


def test_dry_and_limited_runs_run_no_events(project):
    _job(
        project,
        """
        before: [{connection: target, sql: "CREATE TABLE before_ran (x INTEGER)"}]
        after: [{connection: target, sql: "CREATE TABLE after_ran (x INTEGER)"}]
        """,
    )
    for options in ({"dry_run": True}, {"limit": 2}):
        record = services.run(project.ws, "copy", RunOptions(**options))
        assert record["status"] == "succeeded"
        assert [(e["phase"], e["status"]) for e in record["events"]] == [
            ("before", "skipped"),
            ("after", "skipped"),
        ]
    assert (
        not (project.root / "dst.db").exists()
        or sa.inspect(sa.create_engine(f"sqlite:///{project.root / 'dst.db'}")).get_table_names() == []
    )


@pytest.mark.parametrize(
    "field",
    [
        {"events": {"before": [{"command": ["touch", "pwned"]}]}},
        {"notify": [{"webhook": {"url": "http://127.0.0.1:9/", "headers": {"X": "${env:HOME}"}}}]},
    ],
)
def test_an_adhoc_run_takes_no_events_or_notifications(project, field):
    _job(project, "before: []")
    spec = {
        "source": "src",
        "target": "dst",
        "tasks": [{"name": "t", "read": {"table": "items"}, "write": {"table": "x"}}],
    }
    with pytest.raises(DefinitionsInvalid) as info:
        services.run_adhoc(project.ws, "once", spec | field)
    (problem,) = info.value.problems
    name = next(iter(field))
    assert problem.location.field == f"spec.{name}"
    assert problem.message.startswith(f"'{name}' is not accepted in an ad-hoc run")
    assert not (project.root / "pwned").exists()


def test_a_before_event_is_stopped_by_the_jobs_timeout_and_by_a_cancel(project):
    _script(project, "slow.py", "import time\ntime.sleep(60)\n")
    _job(project, f"""before: [{{command: ["{PY}", slow.py], timeout: 1h}}]""", extra="  timeout: 1\n")
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed" and record["seconds"] < 10
    assert record["error"].endswith("failed: stopped: timed out after 1.0")
    token = CancelToken()
    threading.Timer(0.5, token.cancel, ("cancelled by a test",)).start()
    record = services.run(project.ws, "copy", cancel=token)
    assert record["status"] == "cancelled" and record["failure"] is None and record["tasks"] == []
    assert record["events"][0]["error"] == "stopped: cancelled by a test"


def test_a_sync_all_job_has_events_and_a_log_level_too(project):
    _seed(project.root / "src.db")
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write(
        "jobs.d/all.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: all}
        spec:
          type: sync_all
          source: src
          target: dst
          table_prefix: raw_
          log_level: warning
          events:
            after: [{connection: target, sql: "CREATE TABLE copied AS SELECT count(*) AS n FROM raw_items"}]
        """,
    )
    services.apply(project.ws)
    record = services.run(project.ws, "all")
    assert record["status"] == "succeeded" and record["events"][0]["status"] == "succeeded"
    with sqlite3.connect(project.root / "dst.db") as db:
        assert db.execute("SELECT n FROM copied").fetchall() == [(5,)]
    assert [e for e in _log(project, record) if e["level"] == "info"] == []

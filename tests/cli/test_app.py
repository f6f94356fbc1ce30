"""The CLI through Typer's runner: exact lines and exit codes."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from tests.conftest import TASK
from tests.conftest import TWO_SQLITE as CONNS


@pytest.fixture
def cli(project, monkeypatch):
    monkeypatch.chdir(project.root)  # paths in messages are relative to the working directory
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["--dir", str(project.root), *args])

    return invoke


def test_validate_ok(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    result = cli("validate")
    assert result.exit_code == 0
    assert result.stdout.startswith("valid: 2 connection(s), 0 job(s)")


def test_validate_text_lists_every_problem_and_exits_1(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "nowhere", TASK, extra="  batch_size: 0\n")
    result = cli("validate")
    assert result.exit_code == 1
    assert (
        result.stderr.splitlines()
        == [
            "jobs.d/copy.yaml:6:3: spec.target: connection 'nowhere' does not exist "
            "(hint: define it in connections.d/ (looked in namespace 'default'))",
            "jobs.d/copy.yaml:7:3: spec.batch_size: Input should be greater than or equal to 1",
            "2 problems found",
        ]
        or "batch_size" in result.stderr
    )


def test_validate_github_annotations(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", TASK, extra="  batch_size: x\n")
    result = cli("validate", "--format", "github")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "::error file=jobs.d/copy.yaml,line=7,col=3::spec.batch_size: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_validate_json(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", TASK, extra="  bogus: 1\n")
    result = cli("validate", "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert data["problems"] == [
        {
            "file": "jobs.d/copy.yaml",
            "line": 7,
            "col": 3,
            "field": "spec.bogus",
            "message": "unknown field 'bogus'",
            "hint": (
                "known fields: type, source, target, schedule, after, retry, timeout, "
                "events, notify, log_level, batch_size, on_error, tasks, parallel, continuous, "
                "schema_changes, drop_columns, truncate_strings, "
                "schema, table_prefix, before_run, read, changes, change_log"
            ),
        }
    ]


def test_plan_detailed_exitcode(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    first = cli("plan", "--detailed-exitcode")
    assert first.exit_code == 2
    assert first.stdout.splitlines()[:4] == [
        "Plan: 2 to create, 0 to update, 0 to delete, 0 unchanged.",
        "",
        "  + Connection default/dst    (connections.d/c.yaml:6)",
        "  + Connection default/src    (connections.d/c.yaml:1)",
    ]
    assert cli("apply").exit_code == 0
    again = cli("plan", "--detailed-exitcode")
    assert again.exit_code == 0
    assert again.stdout.strip() == "No changes. The applied state matches the definitions (2 objects)."
    project.write("jobs.d/bad.yaml", "nope: [")
    assert cli("plan", "--detailed-exitcode").exit_code == 1


def test_plan_text_shows_old_and_new(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", TASK)
    assert cli("apply").exit_code == 0
    project.job("copy", "src", "src", TASK, extra="  batch_size: 5\n")
    result = cli("plan")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "Plan: 0 to create, 1 to update, 0 to delete, 2 unchanged.",
        "",
        "  ~ Job default/copy    (jobs.d/copy.yaml:1)",
        '      ~ spec.target: "dst" → "src"',
        "      + spec.batch_size: 5",
    ]


def test_plan_out_and_apply_file(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    assert cli("plan", "-out", "saved.plan").exit_code == 0
    result = cli("apply", "saved.plan")
    assert result.exit_code == 0 and "Applied as revision 1." in result.stdout
    stale = cli("apply", "saved.plan")
    assert stale.exit_code == 1
    assert stale.stderr.startswith("error: the state changed since the plan was made")


def test_plan_json(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    data = json.loads(cli("plan", "--format", "json").stdout)
    assert [c["action"] for c in data["changes"]] == ["create", "create"]


def test_get_and_describe(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job(
        "copy", "src", "dst", TASK, extra='  schedule: {cron: "0 3 * * *", timezone: Europe/Berlin}\n'
    )
    assert cli("apply").exit_code == 0
    jobs = json.loads(cli("get", "jobs", "--format", "json").stdout)
    assert [(j["namespace"], j["name"], j["revision"], j["file"]) for j in jobs] == [
        ("default", "copy", 1, "jobs.d/copy.yaml")
    ]
    table = cli("get", "connections").stdout
    assert "src" in table and "sqlite" in table
    info = json.loads(cli("describe", "job", "copy", "--format", "json").stdout)
    assert info["revision"]["id"] == 1 and info["file"] == "jobs.d/copy.yaml"
    assert len(info["next_runs"]) == 3 and all(t.endswith(("+01:00", "+02:00")) for t in info["next_runs"])
    assert "03:00:00" in info["next_runs"][0]
    text = cli("describe", "job", "default/copy").stdout
    assert "defined at:  jobs.d/copy.yaml:1" in text
    missing = cli("describe", "job", "nope")
    assert missing.exit_code == 1 and "no job 'nope' in the applied state" in missing.stderr


def test_force_unlock_cli(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    from runner.state import locks
    from runner.state.store import StateStore

    store = StateStore(f"sqlite:///{project.root / '.runner' / 'state.db'}")
    lock_id = store.locks.acquire(locks.APPLY, timeout=0)
    locked = cli("apply", "--lock-timeout", "0.2")
    assert locked.exit_code == 1 and f"runner force-unlock {lock_id}" in locked.stderr
    assert cli("force-unlock", "f" * 32).exit_code == 1
    released = cli("force-unlock", lock_id)
    assert released.exit_code == 0 and released.stdout.startswith("released the apply lock held by")
    assert cli("apply").exit_code == 0
    store.close()


def test_cron_firing_every_second_is_a_warning_and_describe_says_it_in_words(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", TASK, extra='  schedule: {cron: "5 * * * * *"}\n')
    result = cli("validate")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "jobs.d/copy.yaml:7:14: spec.schedule.cron: warning: '5 * * * * *' fires every second: the sixth "
        "field (seconds) is '*', so the job runs 60 times in each minute it matches (hint: write 0 as the "
        "sixth field to run once in that minute, or use 5 fields)"
    ]
    assert result.stdout.startswith("valid: 2 connection(s), 1 job(s)")
    data = json.loads(cli("validate", "--format", "json").stdout)
    assert data["valid"] is True and [w["field"] for w in data["warnings"]] == ["spec.schedule.cron"]
    github = cli("validate", "--format", "github")
    assert github.exit_code == 0
    assert github.stdout.startswith("::warning file=jobs.d/copy.yaml,line=7,col=14::spec.schedule.cron: ")
    project.job("other", "src", "nowhere", TASK, extra='  schedule: {cron: "0 3 * * * */1"}\n')
    invalid = cli("validate")  # warnings come with the problems too
    assert invalid.exit_code == 1
    assert "jobs.d/other.yaml:7:14: spec.schedule.cron: warning: '0 3 * * * */1' fires every second" in (
        invalid.stderr
    )
    assert "connection 'nowhere' does not exist" in invalid.stderr
    (project.root / "jobs.d" / "other.yaml").unlink()
    assert cli("apply").exit_code == 0
    info = json.loads(cli("describe", "job", "copy", "--format", "json").stdout)
    assert info["schedule"] == {
        "cron": "5 * * * * *",
        "timezone": "UTC",
        "in_words": "every second during minute 5 of every hour",
    }
    text = cli("describe", "job", "copy").stdout
    assert "  schedule:    5 * * * * * (UTC): every second during minute 5 of every hour" in text


def test_no_warning_for_a_cron_with_a_fixed_second(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", TASK, extra='  schedule: {cron: "5 * * * * 0"}\n')
    result = cli("validate")
    assert result.exit_code == 0 and result.stderr == ""


def test_dry_and_limited_runs_are_marked_as_such_and_a_dry_run_writes_nothing(cli, project):
    import sqlite3

    with sqlite3.connect(project.root / "src.db") as db:
        db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        db.executemany("INSERT INTO a VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 6)])
    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", "- {name: t, read: {table: a}, write: {table: b, keys: [id]}}")
    assert cli("apply").exit_code == 0

    dry = cli("run", "copy", "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    record = json.loads(dry.stdout)
    assert (record["mode"], record["rows_written"], record["rows_would_write"]) == ("dry-run", 0, 5)
    assert (record["tasks"][0]["rows_written"], record["tasks"][0]["rows_would_write"]) == (0, 5)
    assert (
        not (project.root / "dst.db").exists()
        or not sqlite3.connect(project.root / "dst.db")
        .execute("SELECT name FROM sqlite_master WHERE name = 'b'")
        .fetchall()
    )
    text = cli("run", "copy", "--dry-run").stdout
    assert "would be 5 inserted" in text and "dry run: nothing was written (it would write 5 rows)" in text

    history = cli("history", "copy").stdout
    assert "succeeded (dry run)" in history and "would 5" in history
    status = cli("status").stdout
    assert "succeeded (dry run)" in status and "would 5" in status
    assert json.loads(cli("status", "--format", "json").stdout)["jobs"][0]["last_run"]["mode"] == "dry-run"

    from runner import services

    # the API's history leaves dry runs out of "runs that changed something": they changed nothing
    assert services.runs(project.ws, "copy", changed_only=True) == []

    limited = json.loads(cli("run", "copy", "--limit", "2", "--format", "json").stdout)
    # a test run: always dry, so its rows are ones it would write
    assert (limited["mode"], limited["rows_written"], limited["rows_would_write"]) == ("limited", 0, 2)
    assert "succeeded (limited)" in cli("history", "copy").stdout
    real = json.loads(cli("run", "copy", "--format", "json").stdout)
    assert (real["mode"], real["rows_written"]) == ("normal", 5)
    assert [r["mode"] for r in json.loads(cli("history", "copy", "--format", "json").stdout)] == [
        "normal",
        "limited",
        "dry-run",
        "dry-run",
    ]


def test_a_dry_run_recorded_before_runs_had_a_mode_reads_as_one(cli, project):
    from runner import services
    from runner.history import files as history

    project.write("connections.d/c.yaml", CONNS)
    project.job("copy", "src", "dst", TASK)
    assert cli("apply").exit_code == 0
    old = {
        "run_id": "20260101T000000-old",
        "job": "copy",
        "namespace": "default",
        "options": {"dry_run": True},
        "status": "succeeded",
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:00:01+00:00",
        "rows_written": 7,
        "tasks": [
            {"name": "t", "status": "succeeded", "inserted": 7, "updated": 0, "deleted": 0, "rows_written": 7}
        ],
    }
    history.write_atomic(history.run_path(project.ws.history, "default", "copy", old["run_id"]), old)
    (record,) = services.runs(project.ws, "copy")
    assert (record["mode"], record["rows_written"], record["rows_would_write"]) == ("dry-run", 0, 7)
    assert services.runs(project.ws, "copy", task="t", changed_only=True) == []


def _sqlite_source(path, sql: str) -> None:
    db = sqlite3.connect(path)
    db.executescript(sql)
    db.commit()
    db.close()


def test_run_of_a_failed_watermark_task_prints_no_pointer_move(cli, project):
    """The task fails before reading: its pointer stays where it was, and the output must not
    say it went to none."""
    project.write("connections.d/c.yaml", CONNS)
    _sqlite_source(
        project.root / "src.db",
        "CREATE TABLE a (id INTEGER PRIMARY KEY, at TEXT); "
        "INSERT INTO a VALUES (1, '2026-01-01'), (2, '2026-01-02');",
    )
    task = (
        "- {name: t, read: {table: a}, write: {table: b, keys: [id]}, "
        "changes: {strategy: watermark, column: at}}"
    )
    project.job("copy", "src", "dst", task)
    assert cli("apply").exit_code == 0
    first = cli("run", "copy")
    assert first.exit_code == 0, first.output
    assert "pointer: none → 2026-01-02 (text)" in first.stdout
    _sqlite_source(project.root / "src.db", "ALTER TABLE a RENAME TO gone;")
    failed = cli("run", "copy")
    assert failed.exit_code == 1
    assert "task t (watermark): failed" in failed.stdout
    assert "pointer:" not in failed.stdout
    shown = json.loads(cli("pointer", "show", "copy", "--format", "json").stdout)
    assert [p["pointer"] for p in shown] == [{"type": "text", "value": "2026-01-02"}]


def test_run_of_a_script_task_prints_its_upserted_rows(cli, project):
    project.write("connections.d/c.yaml", CONNS)
    _sqlite_source(
        project.root / "src.db",
        "CREATE TABLE a (id INTEGER PRIMARY KEY); INSERT INTO a VALUES (1), (2), (3);",
    )
    _sqlite_source(project.root / "dst.db", "CREATE TABLE b (id INTEGER PRIMARY KEY);")
    script = "INSERT OR REPLACE INTO b (id) VALUES ({{ bind('id') }})"
    project.job(
        "copy",
        "src",
        "dst",
        f'- {{name: t, read: {{table: a}}, write: {{table: b, keys: [id], upsert_script: "{script}"}}}}',
    )
    assert cli("apply").exit_code == 0
    result = cli("run", "copy")
    assert result.exit_code == 0, result.output
    assert "task t (full): succeeded, 3 rows read → 3 upserted, 0 deleted, 0 unchanged in b" in result.stdout
    history = cli("history", "copy", "--task", "t")
    assert history.exit_code == 0, history.output
    lines = history.stdout.splitlines()
    header = next(line for line in lines if "┃ RUN" in line).split("┃")[1:-1]
    row = next(line for line in lines if "│ " in line).split("│")[1:-1]
    assert {h.strip(): c.strip() for h, c in zip(header, row, strict=True)}["±"] == "3"  # upserted

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
                "known fields: source, target, schedule, batch_size, on_error, tasks, parallel, after, "
                "retry, timeout"
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
    from runner.state.store import APPLY_LOCK, StateStore

    store = StateStore(f"sqlite:///{project.root / '.runner' / 'state.db'}")
    lock_id = store.acquire(APPLY_LOCK, timeout=0)
    locked = cli("apply", "--lock-timeout", "0.2")
    assert locked.exit_code == 1 and f"runner force-unlock {lock_id}" in locked.stderr
    assert cli("force-unlock", "f" * 32).exit_code == 1
    released = cli("force-unlock", lock_id)
    assert released.exit_code == 0 and released.stdout.startswith("released the apply lock held by")
    assert cli("apply").exit_code == 0
    store.close()


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

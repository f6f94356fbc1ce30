"""Start-up: a command loads only what it uses (bench/startup.py measures the time; these
tests keep the unused modules off the path, on the imports themselves, never on timings)."""

from __future__ import annotations

import inspect
import io
import json
import os
import sqlite3
import subprocess
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from runner import services
from runner.cli import app, common, definitions
from tests.conftest import TASK, TWO_SQLITE


def _loaded_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_the_cli_itself_loads_no_engine_no_database_library_and_no_models():
    loaded = _loaded_after("import runner.cli.app")
    assert not {"sqlalchemy", "pydantic", "croniter", "runner.changes.task", "runner.plan"} & loaded
    assert not {"ruamel", "ruamel.yaml", "runner.services.writeback"} & loaded  # only a change needs them


def test_a_run_loads_neither_the_plan_nor_notifications_nor_sync_all_nor_the_api_nor_the_daemon():
    loaded = _loaded_after(
        "import runner.cli.app; from runner import services; services.run; services.RunOptions"
    )
    assert "runner.runs.lifecycle" in loaded
    unused = {
        "runner.plan",
        "runner.services.definitions",
        "runner.services.catalog",
        "runner.services.probe",
        "runner.runs.notify",
        "runner.jobs.sync_all",
        "runner.definitions.sync_all",
        "runner.connectors.smtp",
        "runner.api",
        "runner.daemon",
        "smtplib",
        "urllib.request",
        "fastapi",
        "uvicorn",
        "starlette",
        "jinja2",
        "sqlalchemy.dialects.postgresql",  # the state store's dialect is imported where it is used
        "runner.definitions.validate",  # an applied job was validated at apply (an ad-hoc run's is)
        "runner.connectors.changelog_files",  # the change logs: a job that keeps or reads them
        "runner.connectors.changelog_kept",
        "runner.connectors.files.location",
        "ftplib",
        "runner.state.migrations.v001_objects_revisions_locks",  # a store that needs migrating
        "runner.state.migrations.v013_task_ranges",
        "runner.transforms.pipeline",  # a task's transforms
        "runner.transforms.registry",
    }
    assert not unused & loaded


def test_a_run_loads_its_modules_with_the_collector_paused_and_runs_with_it_on():
    """`runner run` imports what it runs with the cycle collector paused (from the start of the
    process to the parsed command line, then while the command's modules load), then freezes
    those objects; the run itself is collected as ever (its memory stays bounded)."""
    code = (
        "import gc, json, sys\n"
        "from runner.__main__ import main  # as the `runner` script starts\n"
        "from runner import services\n"
        "def run(*args, **kwargs):\n"
        "    print(json.dumps([gc.isenabled(), gc.get_freeze_count() > 0]))\n"
        "    sys.exit(0)\n"
        "services.run = run\n"
        "sys.argv = ['runner', 'run', 'some-job', '--format', 'json']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[true, true]"


def test_every_command_runs_with_the_collector_on():
    """The collector paused at the start of the process runs again once the command line is
    parsed, whether or not the command pauses it while its own modules load."""
    code = (
        "import gc, sys\n"
        "from runner.__main__ import main\n"
        "from runner import services\n"
        "def check(*args, **kwargs):\n"
        "    print(gc.isenabled())\n"
        "    sys.exit(0)\n"
        "services.check = check\n"
        "sys.argv = ['runner', 'validate']\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_a_run_builds_its_own_command_only_and_imports_no_other_command_module():
    code = (
        "import json, sys\n"
        "from runner import services\n"
        "from runner.cli import app\n"
        "built, build = [], app.build\n"
        "app.build = lambda name: built.append(name) or build(name)\n"
        "def run(*args, **kwargs):\n"
        "    cli = sorted(m for m in sys.modules if m.startswith('runner.cli.'))\n"
        "    print(json.dumps([built, cli]))\n"
        "    sys.exit(0)\n"
        "services.run = run\n"
        "sys.argv = ['runner', 'run', 'some-job', '--format', 'json']\n"
        "app.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    built, cli = json.loads(done.stdout)
    assert built == ["run"]
    assert {"runner.cli.runs", "runner.cli.common"} <= set(cli)
    others = {f"runner.cli.{module}" for module, _ in app.COMMANDS.values()} - {"runner.cli.runs"}
    assert others and not others & set(cli)


def test_every_command_is_built_on_demand_under_its_name_in_the_help_order():
    group = typer.main.get_command(app.app)
    assert group.list_commands(None) == list(app.COMMANDS)  # type: ignore[attr-defined, arg-type]
    for name in app.COMMANDS:
        command = group.commands[name]  # type: ignore[attr-defined]
        assert command.name == name
        assert bool(getattr(command, "commands", None)) == app.COMMANDS[name][1].endswith("_app")
    help_text = CliRunner().invoke(app.app, ["--help"]).output
    listed = [line.split()[0] for line in help_text.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == list(app.COMMANDS)


def _one_row_copy(project) -> None:
    """An applied job `copy` of one row between two SQLite files."""
    project.write("connections.d/all.yaml", TWO_SQLITE)
    project.job("copy", "src", "dst", TASK)
    with sqlite3.connect(project.root / "src.db") as db:
        db.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO a VALUES (1, 'x')")
    services.apply(project.ws)


def test_a_piped_run_prints_its_log_and_result_without_loading_rich_console(project):
    _one_row_copy(project)
    code = (
        "import sys\n"
        "from runner.cli.app import main\n"
        f"sys.argv = ['runner', '--dir', {str(project.root)!r}, 'run', 'copy']\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    loaded = (m for m in sys.modules if m.startswith(('rich', 'runner.changes')))\n"
        "    print(sorted(loaded), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert "1 rows read → 1 inserted" in done.stdout
    assert "run succeeded" in done.stderr
    assert "rich.console" not in done.stderr.splitlines()[-1]
    assert "runner.changes.task" in done.stderr.splitlines()[-1]
    assert "runner.changes.verify" not in done.stderr.splitlines()[-1]  # only a repair run compares
    assert sqlite3.connect(project.root / "dst.db").execute("SELECT id, v FROM b").fetchall() == [(1, "x")]


@pytest.mark.parametrize(
    "text",
    [
        "run 20261130T001951.847-221a0c of job default/copy: succeeded in 0.12 s (a → b)",
        '2026-11-30T00:19:51.864038+00:00 INFO    run started job="default/copy" trigger="manual"',
        "a job named :smile: and :thumbs_up-text: and :not_an_emoji: and :: and : x :",  # as written
        "tabs\tand\tbells\x07 and\rreturns\x0b\x0c\x08, escapes \x1b[31m, [bold]markup[/]",
        "wide 漢字 and 😀 and e\u0301, trailing   \n\nlines\n",
        "",
        "word " * 100,
    ],
)
def test_the_plain_path_prints_what_rich_prints(text, capsys):
    from rich.console import Console as RichConsole

    expected = io.StringIO()
    RichConsole(file=expected, highlight=False, emoji=False, soft_wrap=True, width=250).print(
        text, markup=False
    )
    common.Console(highlight=False, emoji=False, soft_wrap=True, width=250).print(text, markup=False)
    assert capsys.readouterr().out == expected.getvalue()


def test_validate_and_plan_of_sqlite_jobs_load_no_sqlalchemy_no_engine_and_no_other_kind(project):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    project.job(
        "copy",
        "src",
        "dst",
        TASK + "\n- {name: u, read: {table: c}, write: {table: d, keys: [id]}, "
        "changes: {strategy: hash}, deletes: propagate}",
    )
    loaded = _loaded_after(
        "from pathlib import Path; from runner import services; from runner.workspace import Workspace\n"
        f"ws = Workspace(Path({str(project.root)!r}))\n"
        "assert len(services.validate(ws)) == 3; assert services.plan(ws).count('create') == 3"
    )
    assert "runner.connectors.sql.kinds" in loaded  # the SQL kinds' models, without their connectors
    unused = {
        "sqlalchemy",
        "runner.connectors.sql.sqlite",
        "runner.connectors.sql.postgresql",
        "runner.connectors.memory",
        "runner.connectors.files.connector",
        "runner.connectors.http.connector",
        "runner.connectors.rabbitmq",
        "runner.changes.task",
        "runner.changes.hash",
        "runner.jobs.sync",
        "runner.jobs.sync_all",
        "runner.state.store",
        "runner.plan.apply",
        "runner.plan.data",
    }
    assert not unused & loaded


def test_apply_waits_for_the_lock_as_long_as_the_service_does():
    default = inspect.signature(definitions.apply).parameters["lock_timeout"].default
    assert (
        default
        == services.DEFAULT_LOCK_TIMEOUT
        == inspect.signature(services.apply).parameters["lock_timeout"].default
    )


def test_a_run_through_the_script_turns_pydantics_plugin_lookup_off_and_loads_no_change_log_module(project):
    """`runner` (the script's entry, `runner.__main__`) sets PYDANTIC_DISABLE_PLUGINS unless it is
    set (pydantic then reads no distribution's entry points); a user's value, an empty one
    included (every plugin loaded), is kept. A SQLite job's run imports neither the change
    logs' modules nor the store's migrations nor the definitions' validation."""
    _one_row_copy(project)
    code = (
        "import json, os, sys\n"
        "from runner.__main__ import main\n"
        f"sys.argv = ['runner', '--dir', {str(project.root)!r}, 'run', 'copy', '--format', 'json']\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    loaded = [m for m in sys.modules if 'changelog' in m or '.migrations.v' in m or m in\n"
        "              ('ftplib', 'runner.definitions.validate')]\n"
        "    print(json.dumps([os.environ.get('PYDANTIC_DISABLE_PLUGINS'), loaded]), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    for given, kept in ((None, "__all__"), ("", ""), ("logfire", "logfire")):
        run_env = env if given is None else {**env, "PYDANTIC_DISABLE_PLUGINS": given}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=run_env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "succeeded"
        variable, loaded = json.loads(done.stderr.splitlines()[-1])
        assert variable == kept
        # the change logs' definitions, index and job steps are a sync run's (small, no format)
        assert set(loaded) <= {
            "runner.definitions.changelogs",
            "runner.state.changelogs",
            "runner.jobs.changelogs",
        }


def test_a_run_s_line_gives_its_options_as_the_command_line_does(project):
    """`--task` once per task (not a Python list of `--tasks`)."""
    _one_row_copy(project)
    done = CliRunner().invoke(
        app.app, ["--dir", str(project.root), "run", "copy", "--task", "t", "--resync", "--dry-run"]
    )
    assert done.exit_code == 0, done.output
    assert "(default/src → default/dst) [--task t --resync --dry-run]" in done.stdout


def test_a_limited_run_says_its_rows_were_rolled_back(project):
    _one_row_copy(project)
    done = CliRunner().invoke(app.app, ["--dir", str(project.root), "run", "copy", "--limit", "5"])
    assert done.exit_code == 0, done.output
    assert "1 rows read → would be 1 inserted, 0 updated, 0 deleted" in done.stdout
    assert "limited run: at most 5 rows read a task, written and rolled back: nothing was written" in (
        done.stdout
    )
    with sqlite3.connect(project.root / "dst.db") as db:  # nothing written
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "b" not in tables or db.execute("SELECT count(*) FROM b").fetchone() == (0,)


def test_a_backfill_s_empty_windows_are_one_line_a_stretch():
    from runner.cli.render.runs import _windows_text

    def window(day: int, rows: int) -> dict:
        return {"from": f"2024-01-{day:02d}", "to": f"2024-01-{day + 1:02d}", "rows": rows}

    days = [window(1, 0), window(2, 5), *(window(d, 0) for d in range(3, 30)), window(30, 1200)]
    assert _windows_text(days) == [
        "window 2024-01-01 → 2024-01-02: 0 rows read",
        "window 2024-01-02 → 2024-01-03: 5 rows read",
        "27 windows 2024-01-03 → 2024-01-30: 0 rows read",
        "window 2024-01-30 → 2024-01-31: 1,200 rows read",
    ]
    assert _windows_text([]) == []

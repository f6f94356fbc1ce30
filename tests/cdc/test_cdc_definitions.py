"""The cdc strategy in definitions and the desired state: `runner validate` refuses it where the
source's kind cannot read a log, `runner plan` names the slots a deletion drops, `runner apply`
drops them (and forgets the task's position)."""

from __future__ import annotations

import socket

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.errors import DefinitionsInvalid
from tests.cdc.test_postgresql_cdc import create_items, execute, rows, run_ok, setup_project, source_engine
from tests.conftest import TWO_SQLITE


def test_validate_refuses_cdc_from_a_kind_without_a_log(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job(
        "sync",
        "src",
        "dst",
        "- {name: t, read: {table: a}, write: {table: b, keys: [id]}, changes: {strategy: cdc}}",
    )
    with pytest.raises(DefinitionsInvalid) as raised:
        services.validate(project.ws)
    (problem,) = raised.value.problems
    assert str(problem.location).endswith("spec.tasks[0].changes.strategy")
    assert "strategy 'cdc' reads the table's changes from the source's log" in problem.message
    assert "which cannot (log_changes)" in problem.message


@pytest.mark.parametrize(
    ("task", "said"),
    [
        (
            "read: {query: 'SELECT 1'}, write: {table: b, keys: [id]}, changes: {strategy: cdc}",
            "give read.table",
        ),
        ("read: {table: a}, write: {table: b}, changes: {strategy: cdc}", "strategy 'cdc' needs write.keys"),
        (
            "read: {table: a}, write: {table: b, keys: [id]}, "
            "changes: {strategy: watermark, column: x, max_lag: 1GB}",
            "'max_lag' only applies to strategy 'cdc'",
        ),
        (
            "read: {table: a}, write: {table: b, keys: [id]}, changes: {strategy: cdc, max_lag: lots}",
            "not a size",
        ),
        (
            "read: {table: a}, write: {table: b, keys: [id], history: true}, changes: {strategy: cdc}",
            "applies changes through runner's merge: it goes without write.history",
        ),
        (
            "read: {table: a}, write: {table: b, keys: [id], upsert_script: 'SELECT 1'}, "
            "changes: {strategy: cdc}",
            "applies changes through runner's merge: it goes without write.upsert_script",
        ),
    ],
)
def test_validate_refuses_what_cdc_cannot_honour(project, pg_url, task, said):
    project.connection("src", "postgresql", pg_url)
    project.connection("dst", "postgresql", pg_url)
    project.job("sync", "src", "dst", f"- {{name: t, {task}}}")
    with pytest.raises(DefinitionsInvalid) as raised:
        services.validate(project.ws)
    assert any(said in p.message for p in raised.value.problems), raised.value.problems


def slots(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def publications(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.exec_driver_sql("SELECT pubname FROM pg_publication ORDER BY 1")]


def test_plan_names_and_apply_drops_the_slot_of_a_deleted_task_and_job(project, cdc_url, pg_url):
    engine = source_engine(cdc_url)
    create_items(engine, 5)
    execute(
        engine,
        "CREATE TABLE other (id int PRIMARY KEY, name text, amount numeric(12,2), stamp timestamp, "
        "doc jsonb)",
    )
    setup_project(project, cdc_url, pg_url)
    job = project.root / "jobs.d" / "sync.yaml"
    job.write_text(
        job.read_text()
        + "    - name: other\n      read: {table: other}\n      write: {table: other, keys: [id]}\n"
        + "      changes: {strategy: cdc, max_lag: 10MB}\n"
    )
    services.apply(project.ws)
    run_ok(project)
    (items_slot, other_slot) = sorted(s["pointer"]["slot"] for s in services.pointer_show(project.ws, "sync"))
    assert slots(engine) == sorted([items_slot, other_slot]) == publications(engine)

    job.write_text(job.read_text().split("    - name: other")[0])  # the task goes
    plan = services.plan(project.ws)
    (line,) = services.log_releases(project.ws, plan)
    shown = CliRunner().invoke(app, ["--dir", str(project.root), "plan"], env={"COLUMNS": "250"})
    assert "Applying it also lets go of the logs of the cdc tasks it deletes:" in shown.output
    assert f"  - job default/sync: drops replication slot {other_slot}" in shown.output
    assert f"drops replication slot {other_slot} and publication {other_slot} of task 'other'" in line
    result = services.apply(project.ws)
    assert result.released == [
        f"job default/sync, task 'other': dropped replication slot {other_slot}, publication {other_slot}"
    ]
    assert slots(engine) == [items_slot] == publications(engine)

    job.unlink()  # the job goes
    result = services.apply(project.ws)
    assert result.released == [
        f"job default/sync, task 'items': dropped replication slot {items_slot}, publication {items_slot}"
    ]
    assert slots(engine) == [] == publications(engine)


def test_apply_says_how_to_drop_a_slot_it_cannot_reach(project, cdc_url, pg_url):
    engine, dst = source_engine(cdc_url), source_engine(pg_url)
    create_items(engine, 3)
    setup_project(project, cdc_url, pg_url)
    run_ok(project)
    assert rows(dst) == rows(engine)
    url = sa.make_url(cdc_url).set(port=_closed_port()).render_as_string(hide_password=False)
    project.connection("src", "postgresql", url)  # the source moves where nothing answers
    services.apply(project.ws)
    (project.root / "jobs.d" / "sync.yaml").unlink()
    result = services.apply(project.ws)
    (line,) = result.released
    assert line.startswith("warning: job default/sync, task 'items': replication slot runner_sync_items_")
    assert "SELECT pg_drop_replication_slot(" in line


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

"""plan / apply: the diff, saved plans, revisions, atomicity, and what a broken file may not do."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from runner import services
from runner.errors import DefinitionsInvalid, StaleState
from runner.state import locks
from tests.conftest import TASK
from tests.conftest import TWO_SQLITE as CONNS


def state_rows(project) -> dict[str, list[tuple]]:
    """Every row of every table of the SQLite state store, for before/after comparisons."""
    db = sqlite3.connect(project.root / ".runner" / "state.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        db.close()


@pytest.fixture
def applied(project):
    project.write("connections.d/conns.yaml", CONNS)
    project.job("copy", "src", "dst", TASK, extra='  schedule: {cron: "*/15 * * * *"}\n')
    project.job("old", "src", "dst", TASK)
    result = services.apply(project.ws)
    assert result.revision == 1
    return project


def test_first_plan_creates_everything(project):
    project.write("connections.d/conns.yaml", CONNS)
    project.job("copy", "src", "dst", TASK)
    plan = services.plan(project.ws)
    assert [(c.action, c.kind, c.ref) for c in plan.changes] == [
        ("create", "Connection", "default/dst"),
        ("create", "Connection", "default/src"),
        ("create", "Job", "default/copy"),
    ]
    assert plan.base_revision is None


def test_plan_shows_update_fields_and_delete(applied):
    applied.job("copy", "src", "dst", TASK, extra='  schedule: {cron: "*/5 * * * *"}\n  batch_size: 500\n')
    (applied.root / "jobs.d" / "old.yaml").unlink()
    plan = services.plan(applied.ws)
    by_ref = {(c.kind, c.ref): c for c in plan.changes}
    update = by_ref[("Job", "default/copy")]
    assert update.action == "update"
    assert [(f.path, f.old, f.new) for f in update.fields] == [
        ("spec.schedule.cron", "*/15 * * * *", "*/5 * * * *"),
        ("spec.batch_size", None, 500),
    ]
    assert by_ref[("Job", "default/old")].action == "delete"
    assert by_ref[("Connection", "default/src")].action == "unchanged"
    assert plan.base_revision == 1


def test_apply_records_a_revision_and_the_objects(applied):
    store = applied.ws.store()
    rev = store.objects.latest_revision()
    assert rev.id == 1 and rev.user and len(rev.digest) == 64
    assert rev.summary["create"] == 4
    assert rev.git_commit is None and rev.git_dirty is None  # not a git work tree
    job = store.objects.get("Job", "default", "copy")
    assert job.document["spec"]["schedule"] == {"cron": "*/15 * * * *"}
    assert job.file.endswith("jobs.d/copy.yaml") and job.line == 1 and job.revision_id == 1


def test_apply_without_changes_records_no_revision(applied):
    result = services.apply(applied.ws)
    assert not result.plan.has_changes and result.revision is None
    assert applied.ws.store().objects.latest_revision().id == 1


def test_revision_records_git_commit_and_dirty_flag(project):
    project.write("connections.d/conns.yaml", CONNS)
    project.job("copy", "src", "dst", TASK)
    git = ["git", "-C", str(project.root), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "defs"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    services.apply(project.ws)
    rev = project.ws.store().objects.latest_revision()
    assert (rev.git_commit, rev.git_dirty) == (head, False)
    project.job("copy", "src", "dst", TASK, extra="  batch_size: 9\n")
    services.apply(project.ws)
    rev = project.ws.store().objects.latest_revision()
    assert (rev.id, rev.git_commit, rev.git_dirty) == (2, head, True)


def test_invalid_definitions_change_nothing_and_delete_nothing(applied):
    before = state_rows(applied)
    (applied.root / "jobs.d" / "old.yaml").unlink()  # would be a delete ...
    applied.write(
        "jobs.d/broken.yaml", "apiVersion: runner/v1\nkind: Job\nmetadata: {name: [\n"
    )  # ... but this
    with pytest.raises(DefinitionsInvalid):
        services.apply(applied.ws)
    with pytest.raises(DefinitionsInvalid):
        services.plan(applied.ws)
    assert state_rows(applied) == before
    assert applied.ws.store().locks.info(locks.APPLY) is None


def test_failure_mid_apply_rolls_back_everything(applied):
    """A real failure inside the transaction: a trigger in the state database rejects the
    third object written. Nothing of the apply may remain."""
    db = sqlite3.connect(applied.root / ".runner" / "state.db")
    db.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON objects WHEN NEW.name = 'zzz-last' "
        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
    )
    db.commit()
    db.close()
    before = state_rows(applied)
    applied.job("copy", "src", "dst", TASK, extra="  batch_size: 7\n")  # an update, written first
    applied.job("new-job", "src", "dst", TASK)  # an insert, written second
    applied.job("zzz-last", "src", "dst", TASK)  # the insert that fails
    with pytest.raises(Exception, match="injected failure"):
        services.apply(applied.ws)
    assert state_rows(applied) == before
    assert applied.ws.store().locks.info(locks.APPLY) is None


def test_saved_plan_applies_exactly_what_was_shown(applied, tmp_path):
    applied.job("copy", "src", "dst", TASK, extra="  batch_size: 42\n")
    plan_file = tmp_path / "plan.json"
    services.save_plan(services.plan(applied.ws), plan_file)
    # the files change again after the plan was made: apply FILE must not pick that up
    applied.job("copy", "src", "dst", TASK, extra="  batch_size: 99\n")
    result = services.apply(applied.ws, plan_file)
    assert result.revision == 2
    doc = applied.ws.store().objects.get("Job", "default", "copy").document
    assert doc["spec"]["batch_size"] == 42


def test_saved_plan_is_refused_when_state_moved(applied, tmp_path):
    applied.job("copy", "src", "dst", TASK, extra="  batch_size: 42\n")
    plan_file = tmp_path / "plan.json"
    services.save_plan(services.plan(applied.ws), plan_file)
    services.apply(applied.ws)  # someone else applied in between
    before = state_rows(applied)
    with pytest.raises(StaleState, match="state changed since the plan was made"):
        services.apply(applied.ws, plan_file)
    assert state_rows(applied) == before


def test_plan_file_holds_references_not_secret_values(project, tmp_path, monkeypatch):
    monkeypatch.setenv("PG_PW", "s3cr3t-value")
    project.connection("pg", "postgresql", "postgresql://u:${env:PG_PW}@127.0.0.1/db")
    plan_file = tmp_path / "plan.json"
    services.save_plan(services.plan(project.ws), plan_file)
    text = plan_file.read_text()
    assert "${env:PG_PW}" in text and "s3cr3t-value" not in text
    assert json.loads(text)["format"] == "runner-plan/1"


def test_moved_definition_updates_its_location_without_a_revision(applied):
    text = (applied.root / "jobs.d" / "copy.yaml").read_text()
    (applied.root / "jobs.d" / "copy.yaml").unlink()
    applied.write("jobs.d/team-copy.yaml", "# moved here\n" + text)
    result = services.apply(applied.ws)
    assert result.revision is None
    job = applied.ws.store().objects.get("Job", "default", "copy")
    assert job.file.endswith("jobs.d/team-copy.yaml") and job.line == 2


def test_saved_plan_is_refused_when_only_a_location_moved(applied, tmp_path):
    applied.job("copy", "src", "dst", TASK, extra='  schedule: {cron: "*/15 * * * *"}\n  batch_size: 3\n')
    plan_file = tmp_path / "plan.json"
    services.save_plan(services.plan(applied.ws), plan_file)
    applied.job("copy", "src", "dst", TASK, extra='  schedule: {cron: "*/15 * * * *"}\n')  # as applied
    text = (applied.root / "jobs.d" / "old.yaml").read_text()
    (applied.root / "jobs.d" / "old.yaml").write_text("# a comment moves it a line down\n" + text)
    assert services.apply(applied.ws).revision is None  # only the location moved
    with pytest.raises(StaleState):
        services.apply(applied.ws, plan_file)


def test_tampered_plan_file_is_validated_before_it_is_stored(applied, tmp_path):
    applied.job("copy", "src", "dst", TASK, extra="  batch_size: 3\n")
    plan_file = tmp_path / "plan.json"
    services.save_plan(services.plan(applied.ws), plan_file)
    data = json.loads(plan_file.read_text())
    (change,) = [c for c in data["changes"] if c["action"] == "update"]
    change["after"]["spec"]["batch_size"] = "lots"
    plan_file.write_text(json.dumps(data))
    before = state_rows(applied)
    with pytest.raises(DefinitionsInvalid) as info:
        services.apply(applied.ws, plan_file)
    assert "spec.batch_size" in str(info.value.problems[0])
    assert state_rows(applied) == before


def test_unwritable_plan_file_is_a_clear_error(applied, tmp_path):
    from runner.errors import RunnerError

    with pytest.raises(RunnerError, match="cannot write the plan to"):
        services.save_plan(services.plan(applied.ws), tmp_path / "missing" / "plan.json")

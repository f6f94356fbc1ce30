"""`runner jobs create|edit|delete` and `runner task …`: each a commit by the git user in a
real repository, the definition and the commit printed, refusals with exit 1."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from tests.api.conftest import COMMENTED, git
from tests.conftest import TWO_SQLITE

NEW_JOB = """\
# made from a terminal: this comment goes to git as written
apiVersion: runner/v1
kind: Job
metadata: {name: fresh}
spec:
  source: src
  target: dst
  tasks:
    - {name: t, read: {table: items}, write: {table: t}}
"""


@pytest.fixture
def repo(project, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(project.root)
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.write("jobs.d/commented.yaml", COMMENTED)
    project.write(".gitignore", ".runner/\n*.db\n")
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "config", "user.name", "Dana Human")
    git(project.root, "config", "user.email", "dana@example.org")
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "the definitions")
    services.apply(project.ws)
    return project


def cli(project, *args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["--dir", str(project.root), *args], input=stdin)


def last(project) -> str:
    return git(project.root, "log", "-1", "--format=%an <%ae>|%s").strip()


def test_jobs_create_writes_the_file_as_given_and_prints_the_definition_and_commit(repo):
    (repo.root / "new.yaml").write_text(NEW_JOB)
    result = cli(repo, "jobs", "create", "new.yaml")
    assert result.exit_code == 0, result.output
    head = git(repo.root, "rev-parse", "HEAD").strip()
    assert (
        f"Create job default/fresh (jobs.d/fresh.yaml): commit {head} on the checked-out branch"
        in result.stdout
    )
    assert "name: fresh" in result.stdout and "applied (revision 2)" in result.stdout
    assert (repo.root / "jobs.d/fresh.yaml").read_text() == NEW_JOB
    assert last(repo) == "Dana Human <dana@example.org>|Create job default/fresh"
    assert "fresh" in [o.name for o in services.get(repo.ws, "Job")]


def test_jobs_create_from_stdin_for_review_on_a_branch(repo):
    result = cli(repo, "jobs", "create", "-", "--branch", "review/fresh", "--format", "json", stdin=NEW_JOB)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["branch"] == "review/fresh" and body["applied"] is False
    assert git(repo.root, "rev-parse", "review/fresh").strip() == body["commit"]
    assert not (repo.root / "jobs.d/fresh.yaml").exists() and git(repo.root, "status", "--porcelain") == ""


def test_jobs_edit_set_keeps_the_comments(repo):
    result = cli(
        repo,
        "jobs",
        "edit",
        "commented",
        "--set",
        "spec.batch_size=25",
        "--set",
        "spec.tasks[two].write.keys=[id]",
    )
    assert result.exit_code == 0, result.output
    assert (repo.root / "jobs.d/commented.yaml").read_text() == COMMENTED.replace(
        "batch_size: 10", "batch_size: 25"
    ).replace("write: {table: two}", "write: {table: two, keys: [id]}")
    assert last(repo) == (
        "Dana Human <dana@example.org>|Edit job default/commented: set spec.batch_size, "
        "spec.tasks[two].write.keys"
    )
    unset = cli(repo, "jobs", "edit", "commented", "--unset", "spec.batch_size")
    assert unset.exit_code == 0 and "batch_size" not in (repo.root / "jobs.d/commented.yaml").read_text()
    assert "# small batches" not in (repo.root / "jobs.d/commented.yaml").read_text()
    assert "# the first task" in (repo.root / "jobs.d/commented.yaml").read_text()


def test_an_index_in_a_path_counts_from_0_as_errors_name_items(repo):
    """`spec.tasks[1]` is the second task, the one a validation error calls `spec.tasks[1]`."""
    result = cli(repo, "jobs", "edit", "commented", "--set", "spec.tasks[1].write.keys=[id]")
    assert result.exit_code == 0, result.output
    assert (repo.root / "jobs.d/commented.yaml").read_text() == COMMENTED.replace(
        "write: {table: two}", "write: {table: two, keys: [id]}"
    )
    result = cli(repo, "jobs", "edit", "commented", "--set", "spec.tasks[2].deletes=soft")
    assert result.exit_code == 1
    assert "no item [2] (there are 2: [0] to [1])" in result.stderr
    result = cli(repo, "jobs", "edit", "commented", "--set", "spec.tasks[0].changes.strategy=watermark")
    assert result.exit_code == 1 and "spec.tasks[0].changes: " in result.stderr  # the item it edited


def test_an_invalid_edit_prints_the_located_problem_and_changes_nothing(repo):
    result = cli(repo, "jobs", "edit", "commented", "--set", "spec.batch_size=0")
    assert result.exit_code == 1
    assert "jobs.d/commented.yaml:8:3: spec.batch_size: Input should be greater than or equal to 1" in (
        result.stderr
    )
    assert (repo.root / "jobs.d/commented.yaml").read_text() == COMMENTED
    assert last(repo) == "Dana Human <dana@example.org>|the definitions"


def test_task_commands_add_move_off_on_delete(repo):
    (repo.root / "task.yaml").write_text("name: three\nread: {table: items}\nwrite: {table: three}\n")
    assert cli(repo, "task", "add", "commented", "task.yaml", "--to", "1").exit_code == 0
    assert cli(repo, "task", "move", "commented", "three", "--after", "two").exit_code == 0
    assert cli(repo, "task", "off", "commented", "one").exit_code == 0
    tasks = services.describe(repo.ws, "Job", "commented")["document"]["spec"]["tasks"]
    assert [(t["name"], t.get("active", True)) for t in tasks] == [
        ("one", False),
        ("two", True),
        ("three", True),
    ]
    assert cli(repo, "task", "on", "commented", "one").exit_code == 0
    assert cli(repo, "task", "delete", "commented", "three").exit_code == 0
    assert (repo.root / "jobs.d/commented.yaml").read_text() == COMMENTED
    moved = cli(repo, "task", "move", "commented", "one", "--to", "9")
    assert moved.exit_code == 1 and "position must be from 1 to 2" in moved.stderr
    subjects = git(repo.root, "log", "--format=%s").splitlines()
    assert subjects[:5] == [
        "Delete task three of job default/commented",
        "Switch on task one of job default/commented",
        "Switch off task one of job default/commented",
        "Move task three of job default/commented to position 3",
        "Add task three to job default/commented",
    ]


def test_jobs_delete_and_a_dirty_file_is_refused(repo):
    (repo.root / "jobs.d/commented.yaml").write_text(COMMENTED + "# a note\n")
    refused = cli(repo, "jobs", "delete", "commented")
    assert refused.exit_code == 1 and "has uncommitted changes" in refused.stderr
    git(repo.root, "checkout", "--", "jobs.d/commented.yaml")
    done = cli(repo, "jobs", "delete", "commented")
    assert done.exit_code == 0 and "Delete job default/commented" in done.stdout
    assert not (repo.root / "jobs.d/commented.yaml").exists() and services.get(repo.ws, "Job") == []

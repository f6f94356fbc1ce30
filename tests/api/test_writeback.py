"""Job and task changes through the API, written back to git: each one a commit in a real
repository (author, message, the file with its comments), validated first (422, nothing
written), refused with 409 when git or a run is in the way, and committed to a branch for
review without touching the work tree."""

from __future__ import annotations

import threading

from runner import services
from runner.definitions.gitrepo import Repo
from runner.errors import WriteBackRefused
from runner.state import locks
from tests.api.conftest import COMMENTED, git

TASK = {"name": "three", "read": {"table": "items"}, "write": {"table": "three"}}


def job(name: str, **spec: object) -> dict:
    return {"metadata": {"name": name}, "spec": {"source": "src", "target": "dst", "tasks": [TASK]} | spec}


def log(root, *args: str) -> list[str]:
    return git(root, "log", "--format=%an <%ae>|%s", *args).splitlines()


def clean(root) -> bool:
    return git(root, "status", "--porcelain") == ""


def test_a_created_job_is_a_commit_by_the_key_and_is_applied(git_api):
    root = git_api.project.root
    response = git_api.post("/api/v1/jobs", json=job("fresh", batch_size=50))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["commit"] == git(root, "rev-parse", "HEAD").strip()
    assert body["file"] == "jobs.d/fresh.yaml" and body["applied"] is True and body["branch"] is None
    assert body["definition"]["spec"]["batch_size"] == 50
    assert log(root)[0] == "runner API key operate-key <runner@localhost>|Create job default/fresh"
    assert "Made through runner by api key operate-key." in git(root, "log", "-1", "--format=%b")
    assert (root / "jobs.d/fresh.yaml").read_text() == git(root, "show", "HEAD:jobs.d/fresh.yaml")
    assert "batch_size: 50" in (root / "jobs.d/fresh.yaml").read_text()
    assert clean(root)
    assert "fresh" in [o.name for o in services.get(git_api.project.ws, "Job")]
    again = git_api.post("/api/v1/jobs", json=job("fresh"))
    assert again.status_code == 409 and "exists already (jobs.d/fresh.yaml:" in again.json()["error"]


def test_a_job_in_a_namespace_goes_in_its_folder(git_api):
    response = git_api.post("/api/v1/jobs?namespace=team", json=job("nightly"))
    assert response.status_code == 201, response.text
    assert response.json()["file"] == "jobs.d/team/nightly.yaml" and response.json()["job"] == "team/nightly"
    assert git_api.get("/api/v1/jobs/nightly?namespace=team").status_code == 200


def test_a_replaced_job_keeps_its_comments_and_layout(git_api):
    root = git_api.project.root
    document = job("commented", batch_size=20)
    document["spec"]["tasks"] = [
        {"name": "one", "read": {"table": "items"}, "write": {"table": "one"}},
        {"name": "two", "read": {"table": "items"}, "write": {"table": "two", "keys": ["id"]}},
    ]
    response = git_api.put("/api/v1/jobs/commented", json=document)
    assert response.status_code == 200, response.text
    expected = COMMENTED.replace("batch_size: 10", "batch_size: 20").replace(
        "write: {table: two}", "write: {table: two, keys: [id]}"
    )
    assert (root / "jobs.d/commented.yaml").read_text() == expected
    assert git(root, "show", "HEAD:jobs.d/commented.yaml") == expected
    assert log(root)[0].endswith("|Update job default/commented")
    assert clean(root)
    applied = services.describe(git_api.project.ws, "Job", "commented")
    assert applied["document"]["spec"]["batch_size"] == 20


def test_tasks_added_moved_switched_off_and_deleted_keep_their_comments(git_api):
    root = git_api.project.root
    path = "/api/v1/jobs/commented/tasks"
    assert git_api.post(f"{path}?position=2", json=TASK).status_code == 201
    assert git_api.post(f"{path}/one/move", json={"after": "two"}).status_code == 200
    off = git_api.post(f"{path}/two/off")
    assert off.status_code == 200 and off.json()["definition"]["spec"]["tasks"][1]["active"] is False
    assert (root / "jobs.d/commented.yaml").read_text() == (
        COMMENTED.split("  tasks:\n")[0] + "  tasks:\n"
        "    - name: three\n"
        "      read:\n"
        "        table: items\n"
        "      write:\n"
        "        table: three\n"
        "    # the second task\n"
        "    - name: two\n"
        "      active: false\n"
        "      read: {table: items}\n"
        "      write: {table: two}\n"
        "    # the first task\n"
        "    - name: one\n"
        "      read: {table: items}\n"
        "      write: {table: one}\n"
    )
    assert git_api.post(f"{path}/two/on").status_code == 200
    assert git_api.client.delete(f"{path}/three", headers=git_api.auth("operate")).status_code == 200
    text = (root / "jobs.d/commented.yaml").read_text()
    assert text == COMMENTED.replace(
        "    # the first task\n    - name: one\n      read: {table: items}\n      write: {table: one}\n", ""
    ) + ("    # the first task\n    - name: one\n      read: {table: items}\n      write: {table: one}\n")
    assert [line.split("|")[1] for line in log(root)[:5]] == [
        "Delete task three of job default/commented",
        "Switch on task two of job default/commented",
        "Switch off task two of job default/commented",
        "Move task one of job default/commented to position 3",
        "Add task three to job default/commented",
    ]
    tasks = services.describe(git_api.project.ws, "Job", "commented")["document"]["spec"]["tasks"]
    assert [t["name"] for t in tasks] == ["two", "one"] and clean(root)


def test_a_replaced_task_and_a_deleted_job(git_api):
    root = git_api.project.root
    task = {"read": {"table": "items"}, "write": {"table": "one", "keys": ["id"]}}
    response = git_api.put("/api/v1/jobs/commented/tasks/one", json=task)
    assert response.status_code == 200, response.text
    assert "      write: {table: one, keys: [id]}\n" in (root / "jobs.d/commented.yaml").read_text()
    gone = git_api.client.delete("/api/v1/jobs/commented", headers=git_api.auth("operate"))
    assert gone.status_code == 200 and gone.json()["definition"] is None
    assert not (root / "jobs.d/commented.yaml").exists()
    assert "jobs.d/commented.yaml" not in git(root, "ls-files")
    assert log(root)[0].endswith("|Delete job default/commented") and clean(root)
    assert "commented" not in [o.name for o in services.get(git_api.project.ws, "Job")]


def test_an_invalid_change_is_a_located_422_and_nothing_is_written(git_api):
    root = git_api.project.root
    head = git(root, "rev-parse", "HEAD")
    response = git_api.put("/api/v1/jobs/commented", json=job("commented", batch_size=0))
    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert problem["file"] == "jobs.d/commented.yaml" and problem["field"] == "spec.batch_size"
    assert problem["line"] == 8 and "greater than or equal to 1" in problem["message"]
    bad_task = git_api.post("/api/v1/jobs/commented/tasks", json={"name": "x", "read": {"table": "items"}})
    assert bad_task.status_code == 422 and bad_task.json()["problems"][0]["field"] == "spec.tasks[2].write"
    new = git_api.post("/api/v1/jobs", json=job("wrong", source="nowhere"))
    assert new.status_code == 422 and new.json()["problems"][0]["file"] == "jobs.d/wrong.yaml"
    assert git(root, "rev-parse", "HEAD") == head and clean(root)
    assert (root / "jobs.d/commented.yaml").read_text() == COMMENTED
    assert not (root / "jobs.d/wrong.yaml").exists()


def test_a_literal_secret_is_refused_and_never_written(git_api):
    root = git_api.project.root
    secret = "s3cr3t-token-value-77"
    hook = {
        "webhook": {"url": "https://hooks.example.org/x", "headers": {"Authorization": f"Bearer {secret}"}}
    }
    response = git_api.post("/api/v1/jobs", json=job("leaky", notify=[hook]))
    assert response.status_code == 422 and secret not in response.text
    assert "written out: reference it instead" in response.json()["error"]
    assert secret not in git(root, "log", "--all", "-p") and not (root / "jobs.d/leaky.yaml").exists()


def test_refused_outside_a_git_work_tree(api):
    response = api.post("/api/v1/jobs", json=job("fresh"))
    assert response.status_code == 409 and "is not in a git work tree" in response.json()["error"]
    assert not (api.project.root / "jobs.d/fresh.yaml").exists()


def test_refused_when_the_file_has_uncommitted_changes(git_api):
    root = git_api.project.root
    edited = COMMENTED.replace("batch_size: 10", "batch_size: 11")
    (root / "jobs.d/commented.yaml").write_text(edited)
    response = git_api.post("/api/v1/jobs/commented/tasks/one/off")
    assert response.status_code == 409 and "has uncommitted changes" in response.json()["error"]
    assert (root / "jobs.d/commented.yaml").read_text() == edited
    git(root, "add", "jobs.d/commented.yaml")  # staged counts too
    assert git_api.post("/api/v1/jobs/commented/tasks/one/off").status_code == 409
    assert len(log(root)) == 1


def test_refused_while_the_job_runs(git_api):
    store = git_api.project.ws.store()
    lock_id = store.locks.acquire(locks.job_lock("default/commented"), timeout=0)
    try:
        for response in (
            git_api.put("/api/v1/jobs/commented", json=job("commented")),
            git_api.client.delete("/api/v1/jobs/commented", headers=git_api.auth("operate")),
            git_api.post("/api/v1/jobs/commented/tasks/one/move", json={"position": 2}),
        ):
            assert response.status_code == 409 and "is running" in response.json()["error"]
    finally:
        store.locks.release(locks.job_lock("default/commented"), lock_id)
    assert len(log(git_api.project.root)) == 1
    assert git_api.post("/api/v1/jobs/commented/tasks/one/move", json={"position": 2}).status_code == 200


def test_a_change_for_review_goes_to_a_branch_and_leaves_the_work_tree_alone(git_api):
    root = git_api.project.root
    head = git(root, "rev-parse", "HEAD")
    revision = services.describe(git_api.project.ws, "Job", "commented")["revision"]
    first = git_api.post("/api/v1/jobs?branch=review/fresh", json=job("fresh"))
    assert first.status_code == 201, first.text
    assert first.json()["branch"] == "review/fresh" and first.json()["applied"] is False
    second = git_api.post("/api/v1/jobs/commented/tasks/one/off?branch=review/fresh")
    assert second.status_code == 200, second.text
    assert git(root, "rev-parse", "HEAD") == head and clean(root)
    assert git(root, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert not (root / "jobs.d/fresh.yaml").exists()
    assert (root / "jobs.d/commented.yaml").read_text() == COMMENTED
    assert log(root, "review/fresh")[:2] == [
        "runner API key operate-key <runner@localhost>|Switch off task one of job default/commented",
        "runner API key operate-key <runner@localhost>|Create job default/fresh",
    ]
    assert git(root, "rev-parse", "review/fresh~2") == head
    assert "active: false" in git(root, "show", "review/fresh:jobs.d/commented.yaml")
    assert "fresh" not in [o.name for o in services.get(git_api.project.ws, "Job")]
    assert services.describe(git_api.project.ws, "Job", "commented")["revision"] == revision
    # validated against the branch: the job made there exists there only
    assert git_api.post("/api/v1/jobs?branch=review/fresh", json=job("fresh")).status_code == 409
    bad = git_api.put("/api/v1/jobs/fresh?branch=review/fresh", json=job("fresh", batch_size=0))
    assert bad.status_code == 422 and bad.json()["problems"][0]["file"] == "jobs.d/fresh.yaml"
    checked_out = git_api.post("/api/v1/jobs?branch=main", json=job("other"))
    assert checked_out.status_code == 409 and "checked out" in checked_out.json()["error"]
    for bad_name in ("-n", "a\x00b", "a..b"):  # an option, a NUL (never reaches git), not a ref
        refused = git_api.post("/api/v1/jobs", params={"branch": bad_name}, json=job("other"))
        assert refused.status_code == 409 and "not a valid git branch name" in refused.json()["error"]


def test_two_changes_at_once_both_land(git_api):
    root = git_api.project.root
    answers: list = []

    def send(i: int) -> None:
        answers.append(git_api.post("/api/v1/jobs/commented/tasks", json=TASK | {"name": f"t{i}"}))
        answers.append(git_api.post("/api/v1/jobs", json=job(f"job{i}")))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [201] * 4, [a.text for a in answers]
    assert len(log(root)) == 5 and clean(root)
    text = (root / "jobs.d/commented.yaml").read_text()
    assert "name: t0" in text and "name: t1" in text
    jobs = {o.name for o in services.get(git_api.project.ws, "Job")}
    assert {"job0", "job1"} <= jobs


def test_a_commit_made_meanwhile_is_detected(git_api):
    """The branch moves only from where the change started: a human commit between the read
    and the move refuses the change instead of losing the human's commit."""
    root = git_api.project.root
    repo = Repo(root)
    start = repo.head()
    blob = repo.hash(b"apiVersion: runner/v1\n", write=True)
    ours = repo.commit(start, "jobs.d/commented.yaml", blob, "ours", None)
    (root / "notes.txt").write_text("a human's work\n")
    git(root, "add", "notes.txt")
    git(root, "commit", "-qm", "a human commit")
    human = repo.head()
    try:
        repo.move("HEAD", ours, start, "ours")
    except WriteBackRefused as exc:
        assert "moved while the change was being made" in str(exc)
    else:
        raise AssertionError("the move was not refused")
    assert repo.head() == human


def test_a_read_key_cannot_change_jobs(git_api):
    response = git_api.client.post(
        "/api/v1/jobs", json=job("fresh"), headers={"Authorization": f"Bearer {git_api.keys['read']}"}
    )
    assert response.status_code == 403 and len(log(git_api.project.root)) == 1


def test_a_daemon_started_with_a_review_branch_applies_no_change(git_api):
    from fastapi.testclient import TestClient

    from runner.api.app import create_app

    root = git_api.project.root
    head = git(root, "rev-parse", "HEAD")
    app = create_app(git_api.project.ws, git_api.daemon, review_branch="review/api")
    with TestClient(app) as client:
        response = client.post("/api/v1/jobs", json=job("fresh"), headers=git_api.auth("operate"))
        assert response.status_code == 201 and response.json()["branch"] == "review/api"
        other = client.post(
            "/api/v1/jobs/commented/tasks/one/off?branch=review/other", headers=git_api.auth("operate")
        )
        assert other.status_code == 200 and other.json()["branch"] == "review/other"
    assert (
        git(root, "rev-parse", "HEAD") == head and clean(root) and not (root / "jobs.d/fresh.yaml").exists()
    )
    assert log(root, "review/api")[0].endswith("|Create job default/fresh")
    assert "fresh" not in [o.name for o in services.get(git_api.project.ws, "Job")]

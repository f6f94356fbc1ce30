"""The load_folder job type: every file of a folder into the table its name (or a pattern)
gives, each file once and whole. A bad file among good ones is named with its line and left
for the next run while the others load; a changed file replaces its rows; a run killed -9
mid-file and run again leaves every row exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner import services
from runner.errors import DefinitionsInvalid
from tests.conftest import REPO, Project


def _setup(project: Project, target_url: str, extra: str = "") -> Path:
    inbox = project.root / "inbox"
    inbox.mkdir(exist_ok=True)
    project.write(
        "connections.d/inbox.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: inbox}\n"
        "spec: {type: files, path: inbox}\n",
    )
    project.connection("dw", *target_url.split(" ", 1))
    project.write(
        "jobs.d/load.yaml",
        f"""
        apiVersion: runner/v1
        kind: Job
        metadata: {{name: load}}
        spec:
          type: load_folder
          source: inbox
          target: dw
          files: "**/*.csv"
          format: csv
          batch_size: 3
        {extra}
        """,
    )
    return inbox


def _rows(url: str, sql: str) -> list[tuple]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _target(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite {'sqlite:///' + str(tmp_path / 'project/dw.db')}"
    return f"postgresql {request.getfixturevalue('pg_url')}"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_file_loads_once_and_a_bad_one_waits_for_the_next_run(project, tmp_path, request, kind):
    spec = _target(kind, tmp_path, request)
    url = spec.split(" ", 1)[1]
    inbox = _setup(project, spec)
    (inbox / "orders.csv").write_text("id,amount\n1,1.50\n2,2.25\n3,3\n4,4\n")
    (inbox / "2024").mkdir()
    (inbox / "2024/customers.2024.csv").write_text("id,name\n1,Ana\n2,Zoë\n")
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    tasks = {t["name"]: t for t in record["tasks"]}
    assert record["status"] == "succeeded", record
    assert tasks["orders"]["status"] == "succeeded" and tasks["customers"]["status"] == "succeeded"
    assert tasks["orders"]["inserted"] == 4
    order = "_file, _row" if kind == "sqlite" else '"_file", "_row"'
    assert _rows(url, f"SELECT id, name, _file, _row FROM customers ORDER BY {order}") == [
        (1, "Ana", "2024/customers.2024.csv", 1),
        (2, "Zoë", "2024/customers.2024.csv", 2),
    ]
    # a bad file among good ones: stated types make 'lots' not fit
    project.write(
        "jobs.d/load.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: load}
        spec:
          type: load_folder
          source: inbox
          target: dw
          files: "*.csv"
          format: csv
          columns: {id: bigint, amount: "decimal(10,2)"}
          table: "(?P<table>[a-z]+)(_\\\\d+)?\\\\.csv"
          batch_size: 3
        """,
    )
    (inbox / "sales_1.csv").write_text("id,amount\n1,1\n2,2\n3,3\n4,4\n")
    (inbox / "sales_2.csv").write_text("id,amount\n5,5\n6,lots\n")
    (inbox / "sales_3.csv").write_text("id,amount\n7,7\n")
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    tasks = {t["name"]: t for t in record["tasks"]}
    assert tasks["sales"]["status"] == "failed"
    assert "sales_2.csv:3: amount: " in tasks["sales"]["error"], tasks["sales"]["error"]
    assert tasks["orders"]["status"] == "succeeded" and tasks["orders"]["inserted"] == 0  # loaded before
    got = _rows(url, "SELECT id, amount FROM sales ORDER BY id")
    assert [r[0] for r in got] == [1, 2, 3, 4, 7]  # none of sales_2: never half a file
    (inbox / "sales_2.csv").write_text("id,amount\n5,5\n6,6\n")
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record
    tasks = {t["name"]: t for t in record["tasks"]}
    assert tasks["sales"]["inserted"] == 2  # only the fixed file: the others were loaded
    assert [r[0] for r in _rows(url, "SELECT id FROM sales ORDER BY id")] == [1, 2, 3, 4, 5, 6, 7]
    assert _rows(url, "SELECT amount FROM sales WHERE id = 6") == [(Decimal("6.00"),)] or kind == "sqlite"


def test_a_changed_file_replaces_its_rows(project, tmp_path):
    inbox = _setup(project, f"sqlite sqlite:///{tmp_path / 'project/dw.db'}")
    (inbox / "items.csv").write_text("id,v\n1,a\n2,b\n3,c\n")
    services.apply(project.ws)
    assert services.run(project.ws, "load")["status"] == "succeeded"
    assert services.run(project.ws, "load")["tasks"][0]["rows_read"] == 0  # unchanged: not read again
    (inbox / "items.csv").write_text("id,v\n1,A\n2,B\n")
    os.utime(inbox / "items.csv", (time.time() + 5, time.time() + 5))
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded" and record["tasks"][0]["deleted"] == 1
    url = f"sqlite:///{tmp_path / 'project/dw.db'}"
    assert _rows(url, "SELECT id, v FROM items ORDER BY _row") == [(1, "A"), (2, "B")]


def test_load_folder_definitions_are_checked_where_they_are_defined(project, tmp_path):
    project.connection("db", "sqlite", "sqlite:///x.db")
    project.write(
        "jobs.d/bad.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: bad}
        spec: {type: load_folder, source: db, target: db, format: csv, table: "[a-z]+\\\\.csv"}
        ---
        apiVersion: runner/v1
        kind: Job
        metadata: {name: bad2}
        spec: {type: load_folder, source: db, target: db, format: csv, files: "../x/*"}
        """,
    )
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "bad.yaml:4" in text and "spec.table: " in text and "group named table" in text
    assert "spec.files: " in text and "leaves the folder" in text


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_run_killed_mid_file_then_run_again_loads_every_row_once(project, tmp_path, request, kind):
    spec = _target(kind, tmp_path, request)
    url = spec.split(" ", 1)[1]
    inbox = _setup(project, spec)
    (inbox / "a.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(1, 8)))
    (inbox / "b.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(1, 11)))
    os.utime(inbox / "b.csv", (time.time() + 5, time.time() + 5))  # a first, then b
    services.apply(project.ws)
    project.ws.close()
    for point in ("read", "committed"):  # mid-file (a batch read), then once a file committed
        flag = tmp_path / f"paused-{point}"
        env = {
            **os.environ,
            "RUNNER_PAUSE_AT": point,
            "RUNNER_PAUSE_FILE": str(flag),
            "PYTHONPATH": str(REPO),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "--dir", str(project.root), "run", "load"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not flag.exists():
            if proc.poll() is not None:
                pytest.fail(f"the run ended before {point}: {proc.stderr.read().decode()}")
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        if point == "read":  # a's first batch read: nothing of it is committed
            assert not _tables(url) or _rows(url, "SELECT count(*) FROM a") == [(0,)]
    assert _rows(url, "SELECT count(*) FROM a") == [(7,)]  # committed, not recorded yet
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record
    assert _rows(url, "SELECT count(*), count(DISTINCT id) FROM a") == [(7, 7)]
    assert _rows(url, "SELECT count(*), count(DISTINCT id) FROM b") == [(10, 10)]


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_plan_data_counts_the_files_a_run_would_load_and_changes_nothing(project, tmp_path):
    inbox = _setup(project, f"sqlite sqlite:///{tmp_path / 'project/dw.db'}")
    (inbox / "items.csv").write_text("id,v\n1,a\n2,b\n3,c\n")
    data = services.plan_data(project.ws, services.plan(project.ws))
    (found,) = [t for t in data.tasks if t.task == "items"]
    assert (found.status, found.inserted) == ("counted", 3)
    assert found.note.startswith("1 file(s) to load,")  # a dry run loaded nothing
    assert not (project.root / "dw.db").exists() or _tables(f"sqlite:///{project.root / 'dw.db'}") == []
    services.apply(project.ws)
    assert services.run(project.ws, "load")["status"] == "succeeded"
    (inbox / "more.csv").write_text("id,v\n9,z\n")
    data = services.plan_data(project.ws, services.plan(project.ws), unchanged=True)
    counts = {t.task: (t.status, t.inserted) for t in data.tasks}
    assert counts == {"items": ("counted", 0), "more": ("counted", 1)}


def test_files_of_one_table_with_different_inferred_types_load_into_one(project, tmp_path):
    """One file's amounts fit decimal(3,2), the next one's decimal(6,2): the table takes both."""
    inbox = _setup(project, f"sqlite sqlite:///{tmp_path / 'project/dw.db'}")
    (inbox / "pay_1.csv").write_text("id,amount\n1,1.50\n")
    (inbox / "pay_2.csv").write_text("id,amount\n2,1234.5\n3,\n")
    os.utime(inbox / "pay_2.csv", (time.time() + 5, time.time() + 5))
    (inbox / "pay_3.csv").write_text("id,amount\n4,2.5\n")
    os.utime(inbox / "pay_3.csv", (time.time() + 9, time.time() + 9))
    project.write(
        "jobs.d/load.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: load}
        spec:
          {type: load_folder, source: inbox, target: dw, format: csv,
           table: "(?P<table>[a-z]+)_\\\\d\\\\.csv"}
        """,
    )
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record
    url = f"sqlite:///{tmp_path / 'project/dw.db'}"
    assert _rows(url, "SELECT id, amount FROM pay ORDER BY id") == [
        (1, 1.5),
        (2, 1234.5),
        (3, None),
        (4, 2.5),
    ]


def test_a_file_the_pattern_does_not_match_is_left_alone(project, tmp_path):
    inbox = _setup(project, f"sqlite sqlite:///{tmp_path / 'project/dw.db'}")
    (inbox / "items.csv").write_text("id\n1\n")
    (inbox / "notes.csv").write_text("whatever\n")
    project.write(
        "jobs.d/load.yaml",
        """
        apiVersion: runner/v1
        kind: Job
        metadata: {name: load}
        spec: {type: load_folder, source: inbox, target: dw, format: csv, table: "(?P<table>items)\\\\.csv"}
        """,
    )
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded" and [t["name"] for t in record["tasks"]] == ["items"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_later_file_is_read_in_its_tables_types(project, tmp_path, request, kind):
    """A file whose sample of a column is only empty cells loads into the table's typed column;
    one whose value does not fit the table's type is named with its line and column (not as a
    type change of the whole column) and waits for the next run."""
    spec = _target(kind, tmp_path, request)
    url = spec.split(" ", 1)[1]
    inbox = _setup(project, spec, '  table: "(?P<table>[a-z]+)_\\\\d\\\\.csv"')
    (inbox / "pay_1.csv").write_text("id,amount,paid\n1,1.50,true\n2,2.25,false\n")
    services.apply(project.ws)
    assert services.run(project.ws, "load")["status"] == "succeeded"
    (inbox / "pay_2.csv").write_text("id,amount,paid\n3,3.75,\n4,,\n")
    (inbox / "pay_3.csv").write_text("id,amount,paid\n5,5.00,true\n6,lots,false\n")
    record = services.run(project.ws, "load")
    (task,) = record["tasks"]
    assert task["status"] == "failed" and task["inserted"] == 2
    assert task["error"].startswith("pay_3.csv:3: amount: 'lots' is not a number"), task["error"]
    got = _rows(url, "SELECT id, amount, paid FROM pay ORDER BY id")
    assert [(r[0], r[1] is None, r[2]) for r in got] == [
        (1, False, 1),
        (2, False, 0),
        (3, False, None),
        (4, True, None),
    ]
    (inbox / "pay_3.csv").write_text("id,amount,paid\n5,5.00,true\n6,6.00,false\n")
    assert services.run(project.ws, "load")["status"] == "succeeded"
    assert [r[0] for r in _rows(url, "SELECT id FROM pay ORDER BY id")] == [1, 2, 3, 4, 5, 6]


def test_a_load_folder_jobs_tasks_are_the_tables_it_loaded(project, tmp_path):
    """`runner tasks` and the API's GET /jobs/{name} (the demo's inbox-to-warehouse) list the
    tables its runs loaded, with their last run, instead of refusing the job (400) or failing
    on a task without a delete mode (a traceback)."""
    from fastapi.testclient import TestClient

    from runner.api.app import create_app
    from tests.daemon.conftest import runner_cli

    inbox = _setup(project, f"sqlite sqlite:///{tmp_path / 'project/dw.db'}")
    (inbox / "items.csv").write_text("id,v\n1,a\n2,b\n")
    (inbox / "notes.csv").write_text("id,v\n1,x\n")
    services.apply(project.ws)
    run_id = services.run(project.ws, "load")["run_id"]
    tasks = services.tasks(project.ws, "load", expand=False)
    assert [
        (t["task"], t["target"], t["last_run"]["run_id"], t["last_run"]["rows_written"]) for t in tasks
    ] == [
        ("items", "items", run_id, 2),
        ("notes", "notes", run_id, 1),
    ]
    shown = runner_cli(project.root, "tasks", "load")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stderr and "items" in shown.stdout and "notes" in shown.stdout
    key = services.keys_create(project.ws, "reader", "read")
    with TestClient(create_app(project.ws, None)) as client:
        got = client.get("/api/v1/jobs/load", headers={"Authorization": f"Bearer {key}"})
    assert got.status_code == 200, got.text
    assert [t["task"] for t in got.json()["tasks"]] == ["items", "notes"]

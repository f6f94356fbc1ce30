"""A folder as a target: each committed batch of changes becomes one file (CSV, JSON lines or
Parquet) that appears whole or not at all, with every canonical value written as documented,
deletes as lines of their own, and nothing written by a dry run or left visible by a kill."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runner import services
from runner.changes.task import RunOptions
from runner.workspace import Workspace
from tests.contract import canonical
from tests.contract.harness import Harness, make_harness
from tests.contract.test_messaging import _canonical, _decode
from tests.engine.test_crash import kill_at


def files_connection(project, name: str, path: Any) -> None:
    """A files connection `name` on the folder `path` (relative to the definitions folder)."""
    project.write(
        f"connections.d/{name}.yaml",
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: {name}}}\n"
        f"spec: {{type: files, path: '{path}'}}\n",
    )


@pytest.fixture
def lite(request: pytest.FixtureRequest, tmp_path) -> Iterator[Harness]:
    yield make_harness("sqlite", request, tmp_path)


def _spec(tmp_path: Path) -> dict[str, Any]:
    return {"type": "files", "path": str(tmp_path / "lake")}


def _files(tmp_path: Path) -> list[Path]:
    return sorted(p for p in (tmp_path / "lake").rglob("*") if p.is_file())


def _task(strategy: str = "full", **write: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "read": {"table": "items"},
        "write": {"keys": ["id"], **write},
        "changes": {"strategy": strategy},
    }


def test_parquet_keeps_every_canonical_value_in_its_arrow_type(mem, sync, tmp_path):
    import pyarrow.parquet as pq

    mem.seed("items", canonical.COLUMNS, canonical.rows())
    (result,) = sync(mem.spec, _spec(tmp_path), [_task(format="parquet")], batch_size=100)
    assert (result.status, result.upserted) == ("succeeded", canonical.ROWS), result.error
    (path,) = _files(tmp_path)
    assert path.name.endswith("-1.parquet") and path.parent.name == "t"
    table = pq.read_table(path)
    assert table.schema.names == ["_op", *(c.name for c in canonical.COLUMNS)]
    assert str(table.schema.field("money").type) == "decimal128(12, 2)"
    assert str(table.schema.field("seen_tz").type) == "timestamp[us, tz=UTC]"
    got = []
    for record in table.to_pylist():
        assert record.pop("_op") == "upsert"
        row = []
        for c in canonical.COLUMNS:
            value = record[c.name]
            if c.type.kind == "json" and value is not None:
                value = json.loads(value)
            elif c.type.kind == "uuid" and value is not None:
                value = _decode("uuid", value)
            elif c.type.kind == "timestamptz" and value is not None:
                value = value.replace(tzinfo=None)
            row.append(value)
        got.append(tuple(row))
    assert got == [_canonical(r) for r in canonical.rows()]


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_json_lines_and_csv_write_the_documented_text(mem, sync, tmp_path, compression):
    import gzip

    mem.seed("items", canonical.COLUMNS, canonical.rows())
    tasks = [
        {
            **_task(format="jsonl", compression=compression, file="j/{{ run_id }}-{{ part }}.jsonl"),
            "name": "j",
        },
        {**_task(format="csv", compression=compression, file="c/{{ run_id }}-{{ part }}.csv"), "name": "c"},
    ]
    results = sync(mem.spec, _spec(tmp_path), tasks, batch_size=100)
    assert all(r.status == "succeeded" for r in results), [r.error for r in results]
    (jsonl,) = [p for p in _files(tmp_path) if p.parent.name == "j"]
    (csv_file,) = [p for p in _files(tmp_path) if p.parent.name == "c"]
    opener = gzip.open if compression == "gzip" else open
    assert jsonl.suffix == (".gz" if compression == "gzip" else ".jsonl")
    with opener(jsonl, "rt", encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    decoded = [tuple(_decode(c.type.kind, line[c.name]) for c in canonical.COLUMNS) for line in lines]
    assert decoded == [_canonical(r) for r in canonical.rows()]
    with opener(csv_file, "rt", encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    assert len(records) == canonical.ROWS
    second = records[1]  # the row of extreme values
    assert second["_op"] == "upsert" and second["money"] == "99999999.99" and second["flag"] == "true"
    assert second["note"] == "tab\tand\nnewline, \\N and form\x0cfeed"
    assert second["seen_tz"] == "2024-06-01T06:30:00.123456Z"
    assert records[0]["name"] == ""  # NULL: the default null marker


def test_changes_and_deletes_are_lines_of_their_own_in_a_new_file(lite, sync, tmp_path):
    lite.seed("items", canonical.COLUMNS, canonical.rows(6))
    task = {**_task("hash", format="jsonl"), "deletes": "propagate"}
    (first,) = sync(lite.spec, _spec(tmp_path), [task])
    assert len(_files(tmp_path)) == 2  # 6 rows in batches of 5: a file per committed batch
    before = set(_files(tmp_path))
    lite.seed("items", canonical.COLUMNS, canonical.rows(6, stamp=1)[4:5])
    lite.delete("items", canonical.COLUMNS, [(6,)])
    (second,) = sync(lite.spec, _spec(tmp_path), [task])
    assert (first.upserted, second.upserted, second.deleted) == (6, 1, 1)
    new = sorted(set(_files(tmp_path)) - before)  # the changed rows, then the deleted keys
    lines = [json.loads(line) for path in new for line in path.read_text().splitlines()]
    assert [(line["_op"], line["id"]) for line in lines] == [("upsert", 5), ("delete", 6)]
    assert lines[1]["note"] is None  # a delete: its key, the rest empty


def test_a_dry_run_writes_nothing(lite, sync, tmp_path):
    lite.seed("items", canonical.COLUMNS, canonical.rows(3))
    (dry,) = sync(lite.spec, _spec(tmp_path), [_task("hash")], options=RunOptions(dry_run=True))
    assert (dry.status, dry.upserted) == ("succeeded", 3)
    assert not (tmp_path / "lake").exists() or _files(tmp_path) == []


def test_a_file_is_never_overwritten_nor_written_outside_its_folder(lite, sync, tmp_path):
    lite.seed("items", canonical.COLUMNS, canonical.rows(3))
    (outside,) = sync(lite.spec, _spec(tmp_path), [_task(file="../escape.csv")])
    assert outside.status == "failed" and "is not a file within the folder" in outside.error
    (fixed,) = sync(lite.spec, _spec(tmp_path), [_task(file="same.csv")])
    assert fixed.status == "succeeded"
    (again,) = sync(lite.spec, _spec(tmp_path), [_task(file="same.csv")])
    assert again.status == "failed" and "a file is never overwritten" in again.error
    assert [p.name for p in _files(tmp_path)] == ["same.csv"]


def test_a_kill_while_writing_leaves_no_visible_half_file(project, tmp_path):
    """Killed with a batch written to its hidden file (`write`), then with a file complete but
    its digests not recorded (`committed`): only whole files are visible, and folding every
    file's lines in order gives exactly the source."""
    db = project.root / "src.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"v1 {i}") for i in range(1, 31)])
    con.commit()
    project.connection("src", "sqlite", "sqlite:///src.db")
    files_connection(project, "lake", "lake")
    task = {**_task("hash", format="csv"), "deletes": "propagate"}
    job = {"source": "src", "target": "lake", "batch_size": 7, "tasks": [task]}
    project.write(
        "jobs.d/sync.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: sync}}\nspec: {json.dumps(job)}\n",
    )
    services.apply(project.ws)
    project.ws.close()
    kill_at(project, "write", tmp_path)
    lake = project.root / "lake"
    hidden = [p for p in lake.rglob("*") if p.is_file() and p.name.startswith(".")]
    assert hidden and all(p.name.endswith(".partial") for p in hidden)  # the half file is hidden
    con.execute("UPDATE items SET note = 'v2' WHERE id > 25")
    con.commit()
    kill_at(project, "committed", tmp_path)
    con.execute("DELETE FROM items WHERE id IN (2, 28)")
    con.commit()
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    state: dict[int, str] = {}
    for path in sorted(p for p in lake.rglob("*.csv") if not p.name.startswith(".")):  # run ids sort by time
        with open(path, newline="") as f:
            for record in csv.DictReader(f):
                if record["_op"] == "delete":
                    state.pop(int(record["id"]), None)
                else:
                    state[int(record["id"])] = record["note"]
    assert state == dict(con.execute("SELECT id, note FROM items"))


def test_a_folder_holding_the_definitions_is_refused(project, monkeypatch, tmp_path):
    """A files connection at the definitions folder (`path: .`) or above it, or above a folder
    the operator lets secrets be read from: a task (one an API key added, say) could read the
    `${file:}` secrets into a table, or write a job into jobs.d/ that the daemon applies as it
    changes, without a review."""
    with sqlite3.connect(project.root / "src.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO items VALUES (1, 'a')")
    project.write("secrets/db", "pa55word-in-a-file\n")
    mounted = tmp_path / "mounts" / "secrets"
    mounted.mkdir(parents=True)
    monkeypatch.setenv("RUNNER_SECRET_DIRS", str(mounted))
    project.connection("src", "sqlite", "sqlite:///src.db")
    files_connection(project, "here", ".")
    files_connection(project, "mounts", mounted.parent)
    files_connection(project, "lake", "data/lake")
    project.job(
        "leak", "here", "src", "- {name: t, read: {files: 'secrets/*', format: csv}, write: {table: t}}"
    )
    project.job(
        "plant",
        "src",
        "here",
        "- {name: t, read: {table: items}, write: {keys: [id], file: 'jobs.d/x.yaml'}}",
    )
    project.job(
        "mounted", "mounts", "src", "- {name: t, read: {files: '*/*', format: csv}, write: {table: m}}"
    )
    project.job("fine", "src", "lake", "- {name: t, read: {table: items}, write: {keys: [id]}}")
    services.apply(project.ws)
    for job, folder in (("leak", project.root), ("plant", project.root), ("mounted", mounted.parent)):
        record = services.run(project.ws, job)
        assert record["status"] == "failed", job
        error = record["tasks"][0]["error"]
        assert f"its folder {folder.resolve()} holds " in error and "where secrets are read from" in error
    assert services.run(project.ws, "fine")["status"] == "succeeded"
    assert sorted(p.name for p in (project.root / "jobs.d").iterdir()) == [
        "fine.yaml",
        "leak.yaml",
        "mounted.yaml",
        "plant.yaml",
    ]
    with sqlite3.connect(project.root / "src.db") as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["items"]


def _dump_each(project, ws: Workspace, folder: str, files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A one-row SQLite table written into the files connection `folder` by one task per file
    template (`files`: task -> template), each task run on its own, in that order: their run
    records."""
    with sqlite3.connect(project.root / "src.db") as db:
        db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, v TEXT)")
        db.execute("INSERT INTO items VALUES (1, 'a')")
    project.connection("src", "sqlite", "sqlite:///src.db")
    tasks = "\n".join(
        f"- {{name: {name}, read: {{table: items}}, write: {{keys: [id], format: jsonl, file: '{file}'}}}}"
        for name, file in files.items()
    )
    project.job("dump", "src", folder, tasks)
    services.apply(ws)
    return {n: services.run(ws, "dump", RunOptions(tasks=[n])) for n in files}


def _status(record: dict[str, Any]) -> tuple[str, str]:
    """A one-task run's task status and error ("" when none)."""
    return record["tasks"][0]["status"], record["tasks"][0].get("error") or ""


def test_a_link_in_the_folder_never_takes_a_file_into_the_definitions(project):
    """A folder of data holding a link to jobs.d/ (or .runner/): a file written through it
    would be a definition the daemon applies as it changes, without a review (a JSON line is a
    YAML mapping), or an unreadable one that stops every apply, or a record in the history."""
    (project.root / "data").mkdir()
    (project.root / "data/defs").symlink_to("../jobs.d")
    (project.root / ".runner").mkdir(exist_ok=True)
    (project.root / "data/state").symlink_to("../.runner")
    files_connection(project, "data", "data")
    runs = _dump_each(
        project,
        project.ws,
        "data",
        {
            "out": "out/{{ run_id }}.jsonl",
            "jobs": "defs/{{ run_id }}.yaml",
            "state": "state/history/default/other/{{ run_id }}.json",
        },
    )
    status = {n: _status(r) for n, r in runs.items()}
    assert status["out"] == ("succeeded", "")
    for name in ("jobs", "state"):
        assert status[name][0] == "failed" and "a task never writes the definitions" in status[name][1]
    assert sorted(p.name for p in (project.root / "jobs.d").iterdir()) == ["dump.yaml"]
    assert not (project.root / ".runner/history/default/other").exists()
    assert [p.suffix for p in (project.root / "data/out").iterdir()] == [".jsonl"]


def test_no_task_writes_into_a_history_folder_or_state_store_kept_elsewhere(project, tmp_path):
    """The history folder (`--history`, RUNNER_HISTORY) and a SQLite state store (RUNNER_STATE)
    kept outside the definitions folder are runner's own too: a file written into the history
    would be a forged run record, one beside the store its journal."""
    shared = tmp_path / "shared"
    shared.mkdir()
    ws = Workspace(project.root, f"sqlite:///{shared / 'state.db'}", shared / "history")
    files_connection(project, "shared", shared)
    runs = _dump_each(
        project,
        ws,
        "shared",
        {
            "out": "out/{{ run_id }}.jsonl",
            "history": "history/default/other/{{ run_id }}.json",
            "journal": "state.db-journal",
        },
    )
    status = {n: _status(r) for n, r in runs.items()}
    assert status["out"] == ("succeeded", "")
    for name in ("history", "journal"):
        assert status[name][0] == "failed" and "runner's own files" in status[name][1], status[name]
    assert not (shared / "history/default/other").exists()
    assert not (shared / "state.db-journal").exists()
    (written,) = (shared / "out").iterdir()
    assert written.suffix == ".jsonl"
    log = ws.history / "default" / "dump" / f"{runs['out']['run_id']}.log.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["file"] for e in lines if e["message"] == "file written"] == [f"out/{written.name}"]


def test_a_file_name_that_repeats_is_a_validate_warning(project, monkeypatch):
    """A `write.file` without `part` (a run's second batch) or without `run_id`/`started` (the
    next run) names two files alike, and a file is never overwritten: valid, but `validate`
    says where and why."""
    from typer.testing import CliRunner

    from runner.cli.app import app

    project.connection("src", "sqlite", "sqlite:///src.db")
    files_connection(project, "lake", "lake")
    project.job(
        "export",
        "src",
        "lake",
        """
        - {name: a, read: {table: items}, write: {file: out.csv}}
        - {name: b, read: {table: items}, write: {file: "{{ run_id }}.csv"}}
        - {name: c, read: {table: items}, write: {file: "x-{{ part }}.csv"}}
        - {name: d, read: {table: items}, write: {file: "{{ started.strftime('%Y') }}/{{ part }}.csv"}}
        - {name: e, read: {table: items}, write: {format: csv}}
        """,
    )
    monkeypatch.chdir(project.root)
    result = CliRunner().invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "jobs.d/export.yaml:8:47: spec.tasks[0].write.file: warning: 'out.csv' names every file alike: "
        "without {{ run_id }} and {{ part }}, the next run (or a second batch) stops at a file that exists: "
        "a file is never overwritten (hint: name the files by {{ run_id }}-{{ part }}, as the default does)",
        "jobs.d/export.yaml:9:47: spec.tasks[1].write.file: warning: '{{ run_id }}.csv' names every file "
        "of a run alike: without {{ part }}, a run that commits a second batch stops at its second file: a "
        "file is never overwritten (hint: name the files by {{ run_id }}-{{ part }}, as the default does)",
        "jobs.d/export.yaml:10:47: spec.tasks[2].write.file: warning: 'x-{{ part }}.csv' names the files of "
        "every run alike: without {{ run_id }} (or {{ started }}), the next run stops at its first file: a "
        "file is never overwritten (hint: name the files by {{ run_id }}-{{ part }}, as the default does)",
    ]

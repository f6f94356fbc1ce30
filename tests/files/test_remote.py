"""A folder on an FTP or SFTP server as a source and as a target: real servers on loopback
(`tests.files.servers`). Files are listed and streamed from the server; a written file appears
under its name only once complete (a rename: RNFR/RNTO, SFTP's posix-rename), even when the run
is killed; the password never shows in an error; an SFTP server must show the stated key."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from runner import services
from tests.contract import canonical
from tests.contract.harness import Harness, make_harness
from tests.engine.test_crash import kill_at
from tests.files.servers import PASSWORD, Server

COLUMNS = {"id": "bigint", "name": "text", "amount": "decimal(10,2)"}


@pytest.fixture(params=["ftp", "sftp"])
def server(request: pytest.FixtureRequest) -> Server:
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def lite(request: pytest.FixtureRequest, tmp_path) -> Iterator[Harness]:
    yield make_harness("sqlite", request, tmp_path)


def _visible(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_files_on_a_server_are_read_by_pattern_and_format(server, lite, sync):
    data = server.root / "data"
    (data / "2024").mkdir()
    (data / "a.csv").write_text("id,name,amount\n1,Ana,1.50\n")
    (data / "2024/b.csv").write_text("id,name,amount\n2,Zoë,-2\n")
    (data / ".hidden.csv").write_text("id,name,amount\n9,no,0\n")
    read = {"files": "**/*.csv", "format": "csv", "columns": COLUMNS, "path_column": "file"}
    task = {"name": "t", "read": read, "write": {"table": "items", "keys": ["id"]}}
    (result,) = sync(server.connection(), lite.spec, [task])
    assert result.status == "succeeded", result.error
    assert sorted(lite.rows("items")) == [
        (1, "Ana", Decimal("1.50"), "a.csv"),
        (2, "Zoë", Decimal("-2"), "2024/b.csv"),
    ]
    (data / "c.json").write_text('[{"id": 3, "name": "x", "amount": 3}]')
    array = {"files": "*.json", "format": "json", "columns": COLUMNS}
    (second,) = sync(server.connection(), lite.spec, [{**task, "read": array}])
    assert (second.status, second.rows_read) == ("succeeded", 1), second.error


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_files_written_to_a_server_appear_whole_and_read_back(server, lite, sync, fmt):
    lite.seed("items", canonical.COLUMNS, canonical.rows(7))
    write = {"keys": ["id"], "format": fmt, "file": "out/{{ run_id }}-{{ part }}.{{ ext }}"}
    task = {"name": "t", "read": {"table": "items"}, "write": write}
    (result,) = sync(lite.spec, server.connection(), [task])
    assert (result.status, result.upserted) == ("succeeded", 7), result.error
    written = _visible(server.root / "data")
    assert written and all(name.startswith("out/") and name.endswith(f".{fmt}") for name in written)
    back = {"files": f"out/*.{fmt}", "format": fmt}
    if fmt == "csv":
        back["columns"] = {"_op": "text", "id": "bigint", "note": "text"}
    read = {"name": "r", "read": back, "write": {"table": "back"}}
    (again,) = sync(server.connection(), lite.spec, [read])
    assert (again.status, again.rows_read) == ("succeeded", 7), again.error


def test_a_wrong_password_fails_without_showing_it(server, lite, sync, monkeypatch):
    monkeypatch.setenv("FILES_PW", "wrong-" + PASSWORD)
    task = {
        "name": "t",
        "read": {"files": "*.csv", "format": "csv", "columns": COLUMNS},
        "write": {"table": "x"},
    }
    (result,) = sync(server.connection(), lite.spec, [task])
    assert result.status == "failed" and "cannot sign in" in result.error, result.error
    assert PASSWORD not in result.error and "wrong-" not in result.error


def test_sftp_signs_in_with_a_key_and_refuses_another_host_key(sftp_server, lite, sync, tmp_path):
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys/id").write_text(sftp_server.private_key)
    (sftp_server.root / "data/a.csv").write_text("id,name,amount\n1,a,1\n")
    task = {"name": "t", "read": {"files": "*.csv", "format": "csv"}, "write": {"table": "items"}}
    keyed = sftp_server.connection(private_key="${file:keys/id}")
    del keyed["password"]
    (result,) = sync(keyed, lite.spec, [task])
    assert (result.status, result.rows_read) == ("succeeded", 1), result.error
    other = sftp_server.connection(host_key="ssh-ed25519 " + "A" * 68)
    (refused,) = sync(other, lite.spec, [task])
    assert refused.status == "failed" and "other than host_key: nothing was sent" in refused.error


def test_connections_to_servers_are_checked_where_they_are_defined(project):
    project.write(
        "connections.d/c.yaml",
        """
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: plain}
        spec: {type: files, protocol: ftp, host: ftp.example.com, username: u, password: "${env:P}", path: x}
        ---
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: nokey}
        spec: {type: files, protocol: sftp, host: 127.0.0.1, username: u, password: "${env:P}", path: x}
        ---
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: written}
        spec:
          {type: files, protocol: sftp, host: h, host_key: "ssh-ed25519 AAAA", username: u, password: hunter2,
           path: x}
        ---
        apiVersion: runner/v1
        kind: Connection
        metadata: {name: local}
        spec: {type: files, host: h, path: x}
        """,
    )
    from runner.errors import DefinitionsInvalid

    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    text = "\n".join(str(p) for p in info.value.problems)
    assert "FTP would send the password to ftp.example.com in the clear" in text
    assert "sftp needs the server's 'host_key'" in text
    assert "the password is written out" in text and "hunter2" not in text
    assert "host: for a folder on a server (protocol ftp or sftp) only" in text


def test_a_kill_while_writing_to_a_server_leaves_no_visible_half_file(server, project, tmp_path):
    """Killed once its file is complete on the server under its hidden name, not yet renamed:
    nothing is visible; the next run writes every row, once."""
    import sqlite3

    db = project.root / "src.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, note TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"n{i}") for i in range(1, 11)])
    con.commit()
    con.close()
    project.connection("src", "sqlite", "sqlite:///src.db")
    spec = server.connection()
    project.write(
        "connections.d/lake.yaml",
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: lake}}\nspec: {json.dumps(spec)}\n",
    )
    task = {
        "name": "t",
        "read": {"table": "items"},
        "write": {"keys": ["id"], "format": "jsonl"},
        "changes": {"strategy": "hash"},
    }
    job = {"source": "src", "target": "lake", "batch_size": 100, "tasks": [task]}
    project.write(
        "jobs.d/sync.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: sync}}\nspec: {json.dumps(job)}\n",
    )
    services.apply(project.ws)
    project.ws.close()
    kill_at(project, "file written", tmp_path)
    data = server.root / "data"
    files = [p for p in data.rglob("*") if p.is_file()]
    assert files and all(p.name.startswith(".") and p.name.endswith(".partial") for p in files)
    assert services.run(project.ws, "sync")["status"] == "succeeded"
    visible = [p for p in data.rglob("*.jsonl") if not p.name.startswith(".")]
    ids = sorted(json.loads(line)["id"] for p in visible for line in p.read_text().splitlines())
    assert ids == list(range(1, 11))
    assert os.environ.get("FILES_PW") == PASSWORD


def test_load_folder_reads_a_server_folder_and_dead_letters_go_there(server, project, tmp_path):
    """A load_folder job from a server (its first file's sample read and the transfer closed
    early, then the file streamed whole), and a sync task's bad rows appended on the server."""
    data = server.root / "data"
    big = "".join(
        f"{i},name {i:07d} with a little padding to make the line longer\n" for i in range(1, 40_001)
    )
    (data / "big.csv").write_text(
        "id,name\n" + big
    )  # ~2.5 MB: more than the sample, more than a socket's buffer
    (data / "small.csv").write_text("id,name\n1,a\n")
    project.write(
        "connections.d/c.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: srv}\n"
        f"spec: {json.dumps(server.connection())}\n",
    )
    project.connection("dw", "sqlite", "sqlite:///dw.db")
    spec = {"type": "load_folder", "source": "srv", "target": "dw", "files": "*.csv", "format": "csv"}
    project.write(
        "jobs.d/load.yaml",
        f"apiVersion: runner/v1\nkind: Job\nmetadata: {{name: load}}\nspec: {json.dumps(spec)}\n",
    )
    (tested,) = services.connections_test(project.ws, "srv")  # `runner connections test srv`
    assert tested["ok"] and PASSWORD not in json.dumps(tested), tested
    services.apply(project.ws)
    record = services.run(project.ws, "load")
    assert record["status"] == "succeeded", record
    assert {t["name"]: t["inserted"] for t in record["tasks"]} == {"big": 40_000, "small": 1}
    assert services.run(project.ws, "load")["tasks"][0]["rows_read"] == 0  # each file once


def test_bad_rows_are_dead_lettered_on_the_server(server, lite, sync):
    data = server.root / "data"
    (data / "a.csv").write_text("id,name,amount\n1,a,1\n2,b,lots\n3,c,3\n4,d\n")
    read = {
        "files": "a.csv",
        "format": "csv",
        "columns": COLUMNS,
        "bad_rows": "dead_letter",
        "dead_letter": "bad",
    }
    (result,) = sync(
        server.connection(), lite.spec, [{"name": "t", "read": read, "write": {"table": "items"}}]
    )
    assert (result.status, result.rows_read) == ("succeeded", 2), result.error
    lines = [json.loads(x) for x in (data / "bad/a.csv.rejected").read_text().splitlines()]
    assert [(x["line"], x["reason"][:7]) for x in lines] == [(3, "amount:"), (5, "2 field")]

"""Transforms between reader and writer, with real outcomes: the rows in the target after each
step type, over SQLite, PostgreSQL, files and a broker as the source, with the full, watermark
and hash strategies (and messages); the filter's count in the run log and the history; a
masked value never written anywhere; validate's located errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import textwrap
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runner import services
from runner.errors import DefinitionsInvalid
from tests.conftest import Project
from tests.contract.brokers import make_broker

SALT = "pepper-for-tests"
TRANSFORMS = """
  transforms:
    - {type: compute, column: full_name, expression: "first ~ ' ' ~ last"}
    - {type: filter, expression: "status != 'cancelled'"}
    - {type: filter, column: phone, regex: "^000", keep: false}
    - {type: rename, columns: {first: first_name}}
    - {type: drop, columns: [last, status]}
    - {type: cast, columns: {amount: "decimal(10,2)"}}
    - {type: mask, column: email, salt: "${env:MASK_SALT}"}
    - {type: mask, column: phone, method: redact, replacement: "(hidden)"}
"""
ROWS = [
    (1, "Ana", "Lee", "ana@example.org", "555-1", "12.5", "ok", "2024-01-01 10:00:00"),
    (2, "Bo", "Kim", "bo@example.org", "555-2", "3", "cancelled", "2024-01-02 10:00:00"),
    (3, "Cy", "Ng", None, "000-3", "7.25", "ok", "2024-01-03 10:00:00"),
    (4, "Di", "Wu", "di@example.org", None, "1", "ok", "2024-01-04 10:00:00"),
]
CREATE = (
    "CREATE TABLE people (id integer PRIMARY KEY, first varchar(20), last varchar(20), email varchar(40), "
    "phone varchar(20), amount varchar(10), status varchar(10), updated_at timestamp)"
)


def digest(value: str) -> str:
    return hmac.new(SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


def expected(rows: list[tuple]) -> list[tuple]:
    """What the target holds for source `rows`: the transforms applied by hand."""
    out = []
    for id_, first, last, email, phone, amount, status, _ in rows:
        if status == "cancelled" or (phone or "").startswith("000"):
            continue
        hidden = None if phone is None else "(hidden)"
        out.append((id_, first, digest(email) if email else None, hidden, Decimal(amount), f"{first} {last}"))
    return out


class Sql:
    """A SQL source and target for one test: the `people` table in the source, its copy read back."""

    def __init__(self, kind: str, project: Project, url: str | None):
        self.kind, self.project = kind, project
        if kind == "sqlite":
            self.src_url, self.dst_url = "sqlite:///src.db", "sqlite:///dst.db"
            self.src = sa.create_engine(f"sqlite:///{project.root / 'src.db'}")
            self.dst = sa.create_engine(f"sqlite:///{project.root / 'dst.db'}")
        else:  # one database: the source table `src.people` (PostgreSQL) or `src_people`
            assert url is not None
            self.src_url = self.dst_url = url
            self.src = self.dst = sa.create_engine(url)
            if kind == "postgresql":
                with self.src.begin() as c:
                    c.exec_driver_sql("CREATE SCHEMA src")
        self.table = {"sqlite": "people", "postgresql": "src.people", "mariadb": "src_people"}[kind]
        with self.src.begin() as c:
            c.exec_driver_sql(CREATE.replace("people", self.table, 1))
        project.connection("src", kind, self.src_url)
        project.connection("dst", kind, self.dst_url)

    def put(self, rows: list[tuple]) -> None:
        with self.src.begin() as c:
            for row in rows:
                c.execute(sa.text(f"DELETE FROM {self.table} WHERE id = :id"), {"id": row[0]})
                c.execute(
                    sa.text(f"INSERT INTO {self.table} VALUES (:a, :b, :c, :d, :e, :f, :g, :h)"),
                    dict(zip("abcdefgh", row, strict=True)),
                )

    def delete(self, id_: int) -> None:
        with self.src.begin() as c:
            c.execute(sa.text(f"DELETE FROM {self.table} WHERE id = :id"), {"id": id_})

    def target(self) -> list[tuple]:
        with self.dst.connect() as c:
            rows = c.exec_driver_sql(
                "SELECT id, first_name, email, phone, amount, full_name FROM people ORDER BY id"
            ).all()
        return [(r[0], r[1], r[2], r[3], Decimal(str(r[4])), r[5]) for r in rows]

    def target_columns(self) -> list[str]:
        return [c["name"] for c in sa.inspect(self.dst).get_columns("people")]

    def close(self) -> None:
        self.src.dispose()
        self.dst.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def sql(request: pytest.FixtureRequest, project: Project, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MASK_SALT", SALT)
    urls = {"postgresql": "pg_url", "mariadb": "maria_url"}
    url = request.getfixturevalue(urls[request.param]) if request.param in urls else None
    s = Sql(request.param, project, url)
    yield s
    s.close()


def _job(project: Project, table: str, changes: str, deletes: str = "ignore") -> None:
    project.job(
        "copy",
        "src",
        "dst",
        textwrap.dedent(f"""
        - name: people
          read: {{table: {table}}}
          write: {{table: people, keys: [id]}}
          changes: {changes}
          deletes: {deletes}
        """).strip("\n")
        + TRANSFORMS,
    )


def _run(project: Project) -> dict[str, Any]:
    record = services.run(project.ws, "copy")
    (task,) = record["tasks"]
    assert task["status"] == "succeeded", task["error"]
    return task


@pytest.mark.parametrize(
    "changes",
    ["{strategy: full}", "{strategy: watermark, column: updated_at}", "{strategy: hash}"],
)
def test_every_step_shapes_the_rows_the_target_gets(sql: Sql, project: Project, changes: str):
    sql.put(ROWS)
    _job(project, sql.table, changes)
    services.apply(project.ws)
    task = _run(project)
    assert sql.target() == expected(ROWS)
    assert task["rows_read"] == 4 and task["filtered"] == 2 and task["inserted"] == 2
    assert task["unchanged"] == 0
    # the target's table has the transformed columns: renamed, dropped, computed, masked as text
    assert sql.target_columns() == ["id", "first_name", "email", "phone", "amount", "updated_at", "full_name"]

    # a change, a new row, a row that is filtered out from the start
    changed = [
        (1, "Ana", "Lee", "ana@new.example.org", "555-1", "13", "ok", "2024-02-01 10:00:00"),
        (5, "Ed", "Fox", "ed@example.org", "555-5", "2.5", "ok", "2024-02-02 10:00:00"),
        (6, "Fi", "Ray", "fi@example.org", "555-6", "9", "cancelled", "2024-02-03 10:00:00"),
    ]
    sql.put(changed)
    task = _run(project)
    now = {r[0]: r for r in ROWS} | {r[0]: r for r in changed}
    assert sql.target() == expected(sorted(now.values()))
    assert task["inserted"] == 1 and task["updated"] == 1
    assert task["filtered"] >= 1  # watermark and hash read only what changed; full reads 2 old ones too
    log = services.logs(project.ws, "copy", last=True)
    (done,) = [line for line in log if line.get("message") == "task succeeded"]
    assert done["filtered"] == task["filtered"]


def test_full_with_deletes_removes_a_row_that_stops_passing_the_filter(sql: Sql, project: Project):
    sql.put(ROWS)
    _job(project, sql.table, "{strategy: full}", deletes="propagate")
    services.apply(project.ws)
    _run(project)
    sql.put([(1, "Ana", "Lee", "ana@example.org", "555-1", "12.5", "cancelled", "2024-03-01 10:00:00")])
    sql.delete(4)
    task = _run(project)
    assert sql.target() == []
    assert task["deleted"] == 2 and task["filtered"] == 3


def test_a_masked_value_is_written_nowhere(project: Project, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MASK_SALT", SALT)
    sql = Sql("sqlite", project, None)
    sql.put(ROWS)
    _job(project, "people", "{strategy: hash}")
    services.apply(project.ws)
    _run(project)
    sql.put([(1, "Ana", "Lee", "ana@changed.example.org", "555-1", "12.5", "ok", "2024-03-01 10:00:00")])
    _run(project)
    services.run(project.ws, "copy", services.RunOptions(dry_run=True))
    sql.close()
    originals = [b"ana@example.org", b"ana@changed.example.org", b"di@example.org", b"555-1", SALT.encode()]
    written = [p for p in project.root.rglob("*") if p.is_file() and p.name != "src.db"]
    assert any(p.name == "dst.db" for p in written)
    for path in written:
        data = path.read_bytes()
        for original in originals:
            assert original not in data, f"{original!r} written in {path}"
    with sqlite3.connect(project.root / "dst.db") as c:
        assert c.execute("SELECT email FROM people WHERE id = 1").fetchone() == (
            digest("ana@changed.example.org"),
        )


def test_a_salt_missing_at_run_time_fails_the_task_and_writes_nothing(project: Project):
    sql = Sql("sqlite", project, None)
    sql.put(ROWS)
    _job(project, "people", "{strategy: full}")
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    sql.close()
    assert record["tasks"][0]["status"] == "failed"
    assert "MASK_SALT" in record["tasks"][0]["error"]
    with sqlite3.connect(project.root / "dst.db") as c:
        assert c.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_column_a_table_lacks_fails_the_run_naming_the_field(project: Project):
    sql = Sql("sqlite", project, None)
    sql.put(ROWS)
    project.job(
        "copy",
        "src",
        "dst",
        """
        - name: people
          read: {table: people}
          write: {table: people, keys: [id]}
          transforms:
            - {type: rename, columns: {frist: first_name}}
        """,
    )
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    sql.close()
    error = record["tasks"][0]["error"]
    assert "jobs.d/copy.yaml:" in error
    assert "spec.tasks[0].transforms[0].columns.frist: column 'frist' is not among the columns" in error
    assert "did you mean 'first'?" in error


def _files_job(project: Project, changes: str, columns: bool = True) -> None:
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write(
        "connections.d/in.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: in}\nspec: {type: files, path: in}\n",
    )
    declared = (
        "columns: {id: bigint, first: text, last: text, email: text, phone: text, amount: text, "
        "status: text, updated_at: text}, "
        if columns
        else ""
    )
    project.job(
        "copy",
        "in",
        "dst",
        textwrap.dedent(f"""
        - name: people
          read: {{files: "*.csv", format: csv, {declared}modified_column: changed_at}}
          write: {{table: people, keys: [id]}}
          changes: {changes}
        """).strip("\n")
        + TRANSFORMS,
    )


def _csv(path: Path, rows: list[tuple]) -> None:
    lines = ["id,first,last,email,phone,amount,status,updated_at"]
    lines += [",".join("" if v is None else str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("changes", ["{strategy: full}", "{strategy: watermark, column: changed_at}"])
def test_files_into_sqlite(project: Project, monkeypatch: pytest.MonkeyPatch, changes: str):
    monkeypatch.setenv("MASK_SALT", SALT)
    (project.root / "in").mkdir()
    _csv(project.root / "in/a.csv", ROWS[:2])
    _files_job(project, changes)
    services.apply(project.ws)
    task = _run(project)
    assert task["filtered"] == 1
    _csv(project.root / "in/b.csv", ROWS[2:])
    task = _run(project)
    with sqlite3.connect(project.root / "dst.db") as c:
        rows = c.execute("SELECT id, first_name, email, phone, amount, full_name FROM people ORDER BY id")
        got = [(*r[:4], Decimal(str(r[4])), r[5]) for r in rows]
    # a CSV's empty field is NULL
    assert got == expected(ROWS)


def test_a_broker_source_with_deletes_carrying_keys_only(
    project: Project, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MASK_SALT", SALT)
    broker = make_broker("rabbitmq", request)
    request.addfinalizer(broker.close)
    assert broker.source is not None and broker.send is not None
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    spec = json.dumps(broker.spec)
    project.write(
        "connections.d/mq.yaml",
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: mq}}\nspec: {spec}\n",
    )
    read = broker.source | {
        "columns": {
            "id": "bigint",
            "first": "text",
            "last": "text",
            "email": "text",
            "phone": "text",
            "amount": "text",
            "status": "text",
            "updated_at": "text",
        }
    }
    project.job(
        "copy",
        "mq",
        "dst",
        textwrap.dedent(f"""
        - name: people
          read: {json.dumps(read)}
          write: {{table: people, keys: [id]}}
          changes: {{strategy: messages}}
          deletes: propagate
        """).strip("\n")
        + TRANSFORMS,
    )
    names = ["id", "first", "last", "email", "phone", "amount", "status", "updated_at"]

    def send(row: tuple) -> None:
        assert broker.send is not None
        broker.send(json.dumps(dict(zip(names, row, strict=True))).encode(), {})

    for row in ROWS:
        send(row)
    services.apply(project.ws)
    task = _run(project)
    assert (task["inserted"], task["filtered"], task["deleted"]) == (2, 2, 0)
    assert [r[0] for r in _people(project)] == [1, 4]
    # a delete carries the key only: the steps over other columns (filter, compute, mask) leave
    # it be; an update that stops passing the filter deletes its row
    broker.send(json.dumps({"id": 1}).encode(), {"runner-op": "delete"})
    send((4, "Di", "Wu", "di@example.org", None, "1", "cancelled", "2024-05-01 10:00:00"))
    fifth = (5, "Ed", "Fox", "ed@example.org", "555-5", "2.5", "ok", "2024-05-02 10:00:00")
    send(fifth)
    task = _run(project)
    assert (task["inserted"], task["filtered"], task["deleted"]) == (1, 1, 2)
    assert _people(project) == expected([fifth])


def _people(project: Project) -> list[tuple]:
    with sqlite3.connect(project.root / "dst.db") as c:
        rows = c.execute("SELECT id, first_name, email, phone, amount, full_name FROM people ORDER BY id")
        return [(*r[:4], Decimal(str(r[4])), r[5]) for r in rows]


def _problems(project: Project) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return sorted((f"{p.location.line}:{p.location.field}", p.message) for p in info.value.problems)


def test_validate_names_each_bad_step_with_its_line_and_field(project: Project):
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "copy",
        "src",
        "dst",
        """
        - name: t
          read: {table: x}
          write: {table: y, keys: [id]}
          transforms:
            - {type: filter, column: a, regex: "("}
            - {type: compute, column: c, expression: "a +"}
            - {type: mask, column: e, salt: literal}
            - {type: cast, columns: {q: nosuch}}
        """,
    )
    found = _problems(project)
    assert [f for f, _ in found] == [
        "12:spec.tasks[0].transforms[0].regex",
        "13:spec.tasks[0].transforms[1].expression",
        "14:spec.tasks[0].transforms[2].salt",
        "15:spec.tasks[0].transforms[3].columns.q",
    ]
    assert found[0][1].startswith("invalid regular expression")
    assert found[1][1].startswith("invalid expression")


def test_validate_follows_the_columns_through_the_steps(project: Project):
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write(
        "connections.d/in.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: in}\nspec: {type: files, path: in}\n",
    )
    project.job(
        "copy",
        "in",
        "dst",
        """
        - name: t
          read: {files: "*.csv", format: csv, columns: {id: bigint, a: text, b: text, ts: timestamp}}
          write: {table: y, keys: [id]}
          changes: {strategy: full}
          transforms:
            - {type: drop, columns: [b]}
            - {type: filter, expression: "b == 'x' or zz"}
            - {type: rename, columns: {id: ident}}
            - {type: cast, columns: {nope: integer}}
        """,
    )
    found = _problems(project)
    print(found)
    at = [f for f, _ in found]
    assert at == [
        "14:spec.tasks[0].transforms[1].expression",
        "14:spec.tasks[0].transforms[1].expression",
        "15:spec.tasks[0].transforms[2].columns.id",
        "16:spec.tasks[0].transforms[3].columns.nope",
    ]
    assert found[0][1].startswith("column 'b' is not among the columns here (drop at transforms[0])")
    assert found[1][1].startswith("column 'zz' is not among the columns here")
    assert "is a key column" in found[2][1]


def test_validate_refuses_a_filter_with_deletes_the_hash_strategy_cannot_honour(project: Project):
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "copy",
        "src",
        "dst",
        """
        - name: t
          read: {table: x}
          write: {table: y, keys: [id]}
          changes: {strategy: watermark, column: ts}
          deletes: propagate
          transforms:
            - {type: filter, column: a, regex: "x"}
            - {type: drop, columns: [ts]}
        - name: u
          read: {table: x}
          write: {table: z, keys: [id]}
          changes: {strategy: hash}
          deletes: soft
          transforms:
            - {type: filter, column: a, regex: "x"}
        """,
    )
    found = _problems(project)
    assert [f for f, _ in found] == [
        "15:spec.tasks[0].transforms[1].columns[0]",
        "22:spec.tasks[1].transforms[0].type",
    ]
    assert "the watermark column" in found[0][1]
    assert "a filter with deletes: soft needs strategy full, watermark, messages or cdc" in found[1][1]


def test_a_dry_run_into_no_table_counts_the_rows_a_filter_lets_through(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MASK_SALT", SALT)
    sql = Sql("sqlite", project, None)
    sql.put(ROWS)
    _job(project, "people", "{strategy: full}")
    services.apply(project.ws)
    record = services.run(project.ws, "copy", services.RunOptions(dry_run=True))
    sql.close()
    (task,) = record["tasks"]
    assert task["status"] == "succeeded", task["error"]
    assert (task["rows_would_write"], task["filtered"]) == (2, 2)
    (create,) = task["schema_changes"]
    assert '"full_name"' in create["ddl"] and '"last"' not in create["ddl"]


def test_describe_lists_each_task_s_transforms_in_words(project: Project, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MASK_SALT", SALT)
    sql = Sql("sqlite", project, None)
    _job(project, "people", "{strategy: full}")
    services.apply(project.ws)
    sql.close()
    steps = services.describe(project.ws, "Job", "copy")["transforms"]["people"]
    assert steps[0] == "compute full_name (text) = first ~ ' ' ~ last"
    assert steps[1] == "filter: keep rows where status != 'cancelled'"
    assert steps[6] == "mask email (hash)"
    assert SALT not in json.dumps(steps)


def test_the_run_line_and_the_history_file_count_the_rows_filtered_out(
    project: Project, monkeypatch: pytest.MonkeyPatch
):
    from typer.testing import CliRunner

    from runner.cli.app import app

    monkeypatch.setenv("MASK_SALT", SALT)
    sql = Sql("sqlite", project, None)
    sql.put(ROWS)
    _job(project, "people", "{strategy: full}")
    sql.close()
    base = ["--dir", str(project.root)]
    assert CliRunner().invoke(app, [*base, "apply"]).exit_code == 0
    result = CliRunner().invoke(app, [*base, "run", "copy"])
    assert result.exit_code == 0, result.stdout
    assert (
        "4 rows read → 2 inserted, 0 updated, 0 deleted, 0 unchanged, 2 filtered out in people"
        in result.stdout
    )
    (path,) = (project.root / ".runner/history").rglob("*.json")
    (task,) = json.loads(path.read_text())["tasks"]
    assert (task["rows_read"], task["inserted"], task["filtered"]) == (4, 2, 2)
    (run,) = services.runs(project.ws, "copy")
    log = services.logs(project.ws, run["run_id"])
    assert [line["filtered"] for line in log if line["message"] == "task succeeded"] == [2]


@pytest.mark.parametrize(
    "changes",
    ["{strategy: full}", "{strategy: watermark, column: updated_at}", "{strategy: hash}"],
)
def test_a_sql_compute_is_computed_in_the_source_s_read(sql: Sql, project: Project, changes: str):
    shout = "concat(upper(first), '!')" if sql.kind == "mariadb" else "upper(first) || '!'"
    sql.put(ROWS)
    project.job(
        "copy",
        "src",
        "dst",
        f"""
        - name: people
          read: {{table: {sql.table}}}
          write: {{table: people, keys: [id]}}
          changes: {changes}
          transforms:
            - {{type: compute, column: shout, sql: "{shout}"}}
            - {{type: compute, column: tenfold, sql: "id * 10", to: bigint}}
            - {{type: filter, expression: "tenfold > 10"}}
            - {{type: drop, columns: [first, last, email, phone, amount, status]}}
        """,
    )
    services.apply(project.ws)
    task = _run(project)
    assert task["source"] == sql.table and task["filtered"] == 1
    with sql.dst.connect() as c:
        got = c.exec_driver_sql("SELECT id, shout, tenfold FROM people ORDER BY id").all()
    assert [tuple(r) for r in got] == [(2, "BO!", 20), (3, "CY!", 30), (4, "DI!", 40)]
    sql.put([(3, "Cyd", "Ng", None, "000-3", "7.25", "ok", "2024-06-01 10:00:00")])
    task = _run(project)
    assert task["updated"] == 1
    with sql.dst.connect() as c:
        assert c.exec_driver_sql("SELECT shout FROM people WHERE id = 3").scalar() == "CYD!"
    kinds = {c["name"]: str(c["type"]).lower() for c in sa.inspect(sql.dst).get_columns("people")}
    assert "int" in kinds["tenfold"]


def test_a_sql_compute_needs_a_source_that_runs_queries_and_comes_first(project: Project):
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.write(
        "connections.d/in.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: in}\nspec: {type: files, path: in}\n",
    )
    project.job(
        "copy",
        "in",
        "dst",
        """
        - name: t
          read: {files: "*.csv", format: csv, columns: {id: bigint, a: text}}
          write: {table: y, keys: [id]}
          transforms:
            - {type: rename, columns: {a: b}}
            - {type: compute, column: c, sql: "upper(b)"}
        """,
    )
    ((where, message),) = _problems(project)
    assert where == "13:spec.tasks[0].transforms[1].sql" and "list it first" in message
    project.job(
        "copy",
        "in",
        "dst",
        """
        - name: t
          read: {files: "*.csv", format: csv, columns: {id: bigint, a: text}}
          write: {table: y, keys: [id]}
          transforms:
            - {type: compute, column: c, sql: "upper(a)"}
        """,
    )
    ((where, message),) = _problems(project)
    assert where == "12:spec.tasks[0].transforms[0].sql" and "query" in message, message
    project.job(
        "copy",
        "in",
        "dst",
        """
        - name: t
          read: {files: "*.csv", format: csv, columns: {id: bigint, a: text}}
          write: {table: y, keys: [id]}
          transforms:
            - {type: compute, column: d, expression: "a", sql: "a"}
        """,
    )
    ((where, message),) = _problems(project)
    assert where == "12:spec.tasks[0].transforms[0]" and message.startswith("give exactly one of")


def test_a_target_without_tables_gets_the_transformed_rows(project: Project, monkeypatch: pytest.MonkeyPatch):
    """A writer handed each row (files here, as a broker's): the same steps before it."""
    monkeypatch.setenv("MASK_SALT", SALT)
    sql = Sql("sqlite", project, None)
    sql.put(ROWS)
    project.write(
        "connections.d/lake.yaml",
        "apiVersion: runner/v1\nkind: Connection\nmetadata: {name: lake}\nspec: {type: files, path: lake}\n",
    )
    project.job(
        "copy",
        "src",
        "lake",
        textwrap.dedent("""
        - name: people
          read: {table: people}
          write: {keys: [id], format: jsonl}
          changes: {strategy: hash}
        """).strip("\n")
        + TRANSFORMS,
    )
    services.apply(project.ws)
    task = _run(project)
    sql.close()
    assert (task["upserted"], task["filtered"]) == (2, 2)
    lines = [
        json.loads(x)
        for p in sorted((project.root / "lake").rglob("*.jsonl"))
        for x in p.read_text().splitlines()
    ]
    got = [
        (r["id"], r["first_name"], r["email"], r["phone"], Decimal(r["amount"]), r["full_name"])
        for r in lines
    ]
    assert sorted(got) == expected(ROWS)
    assert "last" not in lines[0] and "status" not in lines[0]
    for path in (project.root / "lake").rglob("*"):
        if path.is_file():
            assert b"ana@example.org" not in path.read_bytes()


@pytest.mark.parametrize("deletes", ["propagate", "soft"])
def test_watermark_with_deletes_takes_out_a_row_that_stops_passing_the_filter(
    sql: Sql, project: Project, deletes: str
):
    sql.put(ROWS)
    _job(project, sql.table, "{strategy: watermark, column: updated_at}", deletes=deletes)
    services.apply(project.ws)
    _run(project)
    assert [r[0] for r in sql.target()] == [1, 4]
    sql.put([(1, "Ana", "Lee", "ana@example.org", "555-1", "12.5", "cancelled", "2024-03-01 10:00:00")])
    sql.delete(4)
    task = _run(project)
    assert (task["rows_read"], task["filtered"], task["deleted"]) == (1, 1, 2)
    if deletes == "propagate":
        assert sql.target() == []
    else:
        with sql.dst.connect() as c:
            marked = c.exec_driver_sql(
                "SELECT id FROM people WHERE _deleted_at IS NOT NULL ORDER BY id"
            ).all()
        assert [r[0] for r in marked] == [1, 4]


def test_the_hash_strategy_writes_every_row_again_when_the_steps_change(sql: Sql, project: Project):
    sql.put(ROWS)
    _job(project, sql.table, "{strategy: hash}")
    services.apply(project.ws)
    _run(project)
    assert _run(project)["unchanged"] == 4  # the digests include the steps: unchanged while they are
    job = project.root / "jobs.d/copy.yaml"
    job.write_text(job.read_text().replace("first ~ ' ' ~ last", "last ~ ', ' ~ first"))
    services.apply(project.ws)
    task = _run(project)
    assert (task["updated"], task["filtered"]) == (2, 2)
    assert [r[5] for r in sql.target()] == ["Lee, Ana", "Wu, Di"]


def test_a_decimal_column_and_a_float_literal_compute_an_exact_decimal(project: Project):
    """README's `amount * 1.19` over a decimal column: Python refuses Decimal * float, the
    sandbox reads the literal as the Decimal it shows, so the result is exact."""
    with sqlite3.connect(project.root / "src.db") as c:
        c.execute("CREATE TABLE orders (id integer PRIMARY KEY, amount decimal(12,2))")
        c.executemany("INSERT INTO orders VALUES (?, ?)", [(1, "10.00"), (2, "0.10")])
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", "sqlite", "sqlite:///dst.db")
    project.job(
        "copy",
        "src",
        "dst",
        """
        - name: orders
          read: {table: orders}
          write: {table: orders, keys: [id]}
          transforms:
            - {type: compute, column: gross, expression: "amount * 1.19", to: "decimal(12,2)"}
            - {type: compute, column: net, expression: "amount / 1.19 - 0.5 + 0.01", to: "decimal(12,4)"}
        """,
    )
    services.apply(project.ws)
    task = _run(project)
    assert task["rows_read"] == 2
    with sqlite3.connect(project.root / "dst.db") as c:
        rows = c.execute("SELECT id, gross, net FROM orders ORDER BY id").fetchall()
    # SQLite keeps a decimal as its number: compare at the stated scales
    got = [(i, round(Decimal(str(g)), 2), round(Decimal(str(n)), 4)) for i, g, n in rows]
    assert got == [(1, Decimal("11.90"), Decimal("7.9134")), (2, Decimal("0.12"), Decimal("-0.4060"))]


@pytest.mark.parametrize("target", ["sqlite", "postgresql", "mariadb"])
def test_a_decimal_to_rounds_to_its_scale_half_away_from_zero(project: Project, request, target: str):
    """`to: decimal(12,2)` rounds the computed value to 2 places, half away from zero, as
    PostgreSQL and MariaDB round into such a column: SQLite keeps no more digits than the type
    says, and MariaDB is not given a value it would refuse as truncated. A value with more
    digits before the point than the type holds fails the task naming its row."""
    with sqlite3.connect(project.root / "src.db") as c:
        c.execute("CREATE TABLE orders (id integer PRIMARY KEY, total decimal(12,2))")
        c.executemany(
            "INSERT INTO orders VALUES (?, ?)", [(1, "101.25"), (2, "1052.50"), (3, "1.50"), (4, "-1.50")]
        )
    fixture = {"postgresql": "pg_url", "mariadb": "maria_url"}.get(target)
    url = request.getfixturevalue(fixture) if fixture else "sqlite:///dst.db"
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("dst", target, url)
    step = '{type: compute, column: gross, expression: "total * 1.19", to: "decimal(12,2)"}'
    project.job(
        "copy",
        "src",
        "dst",
        f"- {{name: orders, read: {{table: orders}}, write: {{table: orders, keys: [id]}}, "
        f"transforms: [{step}]}}",
    )
    services.apply(project.ws)
    assert _run(project)["inserted"] == 4
    engine = sa.create_engine(url if target != "sqlite" else f"sqlite:///{project.root / 'dst.db'}")
    with engine.connect() as c:
        got = [(i, Decimal(str(g))) for i, g in c.exec_driver_sql("SELECT id, gross FROM orders ORDER BY id")]
    engine.dispose()
    # 120.4875, 1252.475, 1.785 and -1.785 before rounding
    assert got == [
        (1, Decimal("120.49")),
        (2, Decimal("1252.48")),
        (3, Decimal("1.79")),
        (4, Decimal("-1.79")),
    ]

    project.job(  # into a new table: an existing one's type would not narrow
        "copy",
        "src",
        "dst",
        f"- {{name: orders, read: {{table: orders}}, write: {{table: small, keys: [id]}}, "
        f"transforms: [{step.replace('12,2', '5,2')}]}}",
    )
    services.apply(project.ws)
    record = services.run(project.ws, "copy")
    assert record["status"] == "failed"
    assert "the computed value's cast to decimal(5,2)" in record["error"]
    assert "has more than 3 digit(s) before the point, the most decimal(5,2) holds" in record["error"]

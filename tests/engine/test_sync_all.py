"""The `sync_all` job type on real databases: every table of a source schema, chosen by include
and exclude patterns, each a task with its own state (keys from the primary key; watermark,
hash or full by the rule); a rerun is incremental per table; a table added in the source is
loaded by the next run, one dropped is reported and kept in the target."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.errors import NotFound, RunnerError

PAIRS = [
    ("sqlite", "sqlite"),
    ("postgresql", "postgresql"),
    ("mariadb", "sqlite"),
    ("sqlite", "mariadb"),
]


def ts(dialect: str) -> str:
    return "DATETIME" if dialect == "mariadb" else "TIMESTAMP"  # MariaDB's TIMESTAMP updates itself


def name(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


def create_source(db, schema: str | None) -> None:
    t = ts(db.dialect)
    with db.cursor() as cur:
        if schema:
            cur.execute(f"CREATE SCHEMA {schema}")
        for ddl in (
            f"orders (id INTEGER PRIMARY KEY, total DECIMAL(8,2), updated_at {t})",
            "customers (id INTEGER PRIMARY KEY, name VARCHAR(40))",
            "notes (body VARCHAR(40))",
            "tmp_scratch (x INTEGER)",
            f"events (id INTEGER PRIMARY KEY, modified_at {t}, updated_at {t})",
            f"audit (happened_at {t}, what VARCHAR(20))",
        ):
            cur.execute(f"CREATE TABLE {name(schema, ddl)}")
        m = db.mark
        cur.executemany(
            f"INSERT INTO {name(schema, 'orders')} VALUES ({m}, {m}, {m})",
            [(i, f"{i}.25", f"2026-01-0{i} 10:00:00") for i in range(1, 5)],
        )
        cur.executemany(
            f"INSERT INTO {name(schema, 'customers')} VALUES ({m}, {m})", [(1, "ann"), (2, "bob"), (3, "cy")]
        )
        cur.executemany(f"INSERT INTO {name(schema, 'notes')} VALUES ({m})", [("a",), ("b",)])
        cur.executemany(f"INSERT INTO {name(schema, 'tmp_scratch')} VALUES ({m})", [(1,)])
        cur.executemany(
            f"INSERT INTO {name(schema, 'events')} VALUES ({m}, {m}, {m})",
            [
                (1, "2030-01-01 00:00:00", "2026-02-01 00:00:00"),
                (2, "2020-01-01 00:00:00", "2026-02-02 00:00:00"),
            ],
        )
        cur.executemany(
            f"INSERT INTO {name(schema, 'audit')} VALUES ({m}, {m})", [("2026-03-01 00:00:00", "login")]
        )


def count(db, table: str) -> int:
    return db.fetch(f"SELECT count(*) FROM {table}")[0][0]


def tables_of(db, schema: str | None) -> set[str]:
    return set(sa.inspect(db.engine).get_table_names(schema=schema))


def by_name(record) -> dict[str, dict]:
    return {t["name"]: t for t in record["tasks"]}


def write_job(project, src_schema: str | None, dst_schema: str | None, extra: str = "") -> None:
    project.write(
        "jobs.d/all.yaml",
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: all}\nspec:\n"
        "  type: sync_all\n  source: src\n  target: dst\n"
        + (f"  source_schema: {src_schema}\n" if src_schema else "")
        + (f"  schema: {dst_schema}\n" if dst_schema else "")
        + '  exclude: ["tmp_*"]\n'
        "  watermark_columns: [updated_at, modified_at]\n"
        "  deletes: propagate\n"
        "  table_prefix: stg_\n" + extra,
    )
    services.apply(project.ws)


@pytest.mark.parametrize(("from_", "to"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_sync_all_copies_each_table_by_the_rule_and_follows_the_schema(project, make_database, from_, to):
    source = make_database(from_, "source")
    target = make_database(to, "target")
    src_schema = "shop" if from_ == "postgresql" else None
    dst_schema = "wh" if to == "postgresql" else None
    create_source(source, src_schema)
    project.connection("src", from_, source.url)
    project.connection("dst", to, target.url)
    write_job(project, src_schema, dst_schema, "  parallel: 2\n" if to == "postgresql" else "")

    first = services.run(project.ws, "all")
    assert first["status"] == "succeeded", first["error"]
    tasks = by_name(first)
    assert {n: t["strategy"] for n, t in tasks.items()} == {
        "audit": "full",  # a watermark column, but no key
        "customers": "hash",
        "events": "watermark",
        "notes": "full",
        "orders": "watermark",
    }
    assert tasks["events"]["pointer_after"]["value"].startswith("2026-02-02")  # updated_at: listed first
    assert tasks["orders"]["target"] == name(dst_schema, "stg_orders")
    assert tables_of(target, dst_schema) == {
        "stg_audit",
        "stg_customers",
        "stg_events",
        "stg_notes",
        "stg_orders",
    }
    for table, rows in (("orders", 4), ("customers", 3), ("notes", 2), ("events", 2), ("audit", 1)):
        assert count(target, name(dst_schema, f"stg_{table}")) == rows
    assert (
        target.fetch(f"SELECT total FROM {name(dst_schema, 'stg_orders')} WHERE id = 3")[0][0]
        in (
            3.25,
            "3.25",
        )
        or str(target.fetch(f"SELECT total FROM {name(dst_schema, 'stg_orders')} WHERE id = 3")[0][0])
        == "3.25"
    )

    # changes: the rerun reads each table incrementally and applies deletes on keyed tables
    m, s = source.mark, src_schema
    with source.cursor() as cur:
        cur.execute(f"UPDATE {name(s, 'customers')} SET name = 'ann2' WHERE id = 1")
        cur.execute(f"DELETE FROM {name(s, 'customers')} WHERE id = 2")
        cur.execute(
            f"INSERT INTO {name(s, 'orders')} VALUES ({m}, {m}, {m})", (5, "5.25", "2026-01-09 10:00:00")
        )
    second = by_name(services.run(project.ws, "all"))
    assert (
        second["customers"]["updated"],
        second["customers"]["deleted"],
        second["customers"]["inserted"],
    ) == (
        1,
        1,
        0,
    )
    assert (second["orders"]["rows_read"], second["orders"]["inserted"]) == (2, 1)  # from its pointer on
    assert (second["events"]["rows_read"], second["events"]["unchanged"]) == (1, 1)
    assert target.fetch(f"SELECT name FROM {name(dst_schema, 'stg_customers')} ORDER BY id") == [
        ("ann2",),
        ("cy",),
    ]

    # a table added and one dropped between runs
    with source.cursor() as cur:
        cur.execute(f"CREATE TABLE {name(s, 'refunds')} (id INTEGER PRIMARY KEY, updated_at {ts(from_)})")
        cur.execute(f"INSERT INTO {name(s, 'refunds')} VALUES ({m}, {m})", (1, "2026-04-01 00:00:00"))
        cur.execute(f"DROP TABLE {name(s, 'notes')}")
    third = services.run(project.ws, "all")
    assert third["status"] == "succeeded"
    tasks = by_name(third)
    assert (tasks["refunds"]["strategy"], tasks["refunds"]["inserted"]) == ("watermark", 1)
    assert tasks["notes"]["status"] == "dropped_in_source"
    assert "nothing was dropped in the target" in tasks["notes"]["note"]
    assert count(target, name(dst_schema, "stg_notes")) == 2  # kept as it was
    assert count(target, name(dst_schema, "stg_refunds")) == 1
    log = services.logs(project.ws, third["run_id"])
    assert any(e["level"] == "warning" and e.get("task") == "notes" for e in log)
    assert any(
        e["message"].startswith("a new table in the source") and e.get("task") == "refunds" for e in log
    )
    # reported once: its state is gone, and the next run is incremental everywhere
    fourth = by_name(services.run(project.ws, "all"))
    assert "notes" not in fourth
    assert all(t["inserted"] + t["updated"] + t["deleted"] == 0 for n, t in fourth.items() if n != "audit")


def test_include_exclude_task_choice_and_dry_run(project, make_database):
    source = make_database("sqlite", "source")
    target = make_database("sqlite", "target")
    create_source(source, None)
    project.connection("src", "sqlite", source.url)
    project.connection("dst", "sqlite", target.url)
    project.write(
        "jobs.d/all.yaml",
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: all}\nspec:\n"
        "  type: sync_all\n  source: src\n  target: dst\n"
        '  include: ["o*", "c?stomers", "[ne]*"]\n  exclude: ["events"]\n',
    )
    services.apply(project.ws)
    record = services.run(project.ws, "all", services.RunOptions(tasks=["orders"]))
    assert [t["name"] for t in record["tasks"]] == ["orders"]
    assert tables_of(target, None) == {"orders"}  # no prefix, no schema: the table's own name
    with pytest.raises(
        NotFound, match=r"has no task 'tmp_scratch' \(its tables make: customers, notes, orders\)"
    ):
        services.run(project.ws, "all", services.RunOptions(tasks=["tmp_scratch"]))
    record = services.run(project.ws, "all")
    assert sorted(by_name(record)) == ["customers", "notes", "orders"]
    # a dry run reports a dropped table but keeps its state: the next real run reports it too
    with source.cursor() as cur:
        cur.execute("DROP TABLE notes")
    dry = services.run(project.ws, "all", services.RunOptions(dry_run=True))
    assert by_name(dry)["notes"]["status"] == "dropped_in_source"
    assert "forgotten" not in by_name(dry)["notes"]["note"]
    real = services.run(project.ws, "all")
    assert by_name(real)["notes"]["status"] == "dropped_in_source"
    assert "notes" not in by_name(services.run(project.ws, "all"))
    # tables excluded later are not "dropped": they are still in the source
    project.write(
        "jobs.d/all.yaml", (project.root / "jobs.d/all.yaml").read_text().replace('"events"', '"o*"')
    )
    services.apply(project.ws)
    assert sorted(by_name(services.run(project.ws, "all"))) == ["customers", "events"]  # orders: not reported


def test_a_schema_with_no_chosen_table_runs_nothing_and_says_so(project, make_database):
    source = make_database("sqlite", "source")
    target = make_database("sqlite", "target")
    create_source(source, None)
    project.connection("src", "sqlite", source.url)
    project.connection("dst", "sqlite", target.url)
    project.write(
        "jobs.d/all.yaml",
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: all}\nspec:\n"
        '  type: sync_all\n  source: src\n  target: dst\n  include: ["nothing_*"]\n',
    )
    services.apply(project.ws)
    record = services.run(project.ws, "all")
    assert record["status"] == "succeeded" and record["tasks"] == []
    log = services.logs(project.ws, record["run_id"])
    assert any(
        e["level"] == "warning" and e["message"].startswith("no table of the default schema matches")
        for e in log
    )


def test_plan_expand_tasks_and_pointers_show_the_tables(project, make_database, monkeypatch):
    source = make_database("sqlite", "source")
    target = make_database("sqlite", "target")
    create_source(source, None)
    project.connection("src", "sqlite", source.url)
    project.connection("dst", "sqlite", target.url)
    write_job(project, None, None)
    monkeypatch.chdir(project.root)
    cli = CliRunner()

    def invoke(*args: str) -> str:
        result = cli.invoke(app, ["--dir", str(project.root), *args], terminal_width=250)
        assert result.exit_code == 0, result.output
        return result.stdout

    plan = invoke("plan", "--expand")
    assert "      tables of the default schema of default/src: 5 chosen" in plan
    # applied, never run: every table is new
    assert "      + table orders → stg_orders (watermark on updated_at, keys id) [new]" in plan
    assert "      + table notes → stg_notes (full) [new]" in plan
    assert "tmp_scratch" not in plan
    assert "tables of" not in invoke("plan")  # without --expand, plan connects to nothing
    services.run(project.ws, "all")
    tested = invoke("connections", "test")
    assert "  read     ok      lists the 6 table(s) of the schema(s) its sync_all jobs copy from" in tested
    assert "  write    ok      can create tables and a staging table in the default schema" in tested
    with source.cursor() as cur:
        cur.execute("CREATE TABLE refunds (id INTEGER PRIMARY KEY, amount INTEGER)")
        cur.execute("DROP TABLE notes")
    plan = invoke("plan", "--expand")
    assert "      + table refunds → stg_refunds (hash, keys id) [new]" in plan
    assert "      ! task notes: dropped in the source (its target table is kept)" in plan
    assert "        table customers → stg_customers (hash, keys id)" in plan
    expansions = json.loads(invoke("plan", "--expand", "-f", "json"))["expansions"]["default/all"]
    states = {r["task"]: r["state"] for r in expansions["tables"]}
    assert (states["refunds"], states["notes"], states["orders"]) == ("new", "dropped_in_source", "known")

    listed = {r["task"]: r for r in json.loads(invoke("tasks", "all", "-f", "json"))}
    assert listed["refunds"]["state"] == "new" and listed["refunds"]["last_run"] is None
    assert listed["notes"]["state"] == "dropped_in_source" and listed["notes"]["target"] == "stg_notes"
    assert listed["orders"]["pointer"]["value"].startswith("2026-01-04")
    text = invoke("tasks", "all")
    assert "refunds (new)" in text and "notes (dropped in source)" in text
    # the API lists the tasks that ran, without asking the source
    offline = {r["task"] for r in services.tasks(project.ws, "all", expand=False)}
    assert offline == {"audit", "customers", "events", "notes", "orders"}

    pointers = {p["task"]: p for p in services.pointer_show(project.ws, "all")}
    assert pointers["events"]["column"] == "updated_at"
    services.pointer_set(project.ws, "all", "orders", "2026-01-02 00:00:00")
    record = services.run(project.ws, "all")
    assert by_name(record)["orders"]["rows_read"] == 3  # from the pointer set by hand
    with pytest.raises(RunnerError, match="only watermark tasks have a pointer"):
        services.pointer_set(project.ws, "all", "customers", "1")


def test_the_sync_types_job_wide_options_reach_every_table(project, make_database):
    """before_run, schema_changes and changes.start are the sync type's job-wide task options; a
    sync_all job passes them to the tasks of its tables (`SyncAllJobSpec.as_sync`)."""
    source = make_database("sqlite", "source")
    target = make_database("sqlite", "target")
    create_source(source, None)
    project.connection("src", "sqlite", source.url)
    project.connection("dst", "sqlite", target.url)
    extra = (
        '  before_run: truncate\n  schema_changes: "off"\n  on_error: continue\n'
        '  changes: {start: "2026-01-03"}\n'
    )
    write_job(project, None, None, extra)

    first = by_name(services.run(project.ws, "all"))
    assert first["orders"]["before_run"] == "truncate"
    # orders from 2026-01-03 on: the job's changes.start reached the watermark table
    assert sorted(r[0] for r in target.fetch("SELECT id FROM stg_orders")) == [3, 4]
    with target.cursor() as cur:  # a row the source never had: truncated before the next run
        cur.execute("INSERT INTO stg_notes VALUES ('stray')")
    with source.cursor() as cur:  # schema_changes off: a new source column fails its task
        cur.execute("ALTER TABLE customers ADD COLUMN city VARCHAR(20)")

    second = by_name(services.run(project.ws, "all"))
    assert sorted(r[0] for r in target.fetch("SELECT body FROM stg_notes")) == ["a", "b"]
    assert second["customers"]["status"] == "failed"
    assert "city" in second["customers"]["error"]
    assert "city" not in {c["name"] for c in sa.inspect(target.engine).get_columns("stg_customers")}


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_tables_that_make_one_task_name_never_pass_their_state_to_each_other(project, make_database, dialect):
    # `Order Lines` and `order-lines` both make `order-lines`: each gets a name of its own that
    # does not depend on the other, so dropping one never hands its pointer to the other (which
    # then skipped every row between the two pointers)
    source = make_database(dialect, "source")
    target = make_database(dialect, "target")
    q = '"'
    with source.cursor() as cur:
        for table, day in (("Order Lines", "2025-01-01"), ("order-lines", "2024-01-01")):
            cur.execute(f"CREATE TABLE {q}{table}{q} (id INTEGER PRIMARY KEY, updated_at TIMESTAMP)")
            cur.execute(f"INSERT INTO {q}{table}{q} VALUES (1, '{day} 00:00:00')")
    project.connection("src", dialect, source.url)
    project.connection("dst", dialect, target.url)
    project.write(
        "jobs.d/all.yaml",
        "apiVersion: runner/v1\nkind: Job\nmetadata: {name: all}\nspec:\n"
        "  type: sync_all\n  source: src\n  target: dst\n  watermark_columns: [updated_at]\n"
        '  table_prefix: t_\n  include: ["[Oo]rder*"]\n',
    )
    services.apply(project.ws)
    first = by_name(services.run(project.ws, "all"))
    assert sorted(first) == ["order-lines-a1f984a9", "order-lines-d02b9b46"]
    assert {t["target"] for t in first.values()} == {"t_Order Lines", "t_order-lines"}
    with source.cursor() as cur:
        cur.execute("INSERT INTO \"order-lines\" VALUES (2, '2024-06-01 00:00:00')")
        cur.execute('DROP TABLE "Order Lines"')
    second = by_name(services.run(project.ws, "all"))
    # the survivor alone makes `order-lines` now: a name without a state, so it reads everything
    assert {n: t["status"] for n, t in second.items()} == {
        "order-lines": "succeeded",
        "order-lines-d02b9b46": "dropped_in_source",
        "order-lines-a1f984a9": "dropped_in_source",
    }
    assert second["order-lines"]["rows_read"] == 2
    assert sorted(r[0] for r in target.fetch('SELECT id FROM "t_order-lines"')) == [1, 2]

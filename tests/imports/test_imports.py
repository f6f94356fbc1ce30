"""`runner import datazen|cdata`: every sample payload of the reference documents imports (or is
refused with its line and column where the document prints broken JSON), the folder validates,
no secret is written, what is not mapped is reported field by field, and imported SQLite jobs
run and move rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from runner import services
from runner.cli.app import app
from runner.imports.common import ImportFailed, quartz_cron

FIXTURES = Path(__file__).parent / "fixtures"
# every DataZen connection key and CData connection the samples name, as SQLite files here
DATAZEN_KEYS = ["enzo9550", "sql2017", "mysql-sakila", "rabbitmq1", "kafka-cloud", "datazenhub"]
DATAZEN_KEYS += ["shop-sqlite", "warehouse-sqlite"]


def _mapped(keys: list[str]) -> list[str]:
    return [f"{k}=sqlite:///{k}.db" for k in keys]


def _files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*.yaml"))}


# sample -> (jobs written, lines the report must hold)
DATAZEN = {
    "dynamic-job-get.json": (
        [],
        [
            "job a3ff75315a4241d1958e1f9dbd53829f: JobWriter: missing: its writer "
            "'__a3ff75315a4241d1958e1f9dbd53829f' is not in the input; the job is not written",
            "job a3ff75315a4241d1958e1f9dbd53829f: JobReader.ConnectionString: no such kind in runner "
            "(SQL Server (an ADO.NET connection string)): the job is not written",
            "job a3ff75315a4241d1958e1f9dbd53829f: JobReader.ConnectionString: a password in the input was "
            "dropped (not written); set A3FF75315A4241D1958E1F9DBD53829F_SOURCE_PASSWORD",
        ],
    ),
    "dynamic-job-post.json": (
        ["dynamic-job-post"],
        [
            "job dynamic-job-post: JobReader.SqlRead: kept as read.query as written: it is in SQL Server's "
            "dialect; rewrite it for the source"
        ],
    ),
    "job-post.json": (
        [],
        [
            "job TEST-JOB-ALLDATABASES: JobWriter: missing: a reader-only job (change logs) is not supported "
            "yet; the job is not written",
            "job TEST-JOB-ALLDATABASES: JobReader.JsonData.AuditLogEnabled: not needed: every run keeps its "
            "history and log (.runner/history)",
        ],
    ),
    "jobs-info-mysql-eventhub.json": (
        [],
        [
            "job FILMS-AzEventHub: JobWriter.TargetSystem: MESSAGING: not supported yet (no "
            "queue kinds); the "
            "job is not written",
            "job FILMS-AzEventHub: JobWriter.Options.MessagingUpsertSettings: not supported "
            "yet (no queue kinds)",
            "job FILMS-AzEventHub: JobWriter.UpsertScript: not mapped (the target is not a database)",
        ],
    ),
    "jobs-info-rabbitmq-kafka.json": (
        [],
        [
            "job Rabbit-Kafka: JobReader.JsonData.MessagingOptions: not supported yet (no queue kinds)",
            "job Rabbit-Kafka: JobReader.PipelineDef: not supported yet (no transforms): DataDynamicColumn, "
            "DataFilter",
        ],
    ),
    "export-sqlite-direct-job.json": (
        ["orders-2-copy"],
        [
            "job ORDERS-2-COPY: JobReader.JsonData.DeletedRecordsSQL: mapped to read.deleted_keys_query "
            "(deletes: propagate)",
            "job ORDERS-2-COPY: JobReader: ignored (runtime state, not definitions): CreatedOn, Guid, "
            "LastTsPointer, Status, SystemName",
        ],
    ),
    "export-upsert-script.json": (
        ["customers-script"],
        [
            "job Customers-Script: JobWriter.UpsertScript: mapped to write.upsert_script: {{column}} became "
            "{{ bind('column') }} (a bound value)",
            "job Customers-Script: JobReader.PipelineDef: not supported yet (no transforms): "
            "DataDynamicColumn",
            "job Customers-Script: JobWriter.Options.AutoRecreate: not mapped: schema_changes follows the "
            "source's columns (before_run: recreate drops the table every run)",
        ],
    ),
}


@pytest.mark.parametrize("sample", sorted(DATAZEN))
def test_every_datazen_sample_imports_and_validates(tmp_path, sample):
    jobs, lines = DATAZEN[sample]
    result = services.import_jobs("datazen", [FIXTURES / "datazen" / sample], tmp_path, _mapped(DATAZEN_KEYS))
    assert result.jobs == jobs
    for line in lines:
        assert line in result.report, "\n".join(result.report)
    assert result.valid, result.problems
    if jobs:
        assert services.validate(services.Workspace(tmp_path))  # `runner validate` on the folder
    else:
        assert not (tmp_path / "jobs.d").exists()


def test_the_datazen_put_sample_is_refused_where_its_json_breaks(tmp_path):
    """The reference prints PUT /job's body with an unquoted Guid: not JSON, refused at its place."""
    with pytest.raises(ImportFailed, match=r"job-put\.json:3:11: not JSON: Expecting value"):
        services.import_jobs("datazen", [FIXTURES / "datazen" / "job-put.json"], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_datazen_direct_job_maps_every_setting(tmp_path):
    services.import_jobs(
        "datazen", [FIXTURES / "datazen" / "export-sqlite-direct-job.json"], tmp_path, _mapped(DATAZEN_KEYS)
    )
    text = (tmp_path / "jobs.d" / "orders-2-copy.yaml").read_text()
    assert text.startswith(
        "# Imported by `runner import datazen` from export-sqlite-direct-job.json (JobKey ORDERS-2-COPY) on "
    )
    doc = yaml.safe_load(text)
    assert doc["metadata"] == {
        "name": "orders-2-copy",
        "description": "Imported from DataZen job ORDERS-2-COPY (1f0c5e2a9b7d4c31a8e6f40d2b9c7a15).",
    }
    assert doc["spec"] == {
        "source": "shop-sqlite",
        "target": "warehouse-sqlite",
        "schedule": {"cron": "*/15 * * * *"},
        "timeout": "600s",
        "batch_size": 500,
        "tasks": [
            {
                "name": "orders_copy",
                "read": {"table": "orders", "deleted_keys_query": "SELECT id FROM orders_deleted"},
                "write": {"table": "orders_copy", "keys": ["id"]},
                "changes": {"strategy": "watermark", "column": "updated_at"},
                "deletes": "propagate",
            }
        ],
    }
    assert "    - name: orders_copy\n" in text and "keys: [id]" in text  # indented lists, short ones inline


def test_secrets_are_never_written(tmp_path):
    result = services.import_jobs(
        "datazen",
        [FIXTURES / "datazen" / "export-upsert-script.json", FIXTURES / "datazen" / "dynamic-job-get.json"],
        tmp_path,
        ["warehouse-sqlite=postgresql://loader:Pa55word@127.0.0.1:5432/warehouse"],
    )
    written = _files(tmp_path)
    everything = "\n".join([*written.values(), *result.report])
    for secret in ("Sup3rS3cret", "Pa55word", "password=....."):
        assert secret not in everything
    source = yaml.safe_load(written["connections.d/customers-script-source.yaml"].split("\n", 2)[2])
    assert source["spec"] == {
        "type": "postgresql",
        "url": "postgresql://sync:${env:CUSTOMERS_SCRIPT_SOURCE_PASSWORD}@127.0.0.1:5432/shop",
    }
    target = yaml.safe_load(written["connections.d/warehouse-sqlite.yaml"])
    assert (
        target["spec"]["url"]
        == "postgresql://loader:${env:WAREHOUSE_SQLITE_PASSWORD}@127.0.0.1:5432/warehouse"
    )
    assert (
        "connection warehouse-sqlite: password: dropped; the URL references ${env:WAREHOUSE_SQLITE_PASSWORD}"
        in (result.report)
    )
    job = yaml.safe_load(written["jobs.d/customers-script.yaml"])
    assert job["spec"]["schedule"] == {"cron": "30 6 * * 1-5"}  # Quartz: seconds first, 2-6 = Monday-Friday
    assert job["spec"]["retry"] == {"attempts": 3, "backoff": "30s"}
    assert job["spec"]["tasks"][0]["write"]["upsert_script"] == (
        "INSERT INTO customers_copy (id, name) VALUES ({{ bind('id') }}, {{ bind('name') }}) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name"
    )
    assert result.valid, result.problems


CDATA = {
    "create-job.json": (
        [],
        [
            "job ReverseETLJob: Type: ReverseETL: not supported yet (no HTTP or API targets: "
            "ReverseETL); the "
            "job is not written"
        ],
    ),
    "add-task.json": (["add-task"], []),
    "update-task.json": (["update-task"], []),
    "standard-job-sqlite.json": (
        ["shoptowarehouse"],
        [
            "job ShopToWarehouse: Deletion_Behavior: not mapped: deletes: propagate needs write.keys on each "
            "task, which REPLICATE does not name (CData uses the source's primary key): add "
            "keys, then deletes",
            "job ShopToWarehouse: Send_Email: not mapped: notify: [{email: {connection, to}}] needs an smtp "
            "connection; add one",
            "job ShopToWarehouse: Pre_Job_Event: not mapped: CData's event code; write "
            "events.before/after (SQL "
            "or a command)",
            'job ShopToWarehouse: Queries[1].query: its [identifiers] became "identifiers" in read.query '
            "(standard SQL quoting)",
            "job ShopToWarehouse: Labels: not mapped: runner's labels are key: value pairs",
        ],
    ),
}


@pytest.mark.parametrize("sample", sorted(CDATA))
def test_every_cdata_sample_imports_and_validates(tmp_path, sample):
    jobs, lines = CDATA[sample]
    result = services.import_jobs(
        "cdata",
        [FIXTURES / "cdata" / sample],
        tmp_path,
        _mapped(["shop", "warehouse", "src", "dst"]),
        source="src",  # a task's body names no connection
        target="dst",
    )
    assert result.jobs == jobs
    for line in lines:
        assert line in result.report, "\n".join(result.report)
    assert result.valid, result.problems


def test_the_cdata_update_sample_is_refused_where_its_json_breaks(tmp_path):
    """The reference prints the update's body without its closing brace."""
    with pytest.raises(ImportFailed, match=r"update-job\.json:7:1: not JSON"):
        services.import_jobs("cdata", [FIXTURES / "cdata" / "update-job.json"], tmp_path)


def test_a_cdata_job_maps_its_options_and_replicate_queries(tmp_path):
    services.import_jobs(
        "cdata", [FIXTURES / "cdata" / "standard-job-sqlite.json"], tmp_path, _mapped(["shop", "warehouse"])
    )
    doc = yaml.safe_load((tmp_path / "jobs.d" / "shoptowarehouse.yaml").read_text())
    assert doc["spec"] == {
        "source": "shop",
        "target": "warehouse",
        "tasks": [
            {"name": "customers", "read": {"table": "customers"}, "write": {"table": "customers"}},
            {
                "name": "big_orders",
                "read": {"query": 'SELECT * FROM "orders" WHERE "amount" > 100'},
                "write": {"table": "big_orders"},
            },
            {"name": "notes", "read": {"table": "notes"}, "write": {"table": "notes"}, "active": False},
        ],
        "schedule": {"cron": "*/15 * * * *"},
        "batch_size": 500,
        "log_level": "info",
        "table_prefix": "cd_",
        "on_error": "continue",
        "schema_changes": "add_and_widen",
        "truncate_strings": True,
    } | {"tasks": doc["spec"]["tasks"]}
    assert [t["name"] for t in doc["spec"]["tasks"]] == ["customers", "big_orders", "notes"]


def _sqlite(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


def _rows(path: Path, table: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    finally:
        db.close()


def test_an_imported_datazen_job_runs_and_moves_rows(tmp_path):
    _sqlite(
        tmp_path / "shop-sqlite.db",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, updated_at TIMESTAMP)",
        "INSERT INTO orders VALUES (1, 'a', '2024-01-01 10:00:00'), (2, 'b', '2024-01-01 11:00:00')",
        "CREATE TABLE orders_deleted (id INTEGER)",
    )
    result = services.import_jobs(
        "datazen", [FIXTURES / "datazen" / "export-sqlite-direct-job.json"], tmp_path, _mapped(DATAZEN_KEYS)
    )
    assert result.jobs == ["orders-2-copy"]
    ws = services.Workspace(tmp_path)
    services.apply(ws)
    first = services.run(ws, "orders-2-copy")
    assert first["status"] == "succeeded", first
    assert _rows(tmp_path / "warehouse-sqlite.db", "orders_copy") == [
        (1, "a", "2024-01-01 10:00:00.000000"),
        (2, "b", "2024-01-01 11:00:00.000000"),
    ]
    _sqlite(
        tmp_path / "shop-sqlite.db",
        "UPDATE orders SET item = 'b2', updated_at = '2024-01-02 00:00:00' WHERE id = 2",
        "DELETE FROM orders WHERE id = 1",
        "INSERT INTO orders_deleted VALUES (1)",  # DataZen's DeletedRecordsSQL lists it
    )
    second = services.run(ws, "orders-2-copy")
    assert second["status"] == "succeeded", second
    assert _rows(tmp_path / "warehouse-sqlite.db", "orders_copy") == [(2, "b2", "2024-01-02 00:00:00.000000")]
    assert (second["tasks"][0]["updated"], second["tasks"][0]["deleted"]) == (1, 1)
    ws.close()


def test_an_imported_cdata_job_runs_and_moves_rows(tmp_path):
    _sqlite(
        tmp_path / "shop.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)",
        "INSERT INTO customers VALUES (1, 'Ann'), (2, 'Bob')",
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount INTEGER)",
        "INSERT INTO orders VALUES (1, 50), (2, 150), (3, 300)",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
    )
    services.import_jobs(
        "cdata", [FIXTURES / "cdata" / "standard-job-sqlite.json"], tmp_path, _mapped(["shop", "warehouse"])
    )
    ws = services.Workspace(tmp_path)
    services.apply(ws)
    record = services.run(ws, "shoptowarehouse")
    assert record["status"] == "succeeded", record
    assert {t["name"]: t["status"] for t in record["tasks"]} == {
        "customers": "succeeded",
        "big_orders": "succeeded",
        "notes": "inactive",
    }
    target = tmp_path / "warehouse.db"
    assert _rows(target, "cd_customers") == [(1, "Ann"), (2, "Bob")]
    assert _rows(target, "cd_big_orders") == [(2, 150), (3, 300)]
    assert not sa.inspect(sa.create_engine(f"sqlite:///{target}")).has_table("cd_notes")
    ws.close()


def test_the_cdata_task_sample_runs_from_postgresql(tmp_path, pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "Accounts" (id integer PRIMARY KEY, name text)')
        conn.exec_driver_sql("""INSERT INTO "Accounts" VALUES (1, 'acme'), (2, 'globex')""")
    engine.dispose()
    result = services.import_jobs(
        "cdata",
        [FIXTURES / "cdata" / "add-task.json"],
        tmp_path,
        [f"crm={pg_url}", "lake=sqlite:///lake.db"],
        source="crm",
        target="lake",
    )
    assert result.valid and result.jobs == ["add-task"]
    ws = services.Workspace(tmp_path)
    services.apply(ws)
    record = services.run(ws, "add-task")
    assert record["status"] == "succeeded", record
    assert _rows(tmp_path / "lake.db", '"Accounts"') == [(1, "acme"), (2, "globex")]
    ws.close()


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["--dir", str(tmp_path), *args])


def test_cli_prints_what_it_wrote_and_what_it_did_not_map(cli, tmp_path):
    args = [str(FIXTURES / "datazen" / "export-upsert-script.json")]
    for key in ("warehouse-sqlite",):
        args += ["--connection", f"{key}=sqlite:///{key}.db"]
    result = cli("import", "datazen", *args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"wrote {tmp_path / 'connections.d/customers-script-source.yaml'}" in lines
    assert "not mapped, or mapped with a note (field by field):" in lines
    assert (
        "  job Customers-Script: JobReader.ConnectionString: a password in the input was dropped (not "
        "written); set CUSTOMERS_SCRIPT_SOURCE_PASSWORD"
    ) in lines
    assert lines[-1] == f"valid: `runner validate` passes in {tmp_path}"
    assert cli("validate").exit_code == 0
    again = cli("import", "datazen", *args)  # existing files are kept
    assert again.exit_code == 1 and "exists: not overwritten (use --force)" in again.stdout
    as_json = json.loads(cli("import", "datazen", "--force", "--format", "json", *args).stdout)
    assert as_json["jobs"] == ["customers-script"] and as_json["valid"] is True

    nothing = cli("import", "cdata", str(FIXTURES / "cdata" / "create-job.json"))
    assert nothing.exit_code == 1 and "error: nothing was written" in nothing.stderr
    broken = cli("import", "cdata", str(FIXTURES / "cdata" / "update-job.json"))
    assert broken.exit_code == 1 and "update-job.json:7:1: not JSON" in broken.stderr


def test_a_written_folder_that_does_not_validate_exits_1(cli, tmp_path):
    result = cli("import", "datazen", str(FIXTURES / "datazen" / "dynamic-job-post.json"))
    assert result.exit_code == 1
    assert "became a reference to connection 'enzo9550': define connections.d/enzo9550.yaml" in result.stdout
    assert "spec.source: connection 'enzo9550' does not exist" in result.stderr


@pytest.mark.parametrize(
    ("quartz", "cron"),
    [
        ("0 */5 * ? * *", "*/5 * * * *"),
        ("0 * * ? * *", "* * * * *"),
        ("30 0 12 ? * 2", "0 12 * * 1 30"),
        ("0 0 6 1 * ? 2026", None),
        ("0 0 6 L * ?", None),
        ("*/15 * * * *", "*/15 * * * *"),
    ],
)
def test_quartz_crons(quartz, cron):
    assert quartz_cron(quartz) == cron


def test_a_password_in_a_urls_query_is_not_written_either(tmp_path):
    result = services.import_jobs(
        "datazen",
        [FIXTURES / "datazen" / "export-sqlite-direct-job.json"],
        tmp_path,
        [
            "shop-sqlite=sqlite:///shop.db",
            "warehouse-sqlite=postgresql://u@db:5432/dw?sslpassword=K3yPass&sslmode=require",
        ],
    )
    text = (tmp_path / "connections.d" / "warehouse-sqlite.yaml").read_text()
    assert "K3yPass" not in text + "\n".join(result.report)
    assert (
        "url: postgresql://u@db:5432/dw?sslpassword=${env:WAREHOUSE_SQLITE_SSLPASSWORD}&sslmode=require"
        in text
    )
    assert result.valid, result.problems


def test_jobs_that_would_share_a_name_get_their_own(tmp_path):
    sample = FIXTURES / "datazen" / "export-sqlite-direct-job.json"
    result = services.import_jobs("datazen", [sample, sample], tmp_path, _mapped(DATAZEN_KEYS))
    assert result.jobs == ["orders-2-copy", "orders-2-copy-2"]
    assert result.valid, result.problems

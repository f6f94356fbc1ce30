"""schemas/ is generated from the models; a stale file fails here (run `make schemas`)."""

from __future__ import annotations

import json
import subprocess
import sys

from runner import services
from tests.conftest import REPO


def test_schema_file_is_current():
    on_disk = json.loads((REPO / "schemas" / services.SCHEMA_FILE).read_text())
    assert on_disk == json.loads(json.dumps(services.json_schema())), "schemas/ is stale: run `make schemas`"


def test_schema_is_the_same_whichever_kind_a_process_imported_first():
    """A process that imported some kinds' modules before (a daemon that opened a RabbitMQ
    connection, a test worker) gives the same schema: kinds are listed in the built-in order."""
    code = (
        "import json, sys\n"
        "import runner.connectors.http.connector, runner.connectors.redis, runner.connectors.rabbitmq\n"
        "from runner import services\n"
        "print(json.dumps(services.json_schema()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    on_disk = json.loads((REPO / "schemas" / services.SCHEMA_FILE).read_text())
    assert json.loads(out.stdout) == on_disk


def test_schema_knows_every_connection_type_and_forbids_unknown_fields():
    schema = services.json_schema()
    text = json.dumps(schema)
    for kind in ("sqlite", "postgresql", "mariadb"):
        assert f'"const": "{kind}"' in text
    job = schema["$defs"]["SyncJobSpec"]
    spec = schema["$defs"]["JobDefinition"]["properties"]["spec"]  # one model per job type, by `type`
    assert sorted(r["$ref"].rsplit("/", 1)[1] for r in spec["oneOf"]) == [
        "LoadFolderJobSpec",
        "SyncAllJobSpec",
        "SyncJobSpec",
    ]
    assert schema["$defs"]["SyncAllJobSpec"]["required"] == ["type", "source", "target"]
    assert job["additionalProperties"] is False
    assert set(job["properties"]) == {
        *("type", "source", "target", "schedule", "batch_size", "on_error", "tasks"),
        *("parallel", "after", "retry", "timeout", "continuous"),
        *("schema_changes", "drop_columns", "truncate_strings"),
        *("schema", "table_prefix", "before_run"),
        *("read", "changes"),  # job-wide defaults of the tasks' read.timezone, changes.start/window
        *("events", "notify", "log_level"),
        "change_log",  # a reader's (a job without a target) change logs
    }
    assert "type" not in job["required"]  # a job without `type` is a sync job
    assert "target" not in job["required"]  # a job without a target is a reader


def test_schema_describes_every_field():
    """Editors complete and explain every field: each property of each model has a description."""
    schema = services.json_schema()
    missing = [
        f"{name}.{field}"
        for name, model in schema["$defs"].items()
        for field, prop in model.get("properties", {}).items()
        if "description" not in prop
    ]
    assert missing == []


def test_bundled_definitions_reference_the_schema():
    for path in [*(REPO / "jobs.d").rglob("*.yaml"), *(REPO / "connections.d").rglob("*.yaml")]:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/runner.v1.json", path

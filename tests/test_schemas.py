"""schemas/ is generated from the models; a stale file fails here (run `make schemas`)."""

from __future__ import annotations

import json

from runner import services
from tests.conftest import REPO


def test_schema_file_is_current():
    on_disk = json.loads((REPO / "schemas" / services.SCHEMA_FILE).read_text())
    assert on_disk == json.loads(json.dumps(services.json_schema())), "schemas/ is stale: run `make schemas`"


def test_schema_knows_every_connection_type_and_forbids_unknown_fields():
    schema = services.json_schema()
    text = json.dumps(schema)
    for kind in ("sqlite", "postgresql", "mariadb"):
        assert f'"const": "{kind}"' in text
    job = schema["$defs"]["JobSpec"]
    assert job["additionalProperties"] is False
    assert set(job["properties"]) == {
        *("source", "target", "schedule", "batch_size", "on_error", "tasks"),
        *("parallel", "after", "retry", "timeout"),
    }


def test_bundled_definitions_reference_the_schema():
    for path in [*(REPO / "jobs.d").rglob("*.yaml"), *(REPO / "connections.d").rglob("*.yaml")]:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/runner.v1.json", path

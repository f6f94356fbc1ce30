"""`runner validate` on sync_all jobs: patterns, names and combinations it cannot honour are
located errors; the source's kind must list its tables (catalog)."""

from __future__ import annotations

import pytest

from runner import services
from runner.errors import DefinitionsInvalid
from tests.conftest import TWO_SQLITE

MEMORY = """
apiVersion: runner/v1
kind: Connection
metadata: {name: mem}
spec: {type: memory, store: shop}
"""


def job(project, body: str, source: str = "src") -> str:
    return str(
        project.write(
            "jobs.d/all.yaml",
            "apiVersion: runner/v1\nkind: Job\nmetadata: {name: all}\nspec:\n"
            f"  type: sync_all\n  source: {source}\n  target: dst\n{body}",
        )
    )


def problems(project) -> list[str]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return [str(p) for p in info.value.problems]


@pytest.fixture
def folder(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    return project


def test_a_full_sync_all_job_is_valid_and_its_document_keeps_the_names_written(folder):
    job(
        folder,
        '  source_schema: main\n  include: ["o*", "[a-c]*"]\n  exclude: ["tmp_*"]\n'
        "  watermark_columns: [updated_at]\n  deletes: soft\n  unmapped_types: text\n"
        "  schema: main\n  table_prefix: stg_\n  parallel: 2\n  on_error: continue\n",
    )
    (definition,) = [d for d in services.validate(folder.ws) if d.kind == "Job"]
    spec = definition.document()["spec"]
    assert spec["schema"] == "main" and "schema_" not in spec
    assert spec["type"] == "sync_all" and spec["table_prefix"] == "stg_"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('  include: ["[abc"]\n', "8:3: spec.include: pattern '[abc' opens a '[' set it never closes"),
        ('  include: ["public.orders"]\n', "8:3: spec.include: pattern 'public.orders' has a '.'"),
        ('  include: [""]\n', "8:3: spec.include: a pattern cannot be empty"),
        ("  include: []\n", "8:3: spec.include: List should have at least 1 item"),
        ('  exclude: ["*"]\n', "8:3: spec.exclude: exclude '*' leaves out every table"),
        ('  exclude: ["a*", "**"]\n', "8:3: spec.exclude: exclude '**' leaves out every table"),
        ('  exclude: ["?*"]\n', "8:3: spec.exclude: exclude '?*' leaves out every table"),
        ('  exclude: ["a*", "a*"]\n', "8:3: spec.exclude: a pattern is listed twice"),
        ("  watermark_columns: [a, a]\n", "8:3: spec.watermark_columns: a column is listed twice"),
        ("  table_prefix: a.b_\n", "8:3: spec.table_prefix: table_prefix 'a.b_' cannot hold a '.'"),
        ("  schema: wh.x\n", "8:3: spec.schema: schema 'wh.x' cannot hold a '.'"),
        ("  deletes: sometimes\n", "8:3: spec.deletes: Input should be 'ignore', 'propagate' or 'soft'"),
        (
            "  tasks: []\n",
            "8:3: spec.tasks: unknown field 'tasks'",
        ),
    ],
    ids=lambda v: v[:24] if isinstance(v, str) else None,
)
def test_bad_input_is_a_located_error(folder, body, expected):
    path = job(folder, body)
    found = problems(folder)
    assert any(p.startswith(f"{path}:{expected}") for p in found), found


def test_a_source_that_cannot_list_its_tables_is_refused_at_source(project):
    project.write("connections.d/c.yaml", TWO_SQLITE + "---\n" + MEMORY)
    path = job(project, "", source="mem")
    found = problems(project)
    (p,) = found
    assert p.startswith(f"{path}:6:3: spec.source: a sync_all job lists the tables of the source's schema; ")
    assert "the source connection 'mem' is of type 'memory', which cannot (catalog, digests, key_lookup)" in p


def test_the_json_schema_describes_sync_all():
    schema = services.json_schema()
    text = str(schema)
    assert "sync_all" in text and "watermark_columns" in text and "table_prefix" in text


def test_the_sync_types_job_wide_options_are_checked_for_the_tables(folder):
    job(folder, "  changes: {start: '2026-01-01', window: 7d}\n")
    assert any(
        "spec.changes.window: no table is read by watermark (watermark_columns is empty)" in p and ":8:" in p
        for p in problems(folder)
    )
    job(folder, '  watermark_columns: [updated_at]\n  schema_changes: "off"\n  drop_columns: true\n')
    assert any("spec.drop_columns: drop_columns needs schema_changes" in p for p in problems(folder))

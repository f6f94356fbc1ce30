"""Definitions per kind and per job type: a connection has only the fields of its kind, a
task's `read` and `write` validate against the models of its connections' kinds, and a job's
`spec.type` picks its spec model (`sync` when left out)."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError, model_validator

from runner import services
from runner.connectors import registry
from runner.connectors.sql.spec import SqlConnectionSpec
from runner.definitions.models import ConnectionSpec
from runner.definitions.tasks import ReadSpec, WriteSpec
from runner.errors import DefinitionsInvalid, Problem
from tests.conftest import TASK, TWO_SQLITE

SQL_KINDS = ("sqlite", "postgresql", "mariadb")


def problems(project) -> list[Problem]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return info.value.problems


def test_a_connection_spec_has_only_a_type():
    assert set(ConnectionSpec.model_fields) == {"type"}


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_every_sql_kind_requires_a_url(kind, project):
    model = registry.kinds()[kind].spec
    assert issubclass(model, SqlConnectionSpec)
    with pytest.raises(ValidationError, match="url"):
        model.model_validate({"type": kind})
    project.write(
        "connections.d/x.yaml",
        f"apiVersion: runner/v1\nkind: Connection\nmetadata: {{name: x}}\nspec:\n  type: {kind}\n",
    )
    (p,) = problems(project)
    assert (p.location.line, p.location.field, p.message) == (4, "spec.url", "required field is missing")


@pytest.mark.parametrize("kind", SQL_KINDS)
def test_the_sql_kinds_share_the_table_read_and_write(kind):
    assert (registry.kinds()[kind].read, registry.kinds()[kind].write) == (ReadSpec, WriteSpec)


class TablesOnly(ReadSpec):
    """A source kind that cannot run a query: narrower than the SQL kinds' read model."""

    @model_validator(mode="after")
    def _no_query(self) -> TablesOnly:
        if self.query is not None:
            raise ValueError("this kind reads tables only")
        return self


class NoScripts(WriteSpec):
    """A target kind without statements of its own."""

    @model_validator(mode="after")
    def _no_script(self) -> NoScripts:
        if self.upsert_script is not None:
            raise ValueError("this kind takes no upsert_script")
        return self


@pytest.fixture
def narrow_postgresql(monkeypatch):
    """postgresql registered with narrower task models (validation never connects)."""
    kinds = registry.kinds()
    narrowed = dataclasses.replace(kinds["postgresql"], read=TablesOnly, write=NoScripts)
    monkeypatch.setattr(registry, "kinds", lambda: kinds | {"postgresql": narrowed})


def _pg_and_sqlite(project) -> None:
    project.connection("pg", "postgresql", "postgresql://u:${env:PW}@h/db")
    project.connection("lite", "sqlite", "sqlite:///lite.db")


def test_read_is_checked_against_the_source_kinds_read_model(project, narrow_postgresql):
    _pg_and_sqlite(project)
    project.job("copy", "pg", "lite", "- {name: t, read: {query: SELECT 1}, write: {table: b}}")
    (p,) = problems(project)
    assert str(p).endswith("jobs.d/copy.yaml:8:17: spec.tasks[0].read: this kind reads tables only")


def test_write_is_checked_against_the_target_kinds_write_model(project, narrow_postgresql):
    _pg_and_sqlite(project)
    project.job(
        "back",
        "lite",
        "pg",
        """
        - name: t
          read: {query: SELECT 1}
          write: {table: b, keys: [id], upsert_script: "INSERT INTO x VALUES (1)"}
        """,
    )
    (p,) = problems(project)  # the query is read from sqlite: the narrow read model is pg's
    assert (p.location.line, p.location.field) == (10, "spec.tasks[0].write")
    assert p.message == "this kind takes no upsert_script"


def test_a_problem_of_the_sql_models_is_reported_once(project):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    project.job(
        "copy", "src", "dst", "- {name: t, read: {table: a, query: SELECT 1}, write: {table: b, nope: 1}}"
    )
    assert sorted(p.location.field for p in problems(project)) == [
        "spec.tasks[0].read",
        "spec.tasks[0].write.nope",
    ]


@pytest.mark.parametrize("stated", ["  type: sync\n", ""])
def test_a_sync_job_may_state_its_type_or_not(stated, project):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    project.job("copy", "src", "dst", TASK, extra=stated)
    (job,) = [d for d in services.validate(project.ws) if d.kind == "Job"]
    assert job.spec.type == "sync"
    assert ("type" in job.document()["spec"]) == bool(stated)  # an omitted type stays omitted


def test_an_unknown_job_type_is_refused_with_the_known_ones(project):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    project.job("copy", "src", "dst", TASK, extra="  type: nope\n")
    (p,) = problems(project)
    assert str(p).endswith(
        "jobs.d/copy.yaml:7:3: spec.type: unknown job type 'nope' "
        "(hint: known types: load_folder, sync, sync_all)"
    )


def test_an_adhoc_job_of_an_unknown_type_is_refused(project):
    project.write("connections.d/all.yaml", TWO_SQLITE)
    services.apply(project.ws)
    spec = {"type": "nope", "source": "src", "target": "dst", "tasks": [{"name": "t"}]}
    with pytest.raises(DefinitionsInvalid) as info:
        services.adhoc_job(project.ws, "once", spec)
    (p,) = info.value.problems
    assert (p.location.field, p.message, p.hint) == (
        "spec.type",
        "unknown job type 'nope'",
        "known types: load_folder, sync, sync_all",
    )


def test_an_adhoc_jobs_tasks_are_checked_against_its_applied_connections(project, narrow_postgresql):
    _pg_and_sqlite(project)
    services.apply(project.ws)
    spec = {
        "source": "pg",
        "target": "lite",
        "tasks": [{"name": "t", "read": {"query": "SELECT 1"}, "write": {"table": "b"}}],
    }
    with pytest.raises(DefinitionsInvalid) as info:
        services.adhoc_job(project.ws, "once", spec)
    (p,) = info.value.problems
    assert (p.location.field, p.message) == ("spec.tasks[0].read", "this kind reads tables only")

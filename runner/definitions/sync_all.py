"""The `sync_all` job type's spec (CData Sync's SyncAll): every table of a source schema, chosen
by include and exclude patterns, each table a task of its own (with its own pointer or
digests) whose keys are the table's primary key and whose strategy follows one rule. Its tasks
are found when it runs (and by `runner tasks` and `runner plan --expand`), not written here."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator

from runner.definitions.jobs import FieldPath, JobChanges, JobRead, JobSpec, SyncJobSpec
from runner.definitions.needs import Need, Needs
from runner.definitions.schema_changes import SchemaChanges, check_drop_columns
from runner.definitions.tasks import BeforeRun, Task, target_table

PATTERN_HELP = "shell-style patterns over table names: *, ?, [abc], [!abc]"


def _pattern_problem(pattern: str) -> str | None:
    """Why a table name pattern cannot be meant as written, or None."""
    if not pattern.strip():
        return "a pattern cannot be empty"
    if "." in pattern:
        return (
            f"pattern {pattern!r} has a '.': patterns match table names without their schema; "
            "name the schema in source_schema"
        )
    depth = 0
    for ch in re.sub(r"\[!?\]", "", pattern):  # `[]]` and `[!]]` start a set holding ']'
        if ch == "[":
            depth += 1
        elif ch == "]" and depth:
            depth -= 1
    if depth:
        return f"pattern {pattern!r} opens a '[' set it never closes"
    return None


def _identifier_problem(value: str, what: str) -> str | None:
    if "." in value:
        return f"{what} {value!r} cannot hold a '.' (a table is named `schema.table`)"
    if value != value.strip() or any(ord(c) < 32 for c in value):
        return f"{what} {value!r} has leading or trailing spaces or a control character"
    return None


class SyncAllJobSpec(JobSpec):
    """The `sync_all` job type: each table of `source_schema` that `include` matches and
    `exclude` does not becomes a task named after the table. Keys are the table's primary key;
    the strategy is `watermark` on the first of `watermark_columns` the table has (when it has
    a key), else `hash` when it has a key, else `full`."""

    expands_at_run: ClassVar[bool] = True

    type: Literal["sync_all"] = Field(
        description="The job type; `sync_all` copies every table of a source schema, each as a task."
    )
    source_schema: str | None = Field(
        None,
        min_length=1,
        description=(
            "The source schema whose tables are copied; the connection's default schema when left out."
        ),
    )
    include: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description=f"Tables copied: those whose name matches one of these {PATTERN_HELP}.",
    )
    exclude: list[str] = Field(
        default_factory=list, description=f"Tables left out even when included: {PATTERN_HELP}."
    )
    watermark_columns: list[str] = Field(
        default_factory=list,
        description=(
            "A table with a primary key and one of these columns (the first it has, in this order) "
            "is read by watermark on it; other tables with a primary key by hash, tables without "
            "one in full."
        ),
    )
    deletes: Literal["ignore", "propagate", "soft"] = Field(
        "ignore",
        description=(
            "Rows gone from a table with a primary key: ignore, propagate (delete them in the target) "
            "or soft (set `_deleted_at`). A table without a key is replaced in full each run."
        ),
    )
    unmapped_types: Literal["error", "text", "json"] = Field(
        "error",
        description=(
            "Columns of a type runner cannot map, in every table: as a sync task's read.unmapped_types."
        ),
    )
    schema_: str | None = Field(
        None,
        alias="schema",
        min_length=1,
        description="The target schema the tables are written to; the target's default schema when left out.",
    )
    table_prefix: str = Field(
        "", description="Put before each table's name in the target: `stg_` writes `orders` as `stg_orders`."
    )
    batch_size: int = SyncJobSpec.model_fields["batch_size"]
    on_error: Literal["stop", "continue"] = SyncJobSpec.model_fields["on_error"]
    parallel: int = SyncJobSpec.model_fields["parallel"]
    # the sync type's job-wide task options, the same for every table (`as_sync`)
    schema_changes: SchemaChanges = SyncJobSpec.model_fields["schema_changes"]
    drop_columns: bool = SyncJobSpec.model_fields["drop_columns"]
    truncate_strings: bool = SyncJobSpec.model_fields["truncate_strings"]
    before_run: BeforeRun | None = SyncJobSpec.model_fields["before_run"]
    read: JobRead | None = SyncJobSpec.model_fields["read"]
    changes: JobChanges | None = SyncJobSpec.model_fields["changes"]

    model_config = {**JobSpec.model_config, "populate_by_name": False, "serialize_by_alias": True}

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        problems = [p for p in map(_pattern_problem, patterns) if p]
        if problems:
            raise ValueError("; ".join(problems))
        if len(set(patterns)) != len(patterns):
            raise ValueError("a pattern is listed twice")
        return patterns

    @field_validator("exclude")
    @classmethod
    def _not_everything(cls, patterns: list[str]) -> list[str]:
        # `*`, `**`, `?*`, `*?*`: every table name (never empty) matches them
        every = next((p for p in patterns if "*" in p and set(p) <= {"*", "?"} and p.count("?") <= 1), None)
        if every is not None:
            raise ValueError(f"exclude {every!r} leaves out every table: the job would never copy one")
        return patterns

    @field_validator("watermark_columns")
    @classmethod
    def _columns(cls, columns: list[str]) -> list[str]:
        if any(not c.strip() for c in columns):
            raise ValueError("a column name cannot be empty")
        if len(set(columns)) != len(columns):
            raise ValueError("a column is listed twice")
        return columns

    @field_validator("source_schema", "schema_", "table_prefix")
    @classmethod
    def _names(cls, value: str | None, info: object) -> str | None:
        what = {"source_schema": "source_schema", "schema_": "schema", "table_prefix": "table_prefix"}
        problem = _identifier_problem(value, what[info.field_name]) if value else None  # type: ignore[attr-defined]
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("drop_columns")
    @classmethod
    def _drop_needs_changes(cls, drop: bool, info: ValidationInfo) -> bool:
        check_drop_columns(drop, info.data.get("schema_changes"))
        return drop

    def as_sync(self, tasks: list[Task]) -> SyncJobSpec:
        """The sync job that runs `tasks` (the tables found) with this job's options: the one
        place a sync_all job's fields reach the sync type's engine."""
        return SyncJobSpec(
            source=self.source,
            target=self.target,
            batch_size=self.batch_size,
            on_error=self.on_error,
            parallel=self.parallel,
            tasks=tasks,
            schema_changes=self.schema_changes,
            drop_columns=self.drop_columns,
            truncate_strings=self.truncate_strings,
            before_run=self.before_run,
            read=self.read,
            changes=self.changes,
        )

    def field_problems(self) -> list[tuple[FieldPath, str]]:
        if self.changes is None or (self.changes.start is None and self.changes.window is None):
            return []
        field = "window" if self.changes.window is not None else "start"
        if not self.watermark_columns:
            return [
                (
                    ("changes", field),
                    f"no table is read by watermark (watermark_columns is empty): '{field}' applies to none",
                )
            ]
        if self.changes.window is not None and self.changes.start is None:
            return [
                (
                    ("changes", "window"),
                    "a window needs a start ('changes.start'), where the first window begins",
                )
            ]
        return []

    def target_table(self, table: str) -> str:
        """Where a source table is written: `schema.prefix+table`, named as a sync job's tables
        are (`runner.definitions.tasks.target_table`)."""
        return target_table(table, self.schema_, self.table_prefix)

    def needs(self, task_needs: Needs) -> list[Need]:
        """A catalog at the source, and what the tasks the rule can make need (a hash task with
        the job's deletes; a watermark task when columns are named), at the job's fields."""
        found = [
            Need("source", "catalog", ("source",), "a sync_all job lists the tables of the source's schema")
        ]
        keyed = {"name": "t", "read": {"table": "t"}, "write": {"table": "t", "keys": ["k"]}}
        samples = [Task.model_validate(keyed | {"changes": {"strategy": "hash"}, "deletes": self.deletes})]
        if self.watermark_columns:
            changes = {"strategy": "watermark", "column": self.watermark_columns[0]}
            samples.append(Task.model_validate(keyed | {"changes": changes, "deletes": self.deletes}))
        if self.before_run in ("truncate", "recreate"):
            why = f"before_run: {self.before_run} empties or drops the target tables"
            found.append(Need("target", "table_lifecycle", ("before_run",), why))
        for sample in samples:
            for need in task_needs(sample):
                field = "deletes" if need.path[:1] == ("deletes",) else need.end
                found.append(Need(need.end, need.capability, (field,), need.why))
        return found

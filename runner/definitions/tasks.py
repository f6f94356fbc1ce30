"""A task of a sync job: what it reads from the source, where it writes in the target, how it
finds changes and what it does with deleted rows.

`ReadSpec` and `WriteSpec` are the models of the SQL kinds (they register them as their
`read` and `write` models); the engine reads every task through them today, and validation
checks a task's `read` and `write` against its own kinds' models as well.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from runner.definitions.models import Name, StrictModel, seconds
from runner.definitions.templates import check_syntax


class ReadSpec(StrictModel):
    """What a task reads from the source: a whole table, or the rows of a query."""

    table: str | None = Field(None, min_length=1, description="Table to read, optionally `schema.table`.")
    query: str | None = Field(
        None, min_length=1, description="A SELECT whose rows are read, in the source's SQL."
    )
    deleted_keys_query: str | None = Field(
        None,
        description=(
            "With `changes.strategy: watermark`: a SELECT returning the keys (in `write.keys` order) of "
            "rows deleted in the source, instead of comparing every key (DataZen's DeletedRecordsSQL)."
        ),
    )
    unmapped_types: Literal["error", "text", "json"] = Field(
        "error",
        description=(
            "Columns of a type runner cannot map (an array, an enum, an interval, MariaDB's ENUM, SET "
            "or BIT): `error` fails the task naming every such column before anything is written; "
            "`text` reads each as the source's text of its value, `json` as JSON (PostgreSQL: "
            "`to_jsonb`, so an array is a JSON array; MariaDB: a JSON string)."
        ),
    )

    @model_validator(mode="after")
    def _one_of(self) -> ReadSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self


def _also_boolean(schema: dict[str, Any]) -> None:
    """The JSON Schema of a field that also takes `true` / `false` (see `_history_switch`)."""
    schema.setdefault("anyOf", []).append({"type": "boolean"})


BeforeRun = Literal["keep", "truncate", "recreate"]


class HistorySpec(StrictModel):
    """History mode (SCD type 2): the target keeps every version of a row. A version is current
    while its `valid_to` is NULL; the table's primary key is `write.keys` plus `valid_from`."""

    valid_from: str = Field(
        "_valid_from", min_length=1, description="Column: when the version became current (UTC)."
    )
    valid_to: str = Field(
        "_valid_to",
        min_length=1,
        description="Column: when the version stopped being current (UTC); NULL while it is current.",
    )
    current: str = Field("_current", min_length=1, description="Column: true for the current version.")

    @model_validator(mode="after")
    def _distinct(self) -> HistorySpec:
        if len({self.valid_from, self.valid_to, self.current}) != 3:
            raise ValueError("valid_from, valid_to and current name three different columns")
        return self

    def names(self) -> list[str]:
        return [self.valid_from, self.valid_to, self.current]


class WriteSpec(StrictModel):
    """Where a task writes in the target."""

    table: str = Field(
        min_length=1,
        description=(
            "Target table, optionally `schema.table`; created when missing (with a primary key on "
            "`keys`), with the source's column types mapped to the target's dialect."
        ),
    )
    keys: list[str] = Field(
        default_factory=list,
        description=(
            "Columns that identify a row. With keys, rows are upserted (only changed rows are "
            "written); without, the target's rows are replaced on every run."
        ),
    )
    soft_delete_column: str = Field(
        "_deleted_at", description="With `deletes: soft`: the timestamp column set when a row is deleted."
    )
    history: HistorySpec | None = Field(
        None,
        description=(
            "History mode (SCD type 2): `true`, or the names of its columns. An update closes the "
            "current version (valid_to set, current false) and adds a new one; a delete (with "
            "`deletes: propagate`) closes it; an unchanged row is untouched. Every version of a run "
            "starts (and every version it closes ends) at the run's start time. Needs write.keys."
        ),
        json_schema_extra=_also_boolean,
    )
    upsert_script: str | None = Field(
        None,
        description=(
            "Instead of runner's merge: a Jinja template of one SQL statement run for every changed "
            "row, e.g. `INSERT INTO {{ table }} ({{ columns|map('ident')|join(', ') }}) VALUES "
            "({% for c in columns %}{{ bind(c) }}{{ ', ' if not loop.last }}{% endfor %}) ON CONFLICT …`. "
            "Context: table (quoted), columns, keys, values (names), bind(name), filter ident. "
            "Values are bound parameters, never text in the SQL."
        ),
    )
    delete_script: str | None = Field(
        None,
        description="With upsert_script and deletes: propagate: the statement run for every deleted key "
        "(context as upsert_script, over the key columns).",
    )

    @field_validator("history", mode="before")
    @classmethod
    def _history_switch(cls, value: object) -> object:
        """`history: true` is history mode with the default column names, `false` is off."""
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @field_serializer("history")
    def _history_out(self, history: HistorySpec | None) -> object:
        """`true` when no column is named, as it was most likely written (plan, describe)."""
        if history is None:
            return None
        return history.model_dump(mode="json", exclude_unset=True) or True

    @field_validator("upsert_script", "delete_script")
    @classmethod
    def _template(cls, source: str | None) -> str | None:
        if source is not None:
            problem = check_syntax(source)
            if problem:
                raise ValueError(problem)
        return source

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        if len(set(keys)) != len(keys):
            raise ValueError("a key column is named twice")
        return keys


class ChangesSpec(StrictModel):
    """How a task finds what changed in the source since the last run."""

    strategy: Literal["full", "watermark", "hash"] = Field(
        "full",
        description=(
            "full: read every row (with keys, write only what differs); watermark: read rows whose "
            "`column` is at or past the stored pointer; hash: compare a digest per key, computed "
            "in the source, with the digests of the last run."
        ),
    )
    column: str | None = Field(
        None, description="With watermark: a timestamp, date or increasing number column of the source."
    )
    lookback: float | str = Field(
        0,
        description=(
            "With watermark: re-read this far behind the pointer, for rows committed late with an "
            "older value: a number (seconds for time columns, units for numeric ones) or '5m', '2h', '1d'."
        ),
    )

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: float | str) -> float | str:
        if seconds(value) < 0:
            raise ValueError("lookback cannot be negative")
        return value

    def lookback_amount(self) -> float:
        """Seconds (or units of a numeric column) to step back from the pointer."""
        return seconds(self.lookback)

    @model_validator(mode="after")
    def _column_for_watermark(self) -> ChangesSpec:
        if self.strategy == "watermark" and not self.column:
            raise ValueError("strategy 'watermark' needs 'column'")
        if self.strategy != "watermark" and (self.column or self.lookback):
            raise ValueError("'column' and 'lookback' only apply to strategy 'watermark'")
        return self


class Task(StrictModel):
    """One stream: a source table or query copied into one target table."""

    name: Name = Field(description="Unique within the job; names the task in history.")
    read: ReadSpec = Field(
        description="What the task reads from the source; its fields are the source kind's."
    )
    write: WriteSpec = Field(
        description="Where the task writes in the target; its fields are the target kind's."
    )
    changes: ChangesSpec = Field(
        default_factory=ChangesSpec, description="How the task finds what changed since its last run."
    )
    deletes: Literal["ignore", "propagate", "soft"] = Field(
        "ignore",
        description=(
            "Rows gone from the source: ignore (keep them), propagate (delete them in the target), "
            "soft (set write.soft_delete_column). Needs write.keys. In history mode, propagate "
            "closes the current version."
        ),
    )
    before_run: BeforeRun | None = Field(
        None,
        description=(
            "What happens to the target table before each run: keep (the default), truncate (delete "
            "every row) or recreate (drop the table; the run creates it again). A watermark or hash "
            "task then reads everything: its pointer or digests are forgotten first. Unset: the "
            "job's `before_run`."
        ),
    )

    @model_validator(mode="after")
    def _needs_keys(self) -> Task:
        keyless = not self.write.keys
        if keyless and self.changes.strategy != "full":
            raise ValueError(
                f"strategy {self.changes.strategy!r} needs write.keys: a row read again must update "
                "its copy, never be written twice"
            )
        if keyless and self.deletes != "ignore":
            raise ValueError(f"deletes: {self.deletes} needs write.keys to know which rows are gone")
        if self.read.deleted_keys_query is not None and (
            self.changes.strategy != "watermark" or self.deletes == "ignore"
        ):
            raise ValueError(
                "read.deleted_keys_query applies to strategy 'watermark' with deletes propagate or soft"
            )
        if self.deletes == "soft" and self.write.soft_delete_column in self.write.keys:
            raise ValueError("write.soft_delete_column cannot be a key column")
        self._check_scripts()
        self.check_history(self.before_run)
        return self

    def check_history(self, before_run: BeforeRun | None) -> None:
        """History mode with what it cannot honour; `before_run` is the task's, or the job's
        when the task has none (`SyncJobSpec`)."""
        history = self.write.history
        if history is None:
            return
        if not self.write.keys:
            raise ValueError("write.history needs write.keys: a version belongs to a key")
        if self.write.upsert_script:
            raise ValueError("write.history keeps versions through runner's merge, not write.upsert_script")
        if self.deletes == "soft":
            raise ValueError(
                "write.history with deletes: soft: in history mode a delete closes the current version; "
                "use deletes: propagate (or ignore)"
            )
        named = [n for n in history.names() if n in self.write.keys]
        if named:
            raise ValueError(f"write.history column {named[0]!r} is one of write.keys")
        if before_run in ("truncate", "recreate"):
            raise ValueError(
                f"before_run: {before_run} with write.history would throw the versions away; "
                "`runner run --recreate` starts the history afresh once, when you mean it"
            )

    def _check_scripts(self) -> None:
        write, strategy = self.write, self.changes.strategy
        if write.delete_script and not write.upsert_script:
            raise ValueError("write.delete_script goes with write.upsert_script")
        if not write.upsert_script:
            return
        if self.deletes == "soft":
            raise ValueError("with scripts, deletes are propagate (through delete_script) or ignore")
        if self.deletes == "propagate":
            if not write.delete_script:
                raise ValueError("deletes: propagate with write.upsert_script needs write.delete_script")
            if strategy == "full" or (strategy == "watermark" and not self.read.deleted_keys_query):
                raise ValueError(
                    "a delete script needs the deleted keys listed: use strategy 'hash', or 'watermark' with "
                    "read.deleted_keys_query (a script's target cannot be compared key by key)"
                )

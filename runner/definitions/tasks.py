"""A task of a sync job: what it reads from the source, where it writes in the target, how it
finds changes and what it does with deleted rows.

A task's `read` and `write` belong to the kinds of its job's connections: each kind registers
a `ReadModel` and a `WriteModel` (`ReadSpec` and `WriteSpec`, a table or a query, are the SQL
kinds'). `Task` is generic in the two, and a job is validated with its connections' models
(`SyncJobSpec.for_kinds`), so a field exists only for the kind that honours it. The engine
asks the models, never their fields, what is common to every kind: what the task reads and
writes in words, what the write needs of its target, whether the target merges.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any, Generic, Literal, Self

from pydantic import Field, ValidationInfo, field_serializer, field_validator, model_validator
from typing_extensions import TypeVar

from runner.definitions.models import Name, StrictModel, seconds
from runner.definitions.needs import Need
from runner.definitions.schema_changes import (
    DROP_COLUMNS_HELP,
    SCHEMA_CHANGES_HELP,
    TRUNCATE_STRINGS_HELP,
    SchemaChanges,
    check_drop_columns,
)
from runner.definitions.templates import check_syntax
from runner.definitions.transforms import TRANSFORMS_HELP, TransformSpec, column_problems
from runner.definitions.windows import WINDOW_HELP, parse_start, parse_window, start_is_time

TIMEZONE_HELP = (
    "An IANA time zone (e.g. 'Europe/Berlin'): timestamps without a zone in the source are read "
    "as times of that zone and written as UTC (a timestamp with a time zone in the target); "
    "unset (the default), they are copied as they are."
)


def check_timezone(zone: str | None) -> str | None:
    """An IANA zone name, or a located error naming what to write instead."""
    if zone is None:
        return zone
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {zone!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None
    return zone


class ReadModel(StrictModel):
    """The base of every kind's `read` model: what a task reads from its source."""

    def describe(self) -> str:
        """What is read, in a word for results and listings (a table's name, `query`)."""
        raise NotImplementedError

    @property
    def zone(self) -> str | None:
        """The zone the source's timestamps without one are read in (`read.timezone`)."""
        return None

    def with_zone(self, zone: str) -> Self:
        """This read with the job's zone, where the kind takes one and the task states none."""
        return self

    def lists_deleted_keys(self) -> bool:
        """Whether the read lists the keys deleted in the source (a watermark's deletes for a
        target that cannot find them itself)."""
        return False

    def needs(self) -> list[Need]:
        """What this read needs of its source's kind beyond reading."""
        return []

    def declared_columns(self) -> list[str] | None:
        """The columns the read states it gives, in order; None when only the source knows
        them (a table's, a query's): what `runner validate` checks a task's transforms against."""
        return None

    def check(self, task: Task) -> None:
        """Raise ValueError when this read contradicts the rest of the task."""


class WriteModel(StrictModel):
    """The base of every kind's `write` model: where a task writes in its target."""

    keys: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row; strategies other than `full` and deletes need them.",
    )

    @field_validator("keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        if len(set(keys)) != len(keys):
            raise ValueError("a key column is named twice")
        return keys

    def describe(self) -> str:
        """Where rows go, in a word for results and listings (a table's name, a queue's)."""
        raise NotImplementedError

    def merged(self) -> bool:
        """Whether the target merges rows by key and finds the ones gone itself (`native_merge`);
        otherwise each changed row and each listed deleted key is handed to a writer that
        cannot compare with what the target holds (a script, a message)."""
        return False

    def unmerged_by(self) -> str:
        """What makes this write one the target does not merge, for messages."""
        return "this target"

    def with_destination(self, schema: str | None, prefix: str) -> Self:
        """This write under the job's `schema` and `table_prefix`, where the kind has tables."""
        return self

    def needs(self, task: Task) -> list[Need]:
        """What this write needs of its target's kind."""
        raise NotImplementedError

    def added_columns(self, task: Task) -> list[tuple[tuple[str | int, ...], str, str]]:
        """The columns runner adds to what it writes, which the source must not have: (field
        path, column, what runner does with it)."""
        return []

    def check(self, task: Task) -> None:
        """Raise ValueError when this write contradicts the rest of the task."""


class ReadSpec(ReadModel):
    """What a task reads from a SQL source: a whole table, or the rows of a query."""

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
    timezone: str | None = Field(
        None, description=TIMEZONE_HELP + " Unset here means the job's `read.timezone`."
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        return check_timezone(zone)

    @model_validator(mode="after")
    def _one_of(self) -> ReadSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        return self

    def describe(self) -> str:
        return self.table or "query"

    @property
    def zone(self) -> str | None:
        return self.timezone

    def with_zone(self, zone: str) -> Self:
        return self if self.timezone is not None else self.model_copy(update={"timezone": zone})

    def lists_deleted_keys(self) -> bool:
        return self.deleted_keys_query is not None

    def needs(self) -> list[Need]:
        found = []
        if self.query is not None:
            found.append(Need("source", "query", ("read", "query"), "read.query reads the rows of a query"))
        if self.deleted_keys_query is not None:
            why = "read.deleted_keys_query lists the deleted keys with a query"
            found.append(Need("source", "query", ("read", "deleted_keys_query"), why))
        return found

    def check(self, task: Task) -> None:
        if self.deleted_keys_query is not None and (
            task.changes.strategy != "watermark" or task.deletes == "ignore"
        ):
            raise ValueError(
                "read.deleted_keys_query applies to strategy 'watermark' with deletes propagate or soft"
            )


def _also_boolean(schema: dict[str, Any]) -> None:
    """The JSON Schema of a field that also takes `true` / `false` (see `_history_switch`)."""
    schema.setdefault("anyOf", []).append({"type": "boolean"})


BeforeRun = Literal["keep", "truncate", "recreate"]
# the strategies that remove a row from the target once it stops passing a filter (`deletes`
# propagate or soft): a whole read finds it missing; a watermark's read of the changed row, a
# message or a log's change deletes its key. The hash strategy's first run into a filled table
# keeps every source key in the writer's key stage, which such a delete would need meanwhile.
FILTER_DELETES = ("full", "watermark", "messages", "cdc")


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


class WriteSpec(WriteModel):
    """Where a task writes in a SQL target: a table."""

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

    def describe(self) -> str:
        return self.table

    def merged(self) -> bool:
        return not self.upsert_script

    def unmerged_by(self) -> str:
        return "write.upsert_script"

    def with_destination(self, schema: str | None, prefix: str) -> Self:
        return self.model_copy(update={"table": target_table(self.table, schema, prefix)})

    def needs(self, task: Task) -> list[Need]:
        """Scripts run where the write has them, else the target's merge (or replace, without
        keys); history, a table emptied or dropped first, and a table that follows the
        source's columns (a task's own settings, when on) each ask for their capability."""
        found = []
        if self.upsert_script:
            why = "write.upsert_script runs SQL in the target"
            found.append(Need("target", "scripts", ("write", "upsert_script"), why))
        elif self.keys:
            why = "with write.keys, rows are merged by key"
            found.append(Need("target", "native_merge", ("write", "keys"), why))
        else:
            why = "without write.keys, the table's rows are replaced"
            found.append(Need("target", "native_merge", ("write", "table"), why))
        if self.history is not None:
            why = "write.history keeps every version of a row in the target"
            found.append(Need("target", "history", ("write", "history"), why))
        if task.before_run in ("truncate", "recreate"):
            why = f"before_run: {task.before_run} empties or drops the target table"
            found.append(Need("target", "table_lifecycle", ("before_run",), why))
        for name in ("schema_changes", "drop_columns", "truncate_strings"):
            if getattr(task, name) not in (None, False, "off"):
                why = f"{name} changes the target table or its values"
                found.append(Need("target", "alter_tables", (name,), why))
        return found

    def added_columns(self, task: Task) -> list[tuple[tuple[str | int, ...], str, str]]:
        found: list[tuple[tuple[str | int, ...], str, str]] = []
        if task.deletes == "soft":
            soft = self.soft_delete_column
            found.append((("write", "soft_delete_column"), soft, "sets it when a row is deleted"))
        for name in self.history.names() if self.history is not None else ():
            found.append((("write", "history"), name, "keeps a version's validity in it"))
        return found

    def check(self, task: Task) -> None:
        if task.deletes == "soft" and self.soft_delete_column in self.keys:
            raise ValueError("write.soft_delete_column cannot be a key column")
        if self.delete_script and not self.upsert_script:
            raise ValueError("write.delete_script goes with write.upsert_script")
        if self.upsert_script and task.deletes == "propagate" and not self.delete_script:
            raise ValueError("deletes: propagate with write.upsert_script needs write.delete_script")
        task.check_history(task.before_run)


def target_table(table: str, schema: str | None, prefix: str = "") -> str:
    """The table a task writes: `prefix` before the table's name; `schema` when the task's
    table names none (a task's own schema wins).

    >>> target_table("orders", "dw", "src_"), target_table("raw.orders", "dw", "src_")
    ('dw.src_orders', 'raw.src_orders')
    """
    own, _, name = table.rpartition(".")
    where = own or schema
    return f"{where}.{prefix}{name}" if where else f"{prefix}{name}"


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: str | int) -> int:
    """Bytes from a number or a size such as '500MB' or '1GB' (powers of 1024, as PostgreSQL's
    own settings count them)."""
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r}; write bytes, or e.g. '500MB', '1GB'")
    return int(float(match[1]) * _UNITS[match[2].lower()[:1]])


def check_window_start(window: Any, start: Any) -> None:
    """A window of time goes with a start in time, a numeric one with a numeric start."""
    parsed = parse_window(window)
    if parsed.is_time and not start_is_time(start):
        raise ValueError(f"window {str(window)!r} is a length of time, but start {start!r} is a number")
    if not parsed.is_time and start_is_time(start):
        raise ValueError(
            f"window {str(window)!r} is a number (for a numeric column), but start {start!r} is a date "
            "or time; give the window a unit, e.g. '7d'"
        )


MAX_RANGES = 1000


class SplitSpec(StrictModel):
    """A full copy cut into ranges of its key, run by several workers at once (`runner.changes.split`)."""

    ranges: int = Field(
        ge=2,
        le=MAX_RANGES,
        description=(
            "How many ranges of the key (write.keys, one integer column) the source's rows are cut "
            "into, by even spans between its lowest and highest value. Each range is read, merged "
            "and committed on its own, by whichever worker takes it (`runner worker`: every free "
            "worker thread takes one; `runner run` and the in-process daemon: as many at once as the "
            "machine has cores); the task is done when every range is. A range cut by a crash is "
            "run again alone. More ranges than workers evens out a skewed key."
        ),
    )


class ChangesSpec(StrictModel):
    """How a task finds what changed in the source since the last run."""

    strategy: Literal["full", "watermark", "hash", "messages", "cdc"] = Field(
        "full",
        description=(
            "full: read every row (with keys, write only what differs); watermark: read rows whose "
            "`column` is at or past the stored pointer; hash: compare a digest per key, computed "
            "in the source, with the digests of the last run; messages: each message consumed from "
            "a broker is a change, acknowledged once the target has committed it; cdc: a first "
            "snapshot, then the changes from the source's log (PostgreSQL logical decoding), "
            "applied in commit order."
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

    start: str | int | float | None = Field(
        None,
        description=(
            "With watermark: where a task without a pointer starts reading: an ISO date or time "
            "('2024-01-01'), or a number for a numeric column, compared with the column in the "
            "source's own terms. Unset means the job's `changes.start`; neither: from the first row."
        ),
    )
    window: str | int | float | None = Field(
        None,
        description=(
            "With watermark and a start: read the backlog one window at a time, committing the "
            f"target and the pointer after each: {WINDOW_HELP}. Once a window reaches the "
            "source's highest value the task reads as usual. Unset means the job's `changes.window`."
        ),
    )

    split: SplitSpec | None = Field(
        None,
        description=(
            "With full and one integer key: cut the copy into key ranges run by several workers at "
            "once, e.g. `split: {ranges: 8}`. Unset: one transaction reads every row."
        ),
    )

    max_lag: str | int | None = Field(
        None,
        description=(
            "With cdc: how much of the log (bytes, or '500MB', '1GB') the source may keep for the "
            "task before a run warns loudly (a slot left behind keeps WAL on the source's disk). "
            "Unset: 1GB."
        ),
    )

    @field_validator("max_lag", mode="before")
    @classmethod
    def _max_lag(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("strategy") != "cdc":
            raise ValueError("'max_lag' only applies to strategy 'cdc'")
        parse_size(value)
        return value

    @field_validator("split")
    @classmethod
    def _split(cls, value: SplitSpec | None, info: ValidationInfo) -> SplitSpec | None:
        if value is not None and info.data.get("strategy") != "full":
            raise ValueError(
                "'split' only applies to strategy 'full' (a copy of every row cut into key ranges); "
                f"strategy {info.data.get('strategy')!r} reads what changed, in one pass"
            )
        return value

    def max_lag_bytes(self) -> int:
        """The lag (bytes of log) past which a cdc task's run warns."""
        return parse_size(self.max_lag if self.max_lag is not None else "1GB")

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: float | str) -> float | str:
        if seconds(value) < 0:
            raise ValueError("lookback cannot be negative")
        return value

    @field_validator("start", mode="before")
    @classmethod
    def _start(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("strategy") != "watermark":
            raise ValueError("'start' only applies to strategy 'watermark' (with its 'column')")
        return parse_start(value)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return value
        if info.data.get("strategy") != "watermark":
            raise ValueError(
                "'window' only applies to strategy 'watermark' (with its 'column' and a 'start')"
            )
        parse_window(value)
        start = info.data.get("start")
        if start is not None:
            check_window_start(value, start)
        return value

    def backfill(self, start: Any, window: Any) -> tuple[Any, Any]:
        """This task's start and window: its own, else the job's (`SyncJobSpec.resolved`)."""
        return (
            self.start if self.start is not None else start,
            self.window if self.window is not None else window,
        )

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


R = TypeVar("R", bound=ReadModel, default=ReadSpec)
W = TypeVar("W", bound=WriteModel, default=WriteSpec)


class Task(StrictModel, Generic[R, W]):
    """One stream: what a task reads from the source, written to one place in the target;
    `read` and `write` are the models of its job's connections' kinds (by default the SQL
    kinds': a table or query into a table)."""

    @classmethod
    def model_parametrized_name(cls, params: tuple[type[Any], ...]) -> str:
        return cls.__name__  # one task model per schema: the kinds' models are its fields' types

    name: Name = Field(description="Unique within the job; names the task in history.")
    read: R = Field(description="What the task reads from the source; its fields are the source kind's.")
    write: W = Field(description="Where the task writes in the target; its fields are the target kind's.")
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
    active: bool = Field(
        True,
        description=(
            "false switches the task off: it stays defined (its pointer and digests are kept) but every "
            "run skips it, recorded as `inactive`; `runner run --task` refuses it."
        ),
    )
    schema_changes: SchemaChanges | None = Field(
        None, description=f"This task's own `schema_changes` (default: the job's). {SCHEMA_CHANGES_HELP}"
    )
    drop_columns: bool | None = Field(
        None, description=f"This task's own `drop_columns` (default: the job's). {DROP_COLUMNS_HELP}"
    )
    truncate_strings: bool | None = Field(
        None, description=f"This task's own `truncate_strings` (default: the job's). {TRUNCATE_STRINGS_HELP}"
    )
    transforms: list[TransformSpec] = Field(default_factory=list, description=TRANSFORMS_HELP)

    @model_validator(mode="after")
    def _needs_keys(self) -> Self:
        keyless = not self.write.keys
        if keyless and self.changes.strategy not in ("full", "messages"):
            raise ValueError(
                f"strategy {self.changes.strategy!r} needs write.keys: a row read again must update "
                "its copy, never be written twice"
            )
        if keyless and self.deletes != "ignore":
            raise ValueError(f"deletes: {self.deletes} needs write.keys to know which rows are gone")
        self.read.check(self)
        self.write.check(self)
        if self.changes.strategy == "cdc":
            self._check_cdc()
        self._check_listed_deletes()
        return self

    @field_validator("schema_changes", "drop_columns", "truncate_strings")
    @classmethod
    def _table_changes(cls, value: str | bool | None, info: ValidationInfo) -> str | bool | None:
        write = info.data.get("write")
        if write is not None and not write.merged() and value not in (None, False, "off"):
            raise ValueError(
                f"{info.field_name} does not apply to {write.unmerged_by()}, which decides what the "
                "target holds"
            )
        if info.field_name == "drop_columns":
            check_drop_columns(bool(value), info.data.get("schema_changes"))
        return value

    def computed_in_read(self) -> dict[str, str]:
        """The columns the source computes in its read (a compute step's `sql`): name -> SQL."""
        return {
            step.column: step.sql
            for step in self.transforms
            if step.type == "compute" and step.sql is not None
        }

    def transform_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Problems of the task's transforms with the rest of it (paths below the task): a
        column a step names that the read (as far as it declares its columns) or an earlier
        step does not give; a key or the watermark column changed on the way; a filter with
        deletes that only a full read can honour."""
        untouchable = [(k, "a key column (write.keys)") for k in self.write.keys]
        if self.changes.column is not None:
            untouchable.append((self.changes.column, "the watermark column (changes.column)"))
        found = [
            (("transforms", *path), message)
            for path, message in column_problems(
                list(self.transforms), self.read.declared_columns(), untouchable
            )
        ]
        steps = list(self.transforms)
        in_read = [i for i, step in enumerate(steps) if step.type == "compute" and step.sql is not None]
        for i in in_read:
            if any(j < i and not (steps[j].type == "compute" and steps[j].sql is not None) for j in range(i)):
                found.append(
                    (
                        ("transforms", i, "sql"),
                        "a compute with sql runs in the source's read, before every other step: "
                        "list it first",
                    )
                )
            if self.changes.strategy == "cdc":
                found.append(
                    (
                        ("transforms", i, "sql"),
                        "strategy 'cdc' reads each change from the log, not through a SELECT: compute this "
                        "column with an `expression`",
                    )
                )
        filters = [i for i, step in enumerate(self.transforms) if step.type == "filter"]
        if filters and self.deletes != "ignore" and self.changes.strategy not in FILTER_DELETES:
            found.append(
                (
                    ("transforms", filters[0], "type"),
                    f"a filter with deletes: {self.deletes} needs strategy full, watermark, messages "
                    f"or cdc (each reads the changed row): strategy {self.changes.strategy!r} would "
                    "keep a row that stopped passing the filter in the target; or use deletes: ignore",
                )
            )
        return found

    def check_history(self, before_run: BeforeRun | None) -> None:
        """History mode with what it cannot honour; `before_run` is the task's, or the job's
        when the task has none (`SyncJobSpec`)."""
        history = getattr(self.write, "history", None)  # a table's (`WriteSpec`)
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

    def _check_cdc(self) -> None:
        """What the log-based strategy cannot honour: it follows one table's log and applies
        each change through runner's merge."""
        if getattr(self.read, "table", None) is None:
            raise ValueError(
                "strategy 'cdc' follows a table's changes in the log: give read.table, not a query"
            )
        if not self.write.merged() or getattr(self.write, "history", None) is not None:
            raise ValueError(
                "strategy 'cdc' applies changes through runner's merge: it goes without "
                f"{self.write.unmerged_by() if not self.write.merged() else 'write.history'}"
            )

    def _check_listed_deletes(self) -> None:
        """A write the target does not merge (a script, a message) cannot find the rows gone from
        the source: deletes are propagated as a list of keys, which the hash strategy or a
        watermark's `read` must give."""
        write, strategy = self.write, self.changes.strategy
        if write.merged():
            return
        what = write.unmerged_by()
        if self.deletes == "soft":
            raise ValueError(f"with {what}, deletes are propagate (as listed keys) or ignore")
        if self.deletes == "propagate" and (
            strategy == "full" or (strategy == "watermark" and not self.read.lists_deleted_keys())
        ):
            raise ValueError(
                f"deletes with {what} need the deleted keys listed: use strategy 'hash', or 'watermark' "
                "with a read that lists them (read.deleted_keys_query); such a target cannot be "
                "compared key by key"
            )


def task_name(table: str, taken: set[str]) -> str:
    """A valid task name (lower-case letters, digits, `-`, `_`, `.`) for a table, unique among `taken`."""
    base = re.sub(r"[^a-z0-9_.-]+", "-", table.lower()).strip("-_.")[:55].strip("-_.") or "table"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name

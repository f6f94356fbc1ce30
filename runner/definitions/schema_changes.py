"""What a task may change in its target table when the source's columns change (CData Sync's
Alter_Schema), and whether it cuts strings that do not fit (Auto_Truncate_Strings).

Each is a field of the sync job (`spec.schema_changes`, `spec.drop_columns`,
`spec.truncate_strings`) and of its tasks: a task's own value wins, None means "the job's".
`resolve` is the one place the two are combined. A task that writes through
`write.upsert_script` never has its table altered nor its strings cut: its script decides what
the table holds (setting them on such a task is a `runner validate` error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from runner.definitions.jobs import SyncJobSpec
    from runner.definitions.tasks import Task

SchemaChanges = Literal["add_and_widen", "add", "off"]
DEFAULT_SCHEMA_CHANGES: SchemaChanges = "add_and_widen"

SCHEMA_CHANGES_HELP = (
    "When the source's columns change: `add_and_widen` (the default) adds a new source column to "
    "the target table and widens a target column whose source type widened (a longer varchar, "
    "int to bigint, more numeric digits); `add` only adds columns; `off` alters nothing (a column "
    "the target lacks fails the task). A type change the target cannot follow without losing data "
    "(a narrowing, text to integer) stops the task before anything is written, naming the DDL that "
    "would follow it. A column gone from the source stays in the target (NULL in new rows) unless "
    "`drop_columns`."
)
DROP_COLUMNS_HELP = (
    "With `schema_changes` add or add_and_widen: drop a target column once the source no longer "
    "has it (only a column runner saw in the source before; never a key). Off by default."
)
TRUNCATE_STRINGS_HELP = (
    "Cut a string longer than its target column (varchar(n), char(n)) to the column's length in "
    "characters, counted per column in the run's history with a warning in its log. Off (the "
    "default): such a value fails the task naming its row and column."
)


@dataclass(frozen=True)
class TableChanges:
    """A task's resolved settings: what its writer may do to the target table."""

    add: bool = True
    widen: bool = True
    drop: bool = False
    truncate_strings: bool = False

    @property
    def alters(self) -> bool:
        return self.add or self.widen or self.drop

    def describe(self) -> dict[str, object]:
        """For `runner plan`/`describe` and the history: the settings in the YAML's words."""
        mode = "add_and_widen" if self.widen else "add" if self.add else "off"
        return {"schema_changes": mode, "drop_columns": self.drop, "truncate_strings": self.truncate_strings}


OFF = TableChanges(add=False, widen=False, drop=False, truncate_strings=False)


def check_drop_columns(drop: bool | None, schema_changes: object) -> None:
    """`drop_columns` asks for a change that `schema_changes: off` would never make."""
    if drop and schema_changes == "off":
        raise ValueError("drop_columns needs schema_changes add or add_and_widen (off alters nothing)")


def resolve(job: SyncJobSpec, task: Task) -> TableChanges:
    """The task's settings: its own where it has them, else the job's."""
    if not task.write.merged():
        return OFF
    mode = task.schema_changes if task.schema_changes is not None else job.schema_changes
    drop = task.drop_columns if task.drop_columns is not None else job.drop_columns
    truncate = task.truncate_strings if task.truncate_strings is not None else job.truncate_strings
    return TableChanges(
        add=mode != "off",
        widen=mode == "add_and_widen",
        drop=bool(drop) and mode != "off",
        truncate_strings=bool(truncate),
    )

"""The change logs of a job with a target (`change_log` beside `target`): its target's writer,
with each change it is handed also written to the task's change-log file, so writer jobs
(`source: {job: name}`) follow the job exactly as they follow a reader.

What is logged: every row staged or inserted (an `upsert`), and every key deleted by list
(`stage_keys` then `delete_listed`: a `delete`). The strategies that keep change logs beside a
target (`LOGGED_STRATEGIES`: hash, watermark without deletes, cdc but for a truncate) change
their target only so, and store a pointer or digests in the state store after each commit,
which the index entry rides on. `full` (a truncate, or deletes of what is missing found inside
the database, and no position stored) and `messages` (its position is the broker's
acknowledgement, outside any state-store transaction) cannot keep the ordering below.

The ordering of a commit, which keeps log and target together under kill -9:

1. the change-log file is closed, synced and renamed (`ChangeLogWriter.seal`): complete in its
   folder (on this machine or a server), in no index, so no writer reads it;
2. the target commits;
3. the strategy stores the task's pointer or digests, and the file's index entry is written in
   that same state-store transaction (`Tasks.with_next_position`).

A kill before 2: neither target nor index has the changes. A kill between 2 and 3: the target
has them, the index not. Either way the pointer has not moved: the next run reads the same
changes again, merges them again (a merge by key is idempotent) and logs them under the same
positions (numbered from the index), and the file no index lists is swept by retention. After
3 the pointer, the digests and the index all have them: the next run does not read them
again. So a log is indexed exactly for the changes the target committed and the pointer
passed: never for changes the target did not commit, never missing for changes it did, never
twice for a writer to apply twice. A run that ends without storing the pointer after a commit
(a failure) leaves that file unindexed, its changes to be read again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runner.connectors.base import Writer
from runner.connectors.changelog_files import ChangeLogWriter
from runner.errors import TerminalError
from runner.streams.checkpoints import checkpoint
from runner.streams.types import Batch

if TYPE_CHECKING:
    from runner.state.tasks import Tasks

MAX_LISTED_KEYS = 1_000_000  # keys held for `delete_listed`; a strategy lists a chunk at a time


class LoggedWriter:
    """A target's `Writer` whose changes also go to a change log (see the module's docstring);
    what it does not change is the inner writer's (`__getattr__`)."""

    def __init__(self, inner: Writer, log: ChangeLogWriter, tasks: Tasks, task_id: int):
        self.inner, self.log, self.tasks, self.task_id = inner, log, tasks, task_id
        self.listed: list[tuple] = []  # keys staged since `open_key_stage`
        self.overflow = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def stage(self, batch: Batch) -> None:
        self.inner.stage(batch)
        self.log.write_rows(batch)

    def insert(self, batch: Batch) -> None:
        self.inner.insert(batch)  # type: ignore[attr-defined]  # a `MergeWriter`'s
        self.log.write_rows(batch)

    def open_key_stage(self) -> None:
        self.inner.open_key_stage()
        self.listed, self.overflow = [], False

    def stage_keys(self, keys: Batch) -> None:
        self.inner.stage_keys(keys)
        if len(self.listed) + len(keys) > MAX_LISTED_KEYS:  # a reconcile's present keys, not deletes
            self.listed, self.overflow = [], True
        elif not self.overflow:
            self.listed.extend(keys)

    def delete_listed(self) -> int:
        if self.overflow:
            raise TerminalError(f"more than {MAX_LISTED_KEYS} keys deleted at once: too many to change-log")
        deleted = self.inner.delete_listed()
        self.log.write_keys(self.listed)
        self.listed = []
        return deleted

    def delete_missing(self, *args: Any) -> int:
        """Rows of the target the source does not have (a first run into a filled table): not
        changes of the source, so not in its change log (a writer starts from none of them)."""
        self.listed = []
        return int(self.inner.delete_missing(*args))  # type: ignore[attr-defined]

    def copy_from(self, *args: Any, **kwargs: Any) -> None:
        return None  # rows copied inside the databases would pass the change log by

    def write_arrow(self, batches: Any) -> None:
        return None

    def commit(self) -> None:
        """Seal the log, commit the target; the index entry rides on the pointer's store (the
        module's ordering)."""
        index = self.log.seal()
        self.inner.commit()
        if index is not None:
            self.tasks.with_next_position(self.task_id, index)
        checkpoint("target_committed")  # committed, its change log not indexed yet

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self._drop()

    def _drop(self) -> None:
        """A file whose pointer was never stored stays unindexed: its changes are read again."""
        self.tasks.riders.pop(self.task_id, None)
        self.log.close()

    def __enter__(self) -> LoggedWriter:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.inner.__exit__(*exc)
        finally:
            self._drop()

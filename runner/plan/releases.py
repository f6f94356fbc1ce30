"""What a plan lets go of in the sources: the replication slot and publication of each cdc task
that the plan deletes (its job deleted, the task removed, its strategy changed, or its job moved
to another source). A slot nobody reads keeps the source's log on its disk for ever, so `runner
plan` names each one and `runner apply` drops it once the plan is applied. A source that keeps
no slot for a task (MariaDB: its binlog expires by the server's settings) has nothing dropped:
the task's stored binlog position is forgotten, and the plan says that instead. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.connectors import registry
from runner.connectors.changelog import log_names
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.load import resolve_reference
from runner.jobs.types import parse as parse_job
from runner.plan.diff import Plan


@dataclass(frozen=True)
class Release:
    """One cdc task's slot and publication to drop, on its (old) source connection."""

    namespace: str
    job: str
    task: str
    source: str  # the job's source as it was written (resolved against `connections` at apply)
    slot: str
    publication: str
    keeps_slot: bool = True  # the source keeps a slot for the task (`LogSource.log_slot`)

    def text(self) -> str:
        if not self.keeps_slot:
            return (
                f"forgets the stored log position of task {self.task!r} (connection {self.source!r} "
                "keeps no slot for it: nothing is dropped in the source)"
            )
        return (
            f"drops replication slot {self.slot} and publication {self.publication} of task "
            f"{self.task!r} on connection {self.source!r}"
        )


def keeps_slot(kind: str | None) -> bool:
    """Whether a source of connection type `kind` keeps a slot per cdc task (an unknown type:
    assume it does, so the plan never hides one)."""
    found = registry.kind(kind) if kind else None
    connector = found.connector if found is not None else None
    return bool(getattr(connector, "log_slot", True)) if connector is not None else True


def _cdc_tasks(document: dict[str, Any] | None) -> tuple[str | None, set[str]]:
    """A job document's source and the names of its cdc tasks."""
    if document is None:
        return None, set()
    try:
        spec = parse_job(document["spec"])
    except (KeyError, ValueError):
        return None, set()
    if not isinstance(spec, SyncJobSpec):
        return None, set()
    return spec.source, {t.name for t in spec.tasks if t.changes.strategy == "cdc"}


def releases(plan: Plan, types: dict[tuple[str, str], str] | None = None) -> list[Release]:
    """Every cdc task the plan lets go of, in the plan's order; `types` are the applied
    connections' types by (namespace, name), which say whether the source keeps a slot."""
    types = types or {}
    found = []
    for c in plan.changes:
        if c.kind != "Job" or c.action not in ("update", "delete"):
            continue
        source, before = _cdc_tasks(c.before)
        after_source, after = _cdc_tasks(c.after if c.action == "update" else None)
        gone = before if after_source != source else before - after
        for task in sorted(gone):
            names = log_names(c.namespace, c.name, task)
            assert source is not None
            key = resolve_reference(source, c.namespace, set(types))
            kind = types.get(key) if key is not None else None
            found.append(
                Release(c.namespace, c.name, task, source, names.slot, names.publication, keeps_slot(kind))
            )
    return found


def connection_of(release: Release, connections: set[tuple[str, str]]) -> tuple[str, str] | None:
    """The (namespace, name) of a release's source among `connections`."""
    return resolve_reference(release.source, release.namespace, connections)

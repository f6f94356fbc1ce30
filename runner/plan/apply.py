"""Apply a plan to the state store: under the apply lock, in one transaction, with a revision
that records who applied what from which git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

from runner.connectors import registry
from runner.connectors.changelog import LogNames, LogSource
from runner.definitions.load import DEFINITION_DIRS
from runner.definitions.validate import digest
from runner.errors import RunnerError, StaleState
from runner.plan.diff import Plan
from runner.plan.releases import Release, connection_of
from runner.state.objects import Write
from runner.state.store import StateStore


def git_info(folder: Path) -> tuple[str | None, bool | None]:
    """The commit checked out in `folder`'s git work tree and whether its definitions are
    dirty; (None, None) outside a work tree or without git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(  # only the definitions count: runner's own .runner/ is not a change
            ["git", "-C", str(folder), "status", "--porcelain", "--", *DEFINITION_DIRS],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None


def writes_for(plan: Plan) -> list[Write]:
    writes = []
    for c in plan.changes:
        if c.action == "delete":
            writes.append(Write(c.kind, c.namespace, c.name, None))
        elif c.action in ("create", "update"):
            assert c.after is not None
            writes.append(Write(c.kind, c.namespace, c.name, c.after, digest(c.after), c.file, c.line))
        elif c.moved:
            writes.append(
                Write(c.kind, c.namespace, c.name, c.after, file=c.file, line=c.line, new_revision=False)
            )
    return writes


def apply_plan(store: StateStore, plan: Plan, folder: Path) -> int | None:
    """Apply `plan` exactly; refuse when the state moved since it was made. The caller holds
    the apply lock (`locks.APPLY`).

    Returns:
        The new revision id, or None when there was nothing to change.
    Raises:
        StaleState: the latest revision is not the plan's base.
    """
    writes = writes_for(plan)
    if not writes:
        if store.objects.state_digest() != plan.base_state:
            raise StaleState("the state changed since the plan was made; make a new plan")
        return None
    commit, dirty = git_info(folder)
    return store.objects.apply(
        writes,
        base_revision=plan.base_revision,
        base_state=plan.base_state,
        git_commit=commit,
        git_dirty=dirty,
        digest=plan.digest,
        summary=plan.summary(),
    )


def release_logs(
    gone: list[Release], connections: dict[tuple[str, str], dict[str, Any]], folder: Path, store: StateStore
) -> list[str]:
    """Drop the slot and publication of each cdc task an applied plan let go of (`releases`),
    on its source as it was before the apply (`connections`), and forget the task's position:
    a task of that name added again starts with a snapshot. A source that cannot be reached
    keeps its slot: the line says so, and how to drop it by hand.

    Returns:
        One line per release: what was dropped, or a warning.
    """
    lines = []
    for r in gone:
        where = f"job {r.namespace}/{r.job}, task {r.task!r}"
        key = connection_of(r, set(connections))
        if not r.keeps_slot:  # nothing kept in the source for the task: its position only
            _forget(store, r)
            lines.append(f"{where}: forgot its stored log position (the source keeps no slot for it)")
            continue
        try:
            if key is None:
                raise RunnerError(f"its source connection {r.source!r} is not applied")
            connector = registry.open_connector(f"{key[0]}/{key[1]}", connections[key], folder)
            try:
                if "log_changes" not in connector.capabilities.names():
                    continue
                log = cast(LogSource, connector).change_log(LogNames(r.slot, r.publication), "", [], [])
                dropped = log.drop()
            finally:
                connector.close()
        except RunnerError as exc:
            lines.append(
                f"warning: {where}: replication slot {r.slot} not dropped ({exc}); it keeps the "
                f"source's log until dropped: SELECT pg_drop_replication_slot('{r.slot}'); "
                f"DROP PUBLICATION {r.publication}"
            )
            continue
        _forget(store, r)
        lines.append(f"{where}: dropped {', '.join(dropped)}" if dropped else f"{where}: no slot to drop")
    return lines


def _forget(store: StateStore, r: Release) -> None:
    """The task's state (its position) forgotten: a task of that name added again starts with
    a snapshot."""
    for state in store.tasks.states(r.namespace, r.job):
        if state.task == r.task:
            store.tasks.forget(state.id)

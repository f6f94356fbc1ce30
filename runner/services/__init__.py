"""The services: what every edge (the CLI, the HTTP API, the daemon) calls, one module per
concern (definitions, catalog, history, pointers, operate, keys, probe, verify, writeback) over the run
lifecycle in `runner.runs`. This package is the facade the edges import, so a command, a
request and a test call the same code, and the edges never reach the engine."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runner.changes.task import RunOptions
    from runner.errors import DefinitionsInvalid
    from runner.runs.admission import Admission, Admitted
    from runner.runs.index import job_runs, prune_history, recent_runs
    from runner.runs.jobs import adhoc_job, check_adhoc, check_tasks
    from runner.runs.lifecycle import run, run_adhoc
    from runner.runs.records import (
        interrupt_holder,
        mark_interrupted,
        record_not_started,
        record_queued,
        run_mode,
    )
    from runner.runs.split import ask_help_with, help_run
    from runner.services.catalog import connections, describe, get, tasks
    from runner.services.changelogs import changes, replay
    from runner.services.cluster import (
        check_shared_history,
        register_worker,
        unregister_worker,
        worker_heartbeat,
        workers,
    )
    from runner.services.definitions import (
        DEFAULT_LOCK_TIMEOUT,
        SCHEMA_FILE,
        ApplyResult,
        apply,
        check,
        expansions,
        force_unlock,
        json_schema,
        log_releases,
        plan,
        plan_data,
        read_plan,
        save_plan,
        validate,
        write_schemas,
    )
    from runner.services.history import log_since, logs, run_record, runs
    from runner.services.imports import ImportResult, import_jobs
    from runner.services.keys import KEY_SCOPES, key_hash, keys_create, keys_list, keys_revoke
    from runner.services.operate import cancel, pause, paused_info, runtime_switches, status, suspend
    from runner.services.pointers import MAX_POINTER, pointer_set, pointer_show
    from runner.services.probe import connections_test, discover
    from runner.services.verify import verify
    from runner.services.writeback import (
        add_task,
        api_author,
        create_job,
        delete_job,
        delete_task,
        edit_job,
        move_task,
        replace_job,
        replace_task,
        switch_task,
    )
    from runner.state import locks
    from runner.streams.cancel import CancelToken
    from runner.workspace import Workspace, find

# Each name is imported from its module on first use, so a command loads only what it calls:
# `runner --help` none of it, `runner run` the run lifecycle (not the plan, catalog, keys, probes).
_MODULES: dict[str, tuple[str, ...]] = {
    "runner.changes.task": ("RunOptions",),
    "runner.errors": ("DefinitionsInvalid",),
    "runner.runs.admission": ("Admission", "Admitted"),
    "runner.runs.index": ("job_runs", "prune_history", "recent_runs"),
    "runner.runs.jobs": ("adhoc_job", "check_adhoc", "check_tasks"),
    "runner.runs.lifecycle": ("run", "run_adhoc"),
    "runner.runs.records": (
        "interrupt_holder",
        "mark_interrupted",
        "record_not_started",
        "record_queued",
        "run_mode",
    ),
    "runner.services.catalog": ("connections", "describe", "get", "tasks"),
    "runner.services.changelogs": ("changes", "replay"),
    "runner.services.cluster": (
        "check_shared_history",
        "register_worker",
        "unregister_worker",
        "worker_heartbeat",
        "workers",
    ),
    "runner.services.definitions": (
        "DEFAULT_LOCK_TIMEOUT",
        "SCHEMA_FILE",
        "ApplyResult",
        "apply",
        "check",
        "expansions",
        "force_unlock",
        "json_schema",
        "log_releases",
        "plan",
        "plan_data",
        "read_plan",
        "save_plan",
        "validate",
        "write_schemas",
    ),
    "runner.services.history": ("log_since", "logs", "run_record", "runs"),
    "runner.services.imports": ("ImportResult", "import_jobs"),
    "runner.services.keys": ("KEY_SCOPES", "key_hash", "keys_create", "keys_list", "keys_revoke"),
    "runner.services.operate": ("cancel", "pause", "paused_info", "runtime_switches", "status", "suspend"),
    "runner.services.pointers": ("MAX_POINTER", "pointer_set", "pointer_show"),
    "runner.services.probe": ("connections_test", "discover"),
    "runner.services.verify": ("verify",),
    "runner.services.writeback": (
        "add_task",
        "api_author",
        "create_job",
        "delete_job",
        "delete_task",
        "edit_job",
        "move_task",
        "replace_job",
        "replace_task",
        "switch_task",
    ),
    "runner.runs.split": ("ask_help_with", "help_run"),
    "runner.streams.cancel": ("CancelToken",),
    "runner.workspace": ("Workspace", "find"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name == "locks":  # a module, not a name in one
        value = importlib.import_module("runner.state.locks")
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "Admission",
    "Admitted",
    "ApplyResult",
    "CancelToken",
    "locks",
    "DEFAULT_LOCK_TIMEOUT",
    "DefinitionsInvalid",
    "KEY_SCOPES",
    "MAX_POINTER",
    "RunOptions",
    "SCHEMA_FILE",
    "Workspace",
    "adhoc_job",
    "apply",
    "ask_help_with",
    "cancel",
    "changes",
    "check",
    "check_adhoc",
    "check_shared_history",
    "check_tasks",
    "connections",
    "connections_test",
    "describe",
    "discover",
    "find",
    "expansions",
    "force_unlock",
    "get",
    "help_run",
    "ImportResult",
    "import_jobs",
    "interrupt_holder",
    "job_runs",
    "json_schema",
    "key_hash",
    "keys_create",
    "keys_list",
    "keys_revoke",
    "log_releases",
    "log_since",
    "logs",
    "mark_interrupted",
    "pause",
    "register_worker",
    "paused_info",
    "plan",
    "plan_data",
    "pointer_set",
    "pointer_show",
    "prune_history",
    "read_plan",
    "recent_runs",
    "replay",
    "record_not_started",
    "record_queued",
    "unregister_worker",
    "worker_heartbeat",
    "workers",
    "run",
    "run_adhoc",
    "run_mode",
    "run_record",
    "runs",
    "runtime_switches",
    "save_plan",
    "status",
    "suspend",
    "tasks",
    "validate",
    "verify",
    "write_schemas",
    "add_task",
    "api_author",
    "create_job",
    "delete_job",
    "delete_task",
    "edit_job",
    "move_task",
    "replace_job",
    "replace_task",
    "switch_task",
]

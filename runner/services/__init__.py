"""The services: what every edge (the CLI, the HTTP API, the daemon) calls, one module per
concern (definitions, catalog, history, pointers, operate, keys, probe) over the run
lifecycle in `runner.runs`. This package is the facade the edges import, so a command, a
request and a test call the same code, and the edges never reach the engine."""

from __future__ import annotations

from runner.changes.task import RunOptions
from runner.errors import DefinitionsInvalid
from runner.runs.index import job_runs, prune_history, recent_runs
from runner.runs.jobs import adhoc_job, check_adhoc, check_tasks
from runner.runs.lifecycle import run, run_adhoc
from runner.runs.records import mark_interrupted, record_not_started, record_queued, run_mode
from runner.services.catalog import connections, describe, get, tasks
from runner.services.definitions import (
    DEFAULT_LOCK_TIMEOUT,
    SCHEMA_FILE,
    ApplyResult,
    apply,
    check,
    expansions,
    force_unlock,
    json_schema,
    plan,
    read_plan,
    save_plan,
    validate,
    write_schemas,
)
from runner.services.history import log_since, logs, run_record, runs
from runner.services.keys import KEY_SCOPES, key_hash, keys_create, keys_list, keys_revoke
from runner.services.operate import cancel, pause, paused_info, runtime_switches, status, suspend
from runner.services.pointers import MAX_POINTER, pointer_set, pointer_show
from runner.services.probe import connections_test, discover
from runner.state import locks
from runner.streams.cancel import CancelToken
from runner.workspace import Workspace, find

__all__ = [
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
    "cancel",
    "check",
    "check_adhoc",
    "check_tasks",
    "connections",
    "connections_test",
    "describe",
    "discover",
    "find",
    "expansions",
    "force_unlock",
    "get",
    "job_runs",
    "json_schema",
    "key_hash",
    "keys_create",
    "keys_list",
    "keys_revoke",
    "log_since",
    "logs",
    "mark_interrupted",
    "pause",
    "paused_info",
    "plan",
    "pointer_set",
    "pointer_show",
    "prune_history",
    "read_plan",
    "recent_runs",
    "record_not_started",
    "record_queued",
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
    "write_schemas",
]

"""Backfill windows (`changes.start`, `changes.window`) and time zones (`read.timezone`): every
combination the engine cannot honour is a located `validate` error, job-wide values are the
tasks' defaults, and a task's own value wins."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runner import services
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.windows import Window, parse_window
from runner.errors import DefinitionsInvalid
from tests.conftest import TWO_SQLITE

WATERMARK = "{strategy: watermark, column: at"


def _lines(project, tasks: str, extra: str = "") -> list[str]:
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job("j", "src", "dst", tasks, extra=extra)
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return [str(p).replace(f"{project.root}/", "") for p in info.value.problems]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            "{strategy: full, window: 7d}",
            "spec.tasks[0].changes.window: 'window' only applies to strategy 'watermark'",
        ),
        (
            "{strategy: hash, start: 2024-01-01}",
            "spec.tasks[0].changes.start: 'start' only applies to strategy",
        ),
        (
            f"{WATERMARK}, start: 2024-01-01, window: 1000}}",
            "window '1000' is a number (for a numeric column), but",
        ),
        (f"{WATERMARK}, start: 5, window: 7d}}", "window '7d' is a length of time, but start 5 is a number"),
        (
            f"{WATERMARK}, start: 2024-01-01, window: 1m}}",
            "'m' could be minutes or months; write 'min' or 'month'",
        ),
        (f"{WATERMARK}, start: 2024-01-01, window: 1.5d}}", "a time window is a whole number of days"),
        (f"{WATERMARK}, start: 2024-01-01, window: 0d}}", "a window must be more than 0"),
        (f"{WATERMARK}, start: 2024-01-01, window: 7 fortnights}}", "unknown unit 'fortnights'"),
        (f"{WATERMARK}, start: yesterday}}", "spec.tasks[0].changes.start: invalid start 'yesterday'"),
        (f"{WATERMARK}, window: 7d}}", "spec.tasks[0].changes.window: task 't': a window needs a start"),
    ],
)
def test_a_window_or_start_the_engine_cannot_honour_is_located(project, changes, message):
    (line,) = _lines(
        project, f"- {{name: t, read: {{table: a}}, write: {{table: b, keys: [id]}}, changes: {changes}}}"
    )
    assert line.startswith("jobs.d/j.yaml:"), line
    assert message in line, line


def test_job_wide_values_are_checked_with_each_task_and_located_where_they_are(project):
    found = _lines(
        project,
        f"""
        - {{name: numbers, read: {{table: a}}, write: {{table: b, keys: [id]}},
           changes: {WATERMARK}, start: 100}}}}
        - {{name: own, read: {{table: a}}, write: {{table: c, keys: [id]}},
           changes: {WATERMARK}, start: 5, window: 10}}}}
        - {{name: full, read: {{table: a}}, write: {{table: d}}}}
        """,
        extra="  changes: {window: 7d}\n",
    )
    # the job's time window meets the task's numeric start: located at the job's field
    assert found == [
        "jobs.d/j.yaml:7:13: spec.changes.window: task 'numbers': window '7d' is a length of time, "
        "but start 100 is a number"
    ]


def test_a_job_wide_window_no_task_can_use_is_an_error(project):
    found = _lines(
        project, "- {name: t, read: {table: a}, write: {table: b}}", extra="  changes: {start: 2024-01-01}\n"
    )
    assert found == [
        "jobs.d/j.yaml:7:13: spec.changes.start: no task of this job uses strategy 'watermark': "
        "'start' applies to none"
    ]


@pytest.mark.parametrize(
    ("where", "field"),
    [("  read: {timezone: Europe/Berln}\n", "spec.read.timezone"), ("", "spec.tasks[0].read.timezone")],
)
def test_an_unknown_time_zone_is_located(project, where, field):
    task = (
        "- {name: t, read: {table: a, timezone: Europe/Berln}, write: {table: b}}"
        if not where
        else ("- {name: t, read: {table: a}, write: {table: b}}")
    )
    (line,) = _lines(project, task, extra=where)
    assert f"{field}: unknown time zone 'Europe/Berln'" in line, line


def test_job_wide_values_are_the_tasks_defaults_and_a_tasks_own_wins() -> None:
    spec = SyncJobSpec.model_validate(
        {
            "source": "a",
            "target": "b",
            "read": {"timezone": "Europe/Berlin"},
            "changes": {"start": "2024-01-01", "window": "7d"},
            "tasks": [
                {"name": "plain", "read": {"table": "x"}, "write": {"table": "x", "keys": ["id"]},
                 "changes": {"strategy": "watermark", "column": "at"}},
                {"name": "own", "read": {"table": "y", "timezone": "UTC"},
                 "write": {"table": "y", "keys": ["id"]},
                 "changes": {"strategy": "watermark", "column": "at", "start": "2025-06-01",
                             "window": "1 month"}},
                {"name": "full", "read": {"table": "z"}, "write": {"table": "z"}},
            ],
        }
    )  # fmt: skip
    plain, own, full = (spec.resolved(t) for t in spec.tasks)
    assert (plain.read.timezone, plain.changes.start, plain.changes.window) == (
        "Europe/Berlin",
        "2024-01-01",
        "7d",
    )
    assert (own.read.timezone, own.changes.start, own.changes.window) == ("UTC", "2025-06-01", "1 month")
    assert (full.read.timezone, full.changes.start, full.changes.window) == ("Europe/Berlin", None, None)


def test_a_yaml_date_start_is_kept_as_iso_text(project):
    """YAML reads `2024-01-01` as a date; the applied document (JSON) keeps its ISO text."""
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job(
        "j", "src", "dst",
        f"- {{name: t, read: {{table: a}}, write: {{table: b, keys: [id]}}, changes: {WATERMARK}, "
        "start: 2024-01-01, window: 2 weeks}}",
    )  # fmt: skip
    services.apply(project.ws)
    (job,) = services.get(project.ws, "Job")
    assert job.document["spec"]["tasks"][0]["changes"] == {
        "strategy": "watermark", "column": "at", "start": "2024-01-01", "window": "2 weeks"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("7d", Window(Decimal(7), "days")),
        ("1 month", Window(Decimal(1), "months")),
        ("1y", Window(Decimal(1), "years")),
        ("30 min", Window(Decimal(30), "minutes")),
        ("6h", Window(Decimal(6), "hours")),
        ("2 weeks", Window(Decimal(2), "weeks")),
        (100000, Window(Decimal(100000))),
        ("2.5", Window(Decimal("2.5"))),
    ],
)
def test_window_syntax(text, window):
    assert parse_window(text) == window

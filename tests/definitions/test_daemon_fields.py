"""The job fields the daemon acts on: triggers (with the cycle guard), retry, timeout, parallel."""

from __future__ import annotations

import pytest

from runner import services
from runner.definitions.jobs import Retry
from runner.errors import DefinitionsInvalid
from tests.conftest import TASK, TWO_SQLITE


def lines(project) -> list[str]:
    with pytest.raises(DefinitionsInvalid) as info:
        services.validate(project.ws)
    return [str(p).replace(f"{project.root}/", "") for p in info.value.problems]


def test_a_trigger_cycle_is_rejected_with_file_and_line(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job("a", "src", "dst", TASK, extra="  after: [{job: c}]\n")
    project.job("b", "src", "dst", TASK, extra="  after: [{job: a, when: finished}]\n")
    project.job("c", "src", "dst", TASK, extra="  after: [{job: ns2/x}, {job: b, when: failed}]\n")
    project.job("x", "src", "dst", TASK, folder="ns2/")
    assert lines(project) == [
        "jobs.d/a.yaml:7:12: spec.after[0].job: triggers form a cycle: default/a -> default/b -> "
        "default/c -> default/a (hint: a job cannot fire itself, directly or through other jobs)"
    ]


def test_a_job_cannot_follow_itself_nor_a_job_that_does_not_exist(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job("a", "src", "dst", TASK, extra="  after: [{job: default/a}]\n")
    project.job("b", "src", "dst", TASK, extra="  after:\n    - job: nope\n")
    assert lines(project) == [
        "jobs.d/a.yaml:7:12: spec.after[0].job: triggers form a cycle: default/a -> default/a "
        "(hint: a job cannot fire itself, directly or through other jobs)",
        "jobs.d/b.yaml:8:7: spec.after[0].job: job 'nope' does not exist "
        "(hint: a trigger names a job defined in jobs.d/)",
    ]


def test_retry_timeout_and_parallel_are_checked(project):
    project.write("connections.d/c.yaml", TWO_SQLITE)
    project.job(
        "a",
        "src",
        "dst",
        TASK,
        extra=(
            "  retry: {attempts: 1, backoff: 2x}\n  timeout: 0\n  parallel: 40\n"
            "  after: [{job: b, when: sometimes}]\n"
        ),
    )
    project.job("b", "src", "dst", TASK, extra="  retry: {attempts: 3, backoff: 5m, max_delay: 1m}\n")
    assert lines(project) == [
        "jobs.d/a.yaml:7:11: spec.retry.attempts: Input should be greater than or equal to 2",
        "jobs.d/a.yaml:7:24: spec.retry.backoff: invalid duration '2x'; use a number of seconds or "
        "e.g. '90s', '5m', '2h', '1d'",
        "jobs.d/a.yaml:8:3: spec.timeout: must be more than 0 seconds",
        "jobs.d/a.yaml:9:3: spec.parallel: Input should be less than or equal to 32",
        "jobs.d/a.yaml:10:20: spec.after[0].when: Input should be 'succeeded', 'failed' or 'finished'",
        "jobs.d/b.yaml:7:3: spec.retry: max_delay is shorter than backoff",
    ]


def test_backoff_doubles_up_to_max_delay():
    retry = Retry(attempts=6, backoff="2s", max_delay="10s")
    assert [retry.delay(n) for n in range(1, 6)] == [2, 4, 8, 10, 10]

"""Continuous jobs (`spec.continuous`): the daemon keeps one run of each going instead of firing
it on a schedule. The run consumes without end (`RunOptions.continuous`: drain, commit, repeat,
each batch committed within `max_latency`) until it is cancelled or fails; then it is started
again, at once when the daemon itself stopped it (the job's definition changed, a resume), after
a backoff that doubles with each failure in a row otherwise (a failed run, a run refused because
another process runs the job, `runner cancel`: `runner suspend` is how to stop one).

This module only decides (which jobs are due, which runs to stop, when to look again); the
daemon's loop submits and cancels (`runner.daemon.main`), so it stays a pure, testable clock."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from runner import services
from runner.daemon.executor import Request
from runner.definitions.jobs import Continuous
from runner.definitions.models import seconds

TRIGGER = "continuous"  # the trigger of a continuous job's run


@dataclass
class Supervisor:
    jobs: dict[str, tuple[Continuous, str]] = field(default_factory=dict)  # ref -> (settings, spec as JSON)
    failures: dict[str, int] = field(default_factory=dict)  # ref -> failed runs in a row
    not_before: dict[str, float] = field(default_factory=dict)  # ref -> monotonic time it may start
    stopping: set[str] = field(default_factory=set)  # runs the daemon cancels on purpose
    running: set[str] = field(default_factory=set)  # jobs whose continuous run is going on

    def set_jobs(self, specs: dict[str, dict[str, Any]]) -> set[str]:
        """Take the applied jobs; returns the continuous jobs whose definition changed or went:
        a run of one going on is to be stopped (`stop`), and started again as now defined."""
        new = {
            ref: (
                Continuous.model_validate(spec["continuous"]),
                json.dumps(spec, sort_keys=True, default=str),
            )
            for ref, spec in specs.items()
            if spec.get("continuous")
        }
        changed = {ref for ref, (_, text) in self.jobs.items() if ref not in new or new[ref][1] != text}
        self.jobs = new
        return changed

    def held(self, suspended: set[str], paused: bool) -> list[tuple[str, str]]:
        """(job, why) of each continuous run going on that must stop: its job suspended, or
        the daemon's scheduling paused (it would never end by itself)."""
        return [
            (ref, "scheduling is paused" if paused else "the job is suspended")
            for ref in sorted(self.running - self.stopping)
            if paused or ref in suspended
        ]

    def stop(self, ref: str) -> None:
        """The daemon cancels the job's run on purpose: the next starts without a backoff."""
        self.stopping.add(ref)
        self.failures.pop(ref, None)
        self.not_before.pop(ref, None)

    def due(self, now: float, busy: Iterable[str], held: set[str]) -> list[Request]:
        """A run for each continuous job not running (`busy`), not suspended or otherwise
        `held`, and past its backoff."""
        skip = set(busy) | held
        return [
            Request(ref, TRIGGER, options=services.RunOptions(continuous=seconds(settings.max_latency)))
            for ref, (settings, _) in sorted(self.jobs.items())
            if ref not in skip and self.not_before.get(ref, 0.0) <= now
        ]

    def ended(self, ref: str, status: str | None, ran: float, now: float) -> float | None:
        """A continuous run ended after `ran` seconds (`status` None: it never started); returns
        the seconds before the next may start, None when the job is no longer continuous."""
        stopped = ref in self.stopping
        self.stopping.discard(ref)
        self.running.discard(ref)
        if ref not in self.jobs:
            return None
        settings = self.jobs[ref][0]
        if stopped or status == "succeeded":  # succeeded: it reached read.max_messages
            self.failures.pop(ref, None)
            return 0.0
        # a run that went well for longer than the longest backoff starts the count again
        failures = 1 if ran >= seconds(settings.max_delay) else self.failures.get(ref, 0) + 1
        self.failures[ref] = failures
        delay = settings.delay(failures)
        self.not_before[ref] = now + delay
        return delay

    def seconds_to_due(self, now: float, busy: Iterable[str], held: set[str]) -> float | None:
        """Seconds until the next backoff ends, for the daemon's sleep."""
        skip = set(busy) | held
        waits = [t - now for ref, t in self.not_before.items() if ref in self.jobs and ref not in skip]
        return max(0.0, min(waits)) if waits else None

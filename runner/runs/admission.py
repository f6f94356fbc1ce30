"""Starting a burst of runs (a cron slot's hundreds) at the cost of a few: the applied jobs and
connections are read once for the lot rather than once a run (finding one job read them all),
each job's spec is parsed once per applied definition, the history folder's free space is
checked once, and the jobs' locks are taken in one transaction of the state store rather than
one commit each. What a run then does is `run`'s
(`runner.runs.lifecycle`), from its record on: a run admitted here starts as any other."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from runner.definitions.jobs import JobSpec
from runner.errors import RunnerError
from runner.history import files as history
from runner.jobs import types as job_types
from runner.runs.jobs import connections_of
from runner.state import locks
from runner.state.objects import AppliedObject
from runner.streams.cancel import CancelToken
from runner.workspace import Workspace


@dataclass(frozen=True)
class Admitted:
    """A run whose job's lock is held (under `run_id`): `run` starts it without reading the
    store or parsing the job again."""

    job: AppliedObject
    spec: JobSpec
    ends: dict[str, tuple[str, dict[str, Any]]]
    lock_id: str
    run_id: str


class Admission:
    """The applied objects as of the store's latest revision, and each job's parsed spec (a
    spec is frozen, so runs share it), kept between bursts while no apply changes them."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self._guard = threading.Lock()
        self._revision: int | None = -1
        self._objects: list[AppliedObject] = []
        self._jobs: dict[str, AppliedObject] = {}
        self._parsed: dict[str, tuple[str, JobSpec, dict[str, tuple[str, dict[str, Any]]]]] = {}

    def _applied(self) -> None:
        latest = self.ws.store().objects.latest_revision()
        revision = latest.id if latest else None
        if revision != self._revision:
            self._objects = self.ws.store().objects.all()
            self._jobs = {o.ref: o for o in self._objects if o.kind == "Job"}
            self._parsed = {}
            self._revision = revision

    def _prepared(self, ref: str) -> tuple[AppliedObject, JobSpec, dict[str, tuple[str, dict[str, Any]]]]:
        job = self._jobs[ref]
        cached = self._parsed.get(ref)
        if cached is None or cached[0] != job.digest:
            ends = connections_of(self.ws, job, applied=self._objects)
            types = {end: spec.get("type", "") for end, (_, spec) in ends.items()}
            cached = (job.digest, job_types.parse(job.document["spec"], types), ends)
            self._parsed[ref] = cached
        return job, cached[1], cached[2]

    def warm(self) -> None:
        """Read and parse the applied jobs now (after an apply), not at the next burst's minute."""
        with self._guard:
            self._applied()
            for ref in self._jobs:
                try:
                    self._prepared(ref)
                except Exception:  # noqa: BLE001 - its run says what is wrong with it
                    continue

    def admit(self, runs: Sequence[tuple[str, CancelToken]]) -> dict[str, Admitted]:
        """Take the locks of the jobs `runs` names (namespace/name, the run's token) in one
        transaction; the runs admitted, by job. A run left out (its job not applied now,
        invalid against its connections, its lock held, the store failing) is for `run` to
        start or refuse as it would any other."""
        try:  # for them all: a folder without room refuses each run, as it would any other
            history.check_space(self.ws.history)
        except RunnerError:
            return {}
        with self._guard:
            try:
                self._applied()
            except RunnerError:
                return {}
            prepared = {}
            for ref, _ in runs:
                if ref in self._jobs:
                    try:
                        prepared[ref] = self._prepared(ref)
                    except Exception:  # noqa: BLE001 - `run` says what is wrong with it, as for any run
                        continue
        run_ids = {ref: history.new_run_id() for ref in prepared}
        tokens = dict(runs)
        try:
            taken = self.ws.store().locks.acquire_free(
                [(locks.job_lock(ref), run_ids[ref], lost(tokens[ref])) for ref in prepared]
            )
        except RunnerError:
            return {}
        admitted = {}
        for ref, (job, spec, ends) in prepared.items():
            lock_id = taken.get(locks.job_lock(ref))
            if lock_id is not None:
                admitted[ref] = Admitted(job, spec, ends, lock_id, run_ids[ref])
        return admitted


def lost(token: CancelToken) -> Any:
    """What a run does when its lease is found taken over (the store unreachable for a whole
    lease): another process may run the job now, so it stops at its next batch boundary."""
    return lambda: token.cancel("the job's lease was lost", failed=True)

"""The cycles a slot's runs leave are collected once they have all ended and while no slot is
near (`Daemon._collect`), not by the collector at the next slot, as its runs start."""

from __future__ import annotations

import datetime as dt
import gc
import io

from runner.daemon import main
from runner.daemon.logs import DaemonLog
from runner.runs.schedule import Cron


def test_collected_between_slots_once_runs_ended_and_never_near_a_slot(daemon_project, monkeypatch):
    daemon = main.Daemon(daemon_project.ws, main.DaemonOptions(watch=False), DaemonLog(io.StringIO()))
    mark = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)  # the next slot: 12:01:00
    daemon.scheduler.set_jobs({"default/a": Cron("* * * * *")}, mark)
    collected: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *_: collected.append(1) or 0)
    now = {"t": mark + dt.timedelta(seconds=30)}
    monkeypatch.setattr(main, "_utcnow", lambda: now["t"])

    daemon._collect()
    assert collected == []  # no run ended since the last collection
    daemon._litter = True
    monkeypatch.setattr(daemon.executor, "idle", lambda: False)
    daemon._collect()
    assert collected == []  # runs still going: they hold what they made
    monkeypatch.setattr(daemon.executor, "idle", lambda: True)
    now["t"] = mark + dt.timedelta(seconds=58)
    daemon._collect()
    assert collected == []  # the slot is 2 s away: left to the collector, as before
    now["t"] = mark + dt.timedelta(seconds=30)
    daemon._collect()
    daemon._collect()
    assert collected == [1]  # once, until more runs end

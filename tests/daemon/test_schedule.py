"""The scheduler's cron slots and misfire policy, driven by a clock the test sets by hand."""

from __future__ import annotations

import datetime as dt

from runner.runs.schedule import Cron, Scheduler

T0 = dt.datetime(2026, 3, 28, 23, 59, 58, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_seconds_field_fires_on_each_slot_once():
    s = Scheduler()
    assert s.set_jobs({"ns/a": Cron("* * * * * */2")}, T0) == ["ns/a"]
    assert s.due(at(1.9)) == []  # a new job waits for its next slot, it does not fire at once
    fired = s.due(at(2.0))
    assert [(d.job, d.slot, d.missed) for d in fired] == [("ns/a", at(2), 0)]
    assert s.due(at(3.5)) == []  # the same slot never fires twice
    assert s.next_wakeup() == at(4)
    assert [d.slot for d in s.due(at(4.01))] == [at(4)]


def test_downtime_runs_once_not_once_per_missed_slot():
    s = Scheduler({"ns/a": at(0)})
    s.set_jobs({"ns/a": Cron("* * * * *")}, at(0))  # every minute; known mark: not new
    fired = s.due(at(10 * 60 + 30))  # down for ten and a half minutes
    assert len(fired) == 1
    assert fired[0].slot == dt.datetime(2026, 3, 29, 0, 10, tzinfo=dt.UTC)
    assert fired[0].missed == 10  # 00:00 … 00:09; the one of 00:10 runs
    assert s.due(at(10 * 60 + 45)) == []


def test_skipped_jobs_keep_their_mark_and_run_once_when_resumed():
    s = Scheduler()
    s.set_jobs({"ns/a": Cron("* * * * * *"), "ns/b": Cron("* * * * * *")}, T0)
    assert [d.job for d in s.due(at(5), skip={"ns/a"})] == ["ns/b"]
    assert s.marks["ns/a"] == T0
    assert s.next_wakeup(skip={"ns/a"}) == at(6)
    resumed = s.due(at(9))
    assert [(d.job, d.missed) for d in resumed] == [("ns/a", 8), ("ns/b", 3)]


def test_time_zone_and_daylight_saving():
    # 02:30 every day in Berlin: on 2026-03-29 clocks jump from 02:00 to 03:00
    cron = Cron("30 2 * * *", "Europe/Berlin")
    assert cron.next_after(dt.datetime(2026, 3, 27, 12, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 28, 1, 30, tzinfo=dt.UTC
    )  # 02:30 CET = 01:30 UTC
    after_switch = cron.next_after(dt.datetime(2026, 3, 29, 12, tzinfo=dt.UTC))
    assert after_switch == dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC)  # 02:30 CEST
    assert cron.latest_until(dt.datetime(2026, 3, 30, 0, 30, tzinfo=dt.UTC)) == after_switch


def test_removed_jobs_stop_firing():
    s = Scheduler()
    s.set_jobs({"ns/a": Cron("* * * * * *")}, T0)
    s.set_jobs({}, at(0.5))
    assert s.due(at(10)) == []
    assert s.next_wakeup() is None


def test_an_edited_schedule_starts_afresh_and_a_removed_one_forgets_its_mark():
    s = Scheduler()
    s.set_jobs({"ns/a": Cron("0 0 * * *")}, T0)
    assert [d.job for d in s.due(T0 + dt.timedelta(hours=1))] == ["ns/a"]  # midnight passed
    later = T0 + dt.timedelta(hours=10, minutes=30)
    assert s.set_jobs({"ns/a": Cron("0 * * * *")}, later) == ["ns/a"]  # now hourly: not nine missed slots
    assert s.due(later + dt.timedelta(minutes=1)) == []
    assert s.set_jobs({}, later) == [] and s.marks == {}
    assert s.set_jobs({"ns/a": Cron("0 * * * *")}, later + dt.timedelta(hours=5)) == ["ns/a"]
    assert s.due(later + dt.timedelta(hours=5, minutes=1)) == []


def test_a_mark_of_unknown_schedule_is_kept():
    mark = T0 - dt.timedelta(days=1)
    s = Scheduler({"ns/a": mark})
    assert s.set_jobs({"ns/a": Cron("0 * * * *")}, T0) == []
    assert s.marks["ns/a"] == mark and len(s.due(T0)) == 1


def test_a_fixed_time_runs_once_when_clocks_go_back():
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice
    s = Scheduler()
    start = dt.datetime(2026, 10, 24, 12, tzinfo=dt.UTC)
    s.set_jobs(
        {"ns/daily": Cron("30 2 * * *", "Europe/Berlin"), "ns/half": Cron("*/30 * * * *", "Europe/Berlin")},
        start,
    )
    fired: dict[str, int] = {"ns/daily": 0, "ns/half": 0}
    moment = start
    while moment < dt.datetime(2026, 10, 25, 6, tzinfo=dt.UTC):
        moment += dt.timedelta(minutes=5)
        for due in s.due(moment):
            fired[due.job] += 1
    assert fired["ns/daily"] == 1
    assert fired["ns/half"] == 18 * 2  # every half hour of the 18 real hours, the repeated one included


def test_cron_in_words():
    from runner.runs.schedule import describe_cron

    assert describe_cron("*/15 * * * *") == "every 15 minutes"
    assert describe_cron("0 3 * * *") == "at 03:00, every day"
    assert describe_cron("5 * * * * *") == "every second during minute 5 of every hour"
    assert describe_cron("5 3 * * * *") == "every second from 03:05:00 to 03:05:59, every day"
    assert describe_cron("* * * * * *") == "every second"
    assert describe_cron("0 9-17 * * 1-5") == "at minute 0, during hours 9-17, on Monday-Friday"
    assert describe_cron("0 12 1 1,7 *") == "at 12:00, on day 1 of the month, in January, July"
    assert describe_cron("30 * * * * 0") == "at minute 30 of every hour"
    assert describe_cron("* * * * * */10") == "every 10 seconds"

"""The bundled example of a backfill in windows with a time zone (`jobs.d/orders-backfill.yaml`)
runs on the demo's SQLite databases: a month at a time from July, Berlin time written as UTC."""

from __future__ import annotations

import datetime as dt
import sqlite3
from zoneinfo import ZoneInfo

from runner import services


def test_the_demo_backfill_reads_month_by_month_in_utc(demo_project):
    services.apply(demo_project.ws)
    record = services.run(demo_project.ws, "orders-backfill")
    assert record["status"] == "succeeded", record["error"]
    task = record["tasks"][0]
    months = [(w["from"][:10], w["to"][:10]) for w in task["windows"]]
    assert months == [
        ("2026-07-01", "2026-08-01"),
        ("2026-08-01", "2026-09-01"),
        ("2026-09-01", "2026-10-01"),
        ("2026-10-01", "2026-11-01"),
        ("2026-11-01", "2026-12-01"),
    ]
    src = sqlite3.connect(demo_project.root / "demo" / "data" / "shop.db")
    dst = sqlite3.connect(demo_project.root / "demo" / "data" / "warehouse.db")
    shop = dict(src.execute("SELECT id, updated_at FROM orders WHERE updated_at >= '2026-07-01'").fetchall())
    copied = dict(dst.execute("SELECT id, updated_at FROM orders_utc").fetchall())
    assert sorted(copied) == sorted(shop) and sum(w["rows"] for w in task["windows"]) < len(shop)
    berlin = ZoneInfo("Europe/Berlin")
    for key, local in shop.items():
        instant = dt.datetime.fromisoformat(local).replace(tzinfo=berlin).astimezone(dt.UTC)
        assert dt.datetime.fromisoformat(copied[key]) == instant
    assert task["pointer_after"] == {"type": "text", "value": max(shop.values())}  # Berlin time
    (listed,) = services.tasks(demo_project.ws, "orders-backfill")  # `runner tasks`, the API's tasks
    assert (listed["start"], listed["window"], listed["timezone"]) == (
        "2026-07-01",
        "1 month",
        "Europe/Berlin",
    )
    again = services.run(demo_project.ws, "orders-backfill")["tasks"][0]
    assert (again["inserted"], again["updated"], again["windows"]) == (0, 0, [])

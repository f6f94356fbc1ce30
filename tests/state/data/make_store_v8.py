"""Write `store-v8.sqlite`: a state store as the release before the state package was split
(commit 997a9a6, schema version 8) left it, for `tests/state/test_store_compat.py`.

It calls that release's API on purpose (`StateStore.acquire`, `task_state`, …): the point
of the fixture is that the file was written by the old code, so the new code is tested
against what is on users' disks, not against what it writes itself. To make it again, check
out 997a9a6 and run `python tests/state/data/make_store_v8.py tests/state/data/store-v8.sqlite`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

CONNECTIONS = """\
apiVersion: runner/v1
kind: Connection
metadata: {name: src}
spec: {type: sqlite, url: "sqlite:///src.db"}
---
apiVersion: runner/v1
kind: Connection
metadata: {name: dst}
spec: {type: sqlite, url: "sqlite:///dst.db"}
"""
JOB = """\
apiVersion: runner/v1
kind: Job
metadata: {name: copy}
spec:
  source: src
  target: dst
  schedule: {cron: "0 3 * * *"}
  tasks:
    - name: events
      read: {table: events}
      write: {table: events, keys: [id]}
      changes: {strategy: watermark, column: id}
    - {name: items, read: {table: items}, write: {table: items, keys: [id]}, changes: {strategy: hash}}
"""
KEY_HASH = "5" * 64  # sha256 hex of a key nobody needs: the test reads the hash back


def main(out: Path) -> None:
    from runner import service

    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "connections.d").mkdir()
        (root / "jobs.d").mkdir()
        (root / "connections.d" / "c.yaml").write_text(CONNECTIONS)
        (root / "jobs.d" / "copy.yaml").write_text(JOB)
        ws = service.Workspace(root, state_url=f"sqlite:///{out.resolve()}")
        try:
            assert service.apply(ws).revision == 1
            store = ws.store()
            events = store.task_state("default", "copy", "events")
            store.set_pointer(events.id, "id", {"type": "integer", "value": "42"}, "r-20260101T000000-1")
            items = store.task_state("default", "copy", "items")
            store.write_digests(items.id, [("0a" * 16, "0b" * 16, "[1]"), ("0c" * 16, "0d" * 16, "[2]")], [])
            store.set_digests_pending(items.id, True)
            store.add_api_key("ci", KEY_HASH, "operate", "maker@host")
            store.set_schedule_mark("default", "copy", "2026-01-01T03:00:00+00:00", "0 3 * * *|UTC")
            store.set_suspended("default", "copy", True, "maker@host")
            store.set_setting("paused", True, "maker@host")
            store.index_runs(
                [
                    {
                        "run_id": "r-20260101T000000-1",
                        "namespace": "default",
                        "job": "copy",
                        "status": "succeeded",
                        "started_at": "2026-01-01T00:00:00+00:00",
                        "rows_written": 3,
                        "tasks": [{"name": "events"}, {"name": "items"}],
                    },
                    {
                        "run_id": "r-20260102T000000-2",
                        "namespace": "default",
                        "job": "copy",
                        "status": "failed",
                        "started_at": "2026-01-02T00:00:00+00:00",
                        "rows_written": 0,
                        "tasks": [{"name": "items"}],
                    },
                ]
            )
            store.mark_runs_indexed("default", "copy")
            lock = service.job_lock("default/copy")
            store.release(lock, store.acquire(lock, 0))
            assert store.locks() == []  # lock-free, as a store between runs is
        finally:
            ws.close()
    import sqlite3

    db = sqlite3.connect(out)
    db.execute("VACUUM")  # the smallest file: it is committed
    db.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

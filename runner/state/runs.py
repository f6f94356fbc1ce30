"""The index of the history files (the files stay the record): which runs a job has, newest
first, with what the listings filter on (status, rows written, the tasks each ran), so a
listing reads only the files it shows. A job's older files are indexed on first use."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from runner.state import schema
from runner.state.database import Concern


class RunsReader(Concern):
    """What the history listings, `runner tasks` and pruning read."""

    def _bytewise(self, column: Any) -> Any:
        """Run ids sort by their text, byte by byte (their start time), not by a locale."""
        return column.collate("C") if self.db.engine.dialect.name == "postgresql" else column

    def indexed(self, namespace: str, job: str) -> bool:
        """Whether every history file of the job is in the index (see `Runs.mark_indexed`)."""
        table = schema.runs_indexed
        where = (table.c.namespace == namespace) & (table.c.job == job)
        with self.db.read() as conn:
            return conn.execute(sa.select(table.c.job).where(where)).first() is not None

    def statuses(self, run_ids: list[str]) -> dict[str, str]:
        """Run id -> its indexed status (queued, running, succeeded, …), for the ids indexed."""
        if not run_ids:
            return {}
        r = schema.runs
        with self.db.read() as conn:
            rows = conn.execute(sa.select(r.c.run_id, r.c.status).where(r.c.run_id.in_(run_ids)))
            return {row.run_id: row.status for row in rows}

    def ids(
        self,
        namespace: str,
        job: str,
        limit: int | None = None,
        changed_only: bool = False,
        task: str | None = None,
        before: str | None = None,
    ) -> list[str]:
        """The job's run ids, newest first: all, those that changed something (or did not
        succeed), or those that ran `task`; only ids below `before` when given."""
        r, t = schema.runs, schema.run_tasks
        run_id = self._bytewise(r.c.run_id)
        query = sa.select(r.c.run_id).where((r.c.namespace == namespace) & (r.c.job == job))
        if changed_only:
            query = query.where((r.c.status != "succeeded") | (r.c.rows_written > 0))
        if task is not None:
            ran = sa.select(t.c.run_id).where(
                (t.c.namespace == namespace) & (t.c.job == job) & (t.c.task == task)
            )
            query = query.where(r.c.run_id.in_(ran))
        if before is not None:
            query = query.where(run_id < before)
        query = query.order_by(run_id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.db.read() as conn:
            return [row[0] for row in conn.execute(query)]

    def last_by_task(self, namespace: str, job: str) -> dict[str, str]:
        """Task -> the id of the newest run that ran it."""
        t = schema.run_tasks
        query = (
            sa.select(t.c.task, sa.func.max(self._bytewise(t.c.run_id)))
            .where((t.c.namespace == namespace) & (t.c.job == job))
            .group_by(t.c.task)
        )
        with self.db.read() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    def all(self, namespace: str, job: str) -> list[tuple[str, str, str | None]]:
        """(run_id, status, started_at) of every indexed run of the job, newest first."""
        r = schema.runs
        query = (
            sa.select(r.c.run_id, r.c.status, r.c.started_at)
            .where((r.c.namespace == namespace) & (r.c.job == job))
            .order_by(self._bytewise(r.c.run_id).desc())
        )
        with self.db.read() as conn:
            return [(row[0], row[1], row[2]) for row in conn.execute(query)]


class Runs(RunsReader):
    def add(self, records: list[dict[str, Any]]) -> None:
        """Record (or update) runs in the index from their history records, in one transaction
        (a job's older files are indexed 500 at a time)."""
        if not records:
            return
        r, t = schema.runs, schema.run_tasks
        rows = [
            {
                "run_id": record["run_id"],
                "namespace": record["namespace"],
                "job": record["job"],
                "status": record.get("status") or "unknown",
                "started_at": record.get("started_at"),
                "rows_written": int(record.get("rows_written") or 0),
            }
            for record in records
        ]
        ran = [
            {"run_id": record["run_id"], "task": name, "namespace": record["namespace"], "job": record["job"]}
            for record in records
            for name in sorted(
                {
                    str(task["name"])
                    for task in record.get("tasks") or []
                    if task.get("name") and task.get("status") != "inactive"  # listed, but not run
                }
            )
        ]
        ids = [row["run_id"] for row in rows]
        with self.db.write() as conn:
            conn.execute(t.delete().where(t.c.run_id.in_(ids)))
            conn.execute(r.delete().where(r.c.run_id.in_(ids)))
            conn.execute(r.insert(), rows)
            if ran:
                conn.execute(t.insert(), ran)

    def mark_indexed(self, namespace: str, job: str) -> None:
        with self.db.write() as conn:
            table = schema.runs_indexed
            conn.execute(table.delete().where((table.c.namespace == namespace) & (table.c.job == job)))
            conn.execute(table.insert().values(namespace=namespace, job=job))

    def forget(self, run_ids: list[str]) -> None:
        with self.db.write() as conn:
            for i in range(0, len(run_ids), 500):
                chunk = run_ids[i : i + 500]
                conn.execute(schema.run_tasks.delete().where(schema.run_tasks.c.run_id.in_(chunk)))
                conn.execute(schema.runs.delete().where(schema.runs.c.run_id.in_(chunk)))

"""Read and write the state store.

`StateStore` opens a SQLAlchemy engine on the store's URL, migrates it on first use, and offers
short transactions: read the applied objects, apply a list of changes with a new revision in
one transaction, and take or release named locks (the apply lock, a job's run lock).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.errors import (
    NotFound,
    StaleState,
    StateError,
    StoreMissing,
)
from runner.state import migrations, schema, switches, tasks
from runner.state.database import Database, current_user, utcnow
from runner.state.locks import Locks
from runner.state.switches import Switches
from runner.state.tasks import Tasks

EMPTY_STATE = hashlib.sha256(b"[]").hexdigest()  # `state_digest` of a store without objects


@dataclass(frozen=True)
class AppliedObject:
    """A definition as the state store holds it."""

    kind: str
    namespace: str
    name: str
    document: dict[str, Any]
    digest: str
    file: str
    line: int
    revision_id: int

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Revision:
    id: int
    applied_at: str
    user: str
    git_commit: str | None
    git_dirty: bool | None
    digest: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class Write:
    """One change to an object row: `document` None deletes it."""

    kind: str
    namespace: str
    name: str
    document: dict[str, Any] | None
    digest: str = ""
    file: str = ""
    line: int = 0
    new_revision: bool = True  # False: only the file/line moved; keep its revision


class StateStore:
    """The applied state, behind a SQLAlchemy URL (`sqlite:///…` or `postgresql://…`).

    With `create` False, a store that does not exist yet (no SQLite file, no runner tables in
    the database) is an error rather than created empty: a store deleted by mistake must not
    come back empty and silently restart every job from scratch."""

    def __init__(self, url: str, create: bool = True):
        self.db = Database(url, create)
        self.db.open(lambda conn: _upgrade(conn, create))
        self.tasks = Tasks(self.db)
        self.locks = Locks(self.db)
        self.switches = Switches(self.db)

    def close(self) -> None:
        self.db.close()

    # --- reads -----------------------------------------------------------------------

    def objects(self, kind: str | None = None) -> list[AppliedObject]:
        query = sa.select(schema.objects).order_by(
            schema.objects.c.kind, schema.objects.c.namespace, schema.objects.c.name
        )
        if kind:
            query = query.where(schema.objects.c.kind == kind)
        with self.db.read() as conn:
            return [
                AppliedObject(
                    r.kind,
                    r.namespace,
                    r.name,
                    json.loads(r.document),
                    r.digest,
                    r.file,
                    r.line,
                    r.revision_id,
                )
                for r in conn.execute(query)
            ]

    def get(self, kind: str, namespace: str, name: str) -> AppliedObject:
        for obj in self.objects(kind):
            if (obj.namespace, obj.name) == (namespace, name):
                return obj
        raise NotFound(f"no {kind} {namespace}/{name} in the applied state")

    def state_digest(self) -> str:
        """A digest of every applied object with its file and line: what a saved plan expects."""
        with self.db.read() as conn:
            return self._state_digest(conn)

    @staticmethod
    def _state_digest(conn: sa.Connection) -> str:
        o = schema.objects
        rows = conn.execute(
            sa.select(o.c.kind, o.c.namespace, o.c.name, o.c.digest, o.c.file, o.c.line).order_by(
                o.c.kind, o.c.namespace, o.c.name
            )
        ).all()
        return hashlib.sha256(json.dumps([list(r) for r in rows]).encode()).hexdigest()

    def latest_revision(self) -> Revision | None:
        query = sa.select(schema.revisions).order_by(schema.revisions.c.id.desc()).limit(1)
        with self.db.read() as conn:
            row = conn.execute(query).first()
        return self._revision(row) if row else None

    def revision(self, revision_id: int) -> Revision:
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(schema.revisions).where(schema.revisions.c.id == revision_id)
            ).first()
        if row is None:
            raise NotFound(f"no revision {revision_id}")
        return self._revision(row)

    @staticmethod
    def _revision(row: Any) -> Revision:
        return Revision(
            row.id,
            row.applied_at,
            row.user,
            row.git_commit,
            row.git_dirty,
            row.digest,
            json.loads(row.summary),
        )

    # --- apply -----------------------------------------------------------------------

    def apply(
        self,
        writes: list[Write],
        *,
        base_revision: int | None,
        base_state: str,
        git_commit: str | None,
        git_dirty: bool | None,
        digest: str,
        summary: dict[str, Any],
    ) -> int | None:
        """Write every change in one transaction, under a new revision when any object's
        document changes. Refuses when the applied objects (documents, files and lines) are no
        longer those the plan was made against (`base_state`).

        Returns:
            The new revision's id, or None when only file locations moved.
        Raises:
            StaleState: another apply landed since the plan was made.
        """
        table = schema.objects
        with self.db.write() as conn:
            latest = conn.execute(sa.select(sa.func.max(schema.revisions.c.id))).scalar()
            if self._state_digest(conn) != base_state:
                raise StaleState(
                    f"the state changed since the plan was made (plan is based on "
                    f"revision {base_revision or 'none'}, the state is at revision "
                    f"{latest}); make a new plan"
                )
            revision_id = None
            if any(w.new_revision for w in writes):
                revision_id = conn.execute(
                    schema.revisions.insert().values(
                        applied_at=utcnow(),
                        user=current_user(),
                        git_commit=git_commit,
                        git_dirty=git_dirty,
                        digest=digest,
                        summary=json.dumps(summary, sort_keys=True),
                    )
                ).inserted_primary_key[0]
            for w in writes:
                key = (table.c.kind == w.kind) & (table.c.namespace == w.namespace) & (table.c.name == w.name)
                if w.document is None:
                    conn.execute(table.delete().where(key))
                    if w.kind == "Job":  # a job created again later starts from scratch
                        tasks.delete_job(conn, w.namespace, w.name)
                        switches.delete_job(conn, w.namespace, w.name)  # a suspension, a cron mark
                    continue
                values: dict[str, Any] = {"file": w.file, "line": w.line}
                if w.new_revision:
                    values.update(
                        document=json.dumps(w.document, sort_keys=True),
                        digest=w.digest,
                        revision_id=revision_id,
                    )
                updated = conn.execute(table.update().where(key).values(**values)).rowcount
                if not updated:
                    conn.execute(
                        table.insert().values(kind=w.kind, namespace=w.namespace, name=w.name, **values)
                    )
            return revision_id

    # --- API keys ----------------------------------------------------------------------

    def add_api_key(self, name: str, key_hash: str, scope: str, by: str) -> None:
        table = schema.api_keys
        try:
            with self.db.write() as conn:
                conn.execute(
                    table.insert().values(
                        name=name, key_hash=key_hash, scope=scope, created_at=utcnow(), created_by=by
                    )
                )
        except sa.exc.IntegrityError:
            raise StateError(f"a key named {name!r} exists; revoke it first or choose another name") from None

    def api_keys(self) -> list[dict[str, str]]:
        """Every key: name, key_hash, scope, created_at, created_by."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(schema.api_keys).order_by(schema.api_keys.c.name))
            return [dict(r._mapping) for r in rows]

    def revoke_api_key(self, name: str) -> None:
        with self.db.write() as conn:
            if not conn.execute(schema.api_keys.delete().where(schema.api_keys.c.name == name)).rowcount:
                raise NotFound(f"no API key named {name!r}")

    # --- the index of the history files ------------------------------------------------

    def index_runs(self, records: list[dict[str, Any]]) -> None:
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
            for name in sorted({str(task["name"]) for task in record.get("tasks") or [] if task.get("name")})
        ]
        ids = [row["run_id"] for row in rows]
        with self.db.write() as conn:
            conn.execute(t.delete().where(t.c.run_id.in_(ids)))
            conn.execute(r.delete().where(r.c.run_id.in_(ids)))
            conn.execute(r.insert(), rows)
            if ran:
                conn.execute(t.insert(), ran)

    def _bytewise(self, column: Any) -> Any:
        """Run ids sort by their text, byte by byte (their start time), not by a locale."""
        return column.collate("C") if self.db.engine.dialect.name == "postgresql" else column

    def runs_indexed(self, namespace: str, job: str) -> bool:
        """Whether every history file of the job is in the index (see `mark_runs_indexed`)."""
        table = schema.runs_indexed
        where = (table.c.namespace == namespace) & (table.c.job == job)
        with self.db.read() as conn:
            return conn.execute(sa.select(table.c.job).where(where)).first() is not None

    def mark_runs_indexed(self, namespace: str, job: str) -> None:
        with self.db.write() as conn:
            table = schema.runs_indexed
            conn.execute(table.delete().where((table.c.namespace == namespace) & (table.c.job == job)))
            conn.execute(table.insert().values(namespace=namespace, job=job))

    def run_ids(
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

    def last_task_runs(self, namespace: str, job: str) -> dict[str, str]:
        """Task -> the id of the newest run that ran it."""
        t = schema.run_tasks
        query = (
            sa.select(t.c.task, sa.func.max(self._bytewise(t.c.run_id)))
            .where((t.c.namespace == namespace) & (t.c.job == job))
            .group_by(t.c.task)
        )
        with self.db.read() as conn:
            return {row[0]: row[1] for row in conn.execute(query)}

    def run_index(self, namespace: str, job: str) -> list[tuple[str, str, str | None]]:
        """(run_id, status, started_at) of every indexed run of the job, newest first."""
        r = schema.runs
        query = (
            sa.select(r.c.run_id, r.c.status, r.c.started_at)
            .where((r.c.namespace == namespace) & (r.c.job == job))
            .order_by(self._bytewise(r.c.run_id).desc())
        )
        with self.db.read() as conn:
            return [(row[0], row[1], row[2]) for row in conn.execute(query)]

    def forget_runs(self, run_ids: list[str]) -> None:
        with self.db.write() as conn:
            for i in range(0, len(run_ids), 500):
                chunk = run_ids[i : i + 500]
                conn.execute(schema.run_tasks.delete().where(schema.run_tasks.c.run_id.in_(chunk)))
                conn.execute(schema.runs.delete().where(schema.runs.c.run_id.in_(chunk)))


def _upgrade(conn: sa.Connection, create: bool) -> None:
    """Bring the store to the latest schema version, in the transaction that opens it.

    Raises:
        StoreMissing: not `create`, and no store there.
        StateError: the store is newer than this runner.
    """
    if conn.dialect.name == "postgresql":  # serialise concurrent first starts
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7361626)")
    if not create and not sa.inspect(conn).has_table(schema.schema_version.name):
        raise StoreMissing(f"no state store in {conn.engine.url.render_as_string()}")
    schema.schema_version.create(conn, checkfirst=True)
    current = conn.execute(sa.select(sa.func.max(schema.schema_version.c.version))).scalar() or 0
    if current > migrations.LATEST:
        raise StateError(
            f"the state store is at schema version {current}, newer than "
            f"this runner knows ({migrations.LATEST}); upgrade runner"
        )
    for version in range(current + 1, migrations.LATEST + 1):
        migrations.MIGRATIONS[version - 1](conn)
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=utcnow()))

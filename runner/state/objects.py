"""The applied objects (connections, jobs) and the revisions that changed them: what `runner
apply` writes, in one transaction under a new revision, and what plans are made against."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from runner.errors import NotFound, StaleState
from runner.state import schema, switches, tasks
from runner.state.database import Concern, current_user, utcnow


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


class ObjectsReader(Concern):
    """What a plan is made against, and what `get`, `describe` and `status` show."""

    def all(self, kind: str | None = None) -> list[AppliedObject]:
        """The applied objects (of one kind), in order of kind, namespace and name."""
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
        for obj in self.all(kind):
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


class Objects(ObjectsReader):
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
                        document=json.dumps(
                            w.document
                        ),  # in the order written: a mapping of columns is ordered
                        digest=w.digest,
                        revision_id=revision_id,
                    )
                updated = conn.execute(table.update().where(key).values(**values)).rowcount
                if not updated:
                    conn.execute(
                        table.insert().values(kind=w.kind, namespace=w.namespace, name=w.name, **values)
                    )
            return revision_id

"""Version 1: the applied objects, the revisions that changed them (who, when, from which git
commit) and the named locks that serialise writers (the apply lock, a job's run lock)."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    v1 = sa.MetaData()
    sa.Table(
        "revisions",
        v1,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("applied_at", sa.String(40), nullable=False),
        sa.Column("user", sa.String(200), nullable=False),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
    )
    sa.Table(
        "objects",
        v1,
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("file", sa.String(1000), nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("revision_id", sa.Integer, nullable=False),
    )
    sa.Table(
        "locks",
        v1,
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("lock_id", sa.String(32), nullable=False, unique=True),
        sa.Column("holder", sa.String(300), nullable=False),
        sa.Column("acquired_at", sa.String(40), nullable=False),
    )
    v1.create_all(conn)

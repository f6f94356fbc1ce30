"""Version 5: keys of the HTTP API, a sha256 and a scope each (the key itself is shown once
and never stored)."""

from __future__ import annotations

import sqlalchemy as sa


def migrate(conn: sa.Connection) -> None:
    v5 = sa.MetaData()
    sa.Table(
        "api_keys",
        v5,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(300), nullable=False),
    )
    v5.create_all(conn)

"""Keys of the HTTP API: only a sha256 of each key is kept (the key is 256 random bits,
shown once by `runner keys create`), with its scope (read | operate) and who made it."""

from __future__ import annotations

import sqlalchemy as sa

from runner.errors import NotFound, StateError
from runner.state import schema
from runner.state.database import Concern, utcnow


class Keys(Concern):
    def add(self, name: str, key_hash: str, scope: str, by: str) -> None:
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

    def all(self) -> list[dict[str, str]]:
        """Every key: name, key_hash, scope, created_at, created_by."""
        with self.db.read() as conn:
            rows = conn.execute(sa.select(schema.api_keys).order_by(schema.api_keys.c.name))
            return [dict(r._mapping) for r in rows]

    def revoke(self, name: str) -> None:
        with self.db.write() as conn:
            if not conn.execute(schema.api_keys.delete().where(schema.api_keys.c.name == name)).rowcount:
                raise NotFound(f"no API key named {name!r}")

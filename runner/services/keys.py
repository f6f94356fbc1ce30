"""Keys of the HTTP API: only their hashes are stored; a key is shown once, when created."""

from __future__ import annotations

import hashlib
import re
from secrets import token_urlsafe

from runner.definitions.models import NAME_PATTERN
from runner.errors import (
    RunnerError,
)
from runner.state import locks
from runner.workspace import Workspace

KEY_SCOPES = ("read", "operate")


def key_hash(key: str) -> str:
    """Keys are 256 random bits: a plain sha256 is enough to keep them out of the store."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_create(ws: Workspace, name: str, scope: str) -> str:
    """A new API key, returned once; only its hash is stored."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise RunnerError(f"invalid key name {name!r}: lower-case letters, digits, '-', '_' and '.'")
    if scope not in KEY_SCOPES:
        raise RunnerError(f"unknown scope {scope!r}; use {' or '.join(KEY_SCOPES)}")
    key = f"rk_{token_urlsafe(32)}"
    ws.store().keys.add(name, key_hash(key), scope, locks.holder())
    return key


def keys_list(ws: Workspace) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "key_hash"} for row in ws.store().keys.all()]


def keys_revoke(ws: Workspace, name: str) -> None:
    ws.store().keys.revoke(name)

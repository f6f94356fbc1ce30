"""Shared-key authentication of the HTTP API.

A request carries `Authorization: SharedKey <key>` (DataZen's header) or `Bearer <key>`. Only
a sha256 of each key is in the state store (`runner keys create` shows the key once); the
hash of the given key is compared with every stored hash in constant time. Scope `read`
allows GET only; `operate` allows runs, cancels, suspends, pauses, pointers and changes to
jobs and tasks (written back to git).
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass

from runner import services

SCHEMES = ("sharedkey", "bearer")
READS = ("GET", "HEAD")  # what scope `read` may do; everything else acts
CACHE_SECONDS = 1.0  # a revoked key stops working within this long


@dataclass(frozen=True)
class Key:
    name: str
    scope: str


class AuthError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class KeyRing:
    """The stored key hashes, read from the state store at most once a second."""

    def __init__(self, ws: services.Workspace):
        self.ws = ws
        self._keys: list[tuple[str, str, str]] = []  # (hash, name, scope)
        self._read_at = -CACHE_SECONDS
        self._lock = threading.Lock()

    def _current(self) -> list[tuple[str, str, str]]:
        with self._lock:
            if time.monotonic() - self._read_at >= CACHE_SECONDS:
                self._keys = [(k["key_hash"], k["name"], k["scope"]) for k in self.ws.store().keys.all()]
                self._read_at = time.monotonic()
            return self._keys

    def check(self, header: str | None, method: str) -> Key:
        """The key a request's Authorization header holds, allowed for `method`.

        Raises:
            AuthError: 401 without a valid key, 403 for a read key on a write.
        """
        if not header:
            raise AuthError(
                401, "an API key is needed: send 'Authorization: SharedKey <key>' or 'Bearer <key>'"
            )
        scheme, _, key = header.strip().partition(" ")
        if scheme.lower() not in SCHEMES or not key.strip():
            raise AuthError(401, "the Authorization header must be 'SharedKey <key>' or 'Bearer <key>'")
        given = services.key_hash(key.strip()).encode()
        found: Key | None = None
        for stored, name, scope in self._current():  # every hash compared: no early exit
            if hmac.compare_digest(stored.encode(), given):
                found = Key(name, scope)
        if found is None:
            raise AuthError(401, "the API key is not valid (revoked, or never created)")
        if method not in READS and found.scope != "operate":
            raise AuthError(403, f"key {found.name!r} has scope 'read': it can only read (GET)")
        return found

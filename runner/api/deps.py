"""What every route shares: the app's `Context`, the key dependency, a resource's router.

The workspace and run starter were closures in one `create_app`; on `app.state` they let each
resource's routes live in its own module, at the cost of an attribute lookup per request."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import APIRouter, Query, Request, Security
from fastapi.security import APIKeyHeader

from runner import services
from runner.api.auth import Key, KeyRing
from runner.api.errors import ERRORS
from runner.api.listings import Listings

MAX_STREAMS = 32  # live tails open at once
MAX_VERIFIES = 4  # verifies at once: each scans a job's tables and holds a thread of the shared pool


class RunStarter(Protocol):
    """What starts runs: the daemon (`runner daemon --http`)."""

    def start_run(
        self, job: str, options: services.RunOptions, trigger: str, adhoc: dict[str, Any] | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Context:
    """One app's workspace, run starter and shared state, set on `app.state.context` by
    `create_app`. `runner` is None under `runner serve` (read-only)."""

    ws: services.Workspace
    runner: RunStarter | None
    allow_adhoc: bool
    keys: KeyRing
    listings: Listings
    streams: threading.BoundedSemaphore  # MAX_STREAMS live tails
    review_branch: str | None = None  # `runner daemon --review-branch`: no change is applied
    verifies: threading.BoundedSemaphore = field(  # MAX_VERIFIES verifies
        default_factory=lambda: threading.BoundedSemaphore(MAX_VERIFIES)
    )

    def branch(self, asked: str | None) -> str | None:
        """Where a job or task change is committed: the request's `?branch=`, else the review
        branch the daemon was started with, else (None) the checked-out branch, and applied."""
        return asked or self.review_branch

    def starter(self) -> RunStarter:
        assert self.runner is not None  # Guard refused every write under `runner serve`
        return self.runner


def context(request: Request) -> Context:
    """A plain call rather than a dependency: nothing for FastAPI to resolve per request."""
    return request.app.state.context


def resource(tag: str) -> APIRouter:
    """A resource's router: under `/api/v1`, tagged, with the errors every route may answer."""
    return APIRouter(prefix="/api/v1", tags=[tag], responses=ERRORS)


scheme = APIKeyHeader(name="Authorization", description="`SharedKey <key>` or `Bearer <key>`")


async def key_of(request: Request, _: str = Security(scheme)) -> Key:  # async: no thread per request
    return request.state.key  # checked by Guard; `scheme` documents it in the OpenAPI document


BRANCH = Query(
    None,
    description=(
        "Commit the change to this branch (made from HEAD when new) and do not apply it: it goes "
        "through review. Without it the change is committed to the checked-out branch and applied."
    ),
)  # the write-back routes' `?branch=`


def by(key: Key) -> str:
    return f"api key {key.name}"


def ref(name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if namespace else name

"""Listings reused for a moment: dashboards poll them, many at once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

FRESH_SECONDS = 0.5  # how long a listing is reused: dashboards poll it, many at once


class Listings:
    """Listings (jobs, status, a job's runs and tasks, connections) computed and encoded once
    and reused for `FRESH_SECONDS`, so fifty dashboards polling cost about what one does. A
    write through the API forgets them when it is done (`Guard`), so its client sees its own
    change. A hit is served on the event loop; a miss is computed on a thread, once: requests
    that miss meanwhile wait for that computation instead of starting their own."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], tuple[float, bytes]] = {}
        self._computing: dict[tuple[Any, ...], asyncio.Future[bytes]] = {}

    async def get(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Response:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < FRESH_SECONDS:
            return Response(hit[1], media_type="application/json")
        pending = self._computing.get(key)
        if pending is not None:
            return Response(await asyncio.shield(pending), media_type="application/json")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._computing[key] = future
        try:
            started = time.monotonic()
            value = await run_in_threadpool(compute)
            body = json.dumps(value, ensure_ascii=False, default=str).encode()
            if len(self._cache) > 1000:  # many distinct queries: start again rather than grow
                self._cache.clear()
            self._cache[key] = (started, body)
            future.set_result(body)
            return Response(body, media_type="application/json")
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            del self._computing[key]

    def forget(self) -> None:
        self._cache.clear()

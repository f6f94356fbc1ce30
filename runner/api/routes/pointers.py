"""A job's pointers (watermarks): read them, set one."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Security

from runner import services
from runner.api.auth import Key
from runner.api.deps import by, context, key_of, ref, resource
from runner.api.models import PointerRequest

router = resource("pointers")


@router.get("/jobs/{name}/pointers")
def get_pointers(
    request: Request, name: str, namespace: str | None = None, key: Key = Security(key_of)
) -> list[dict[str, Any]]:
    ws = context(request).ws
    return services.pointer_show(ws, ref(name, namespace))


@router.put("/jobs/{name}/pointers/{task}")
def set_pointer(
    request: Request,
    name: str,
    task: str,
    body: PointerRequest,
    namespace: str | None = None,
    key: Key = Security(key_of),
) -> dict[str, Any]:
    """Set a watermark task's pointer (409 while the job runs)."""
    ws = context(request).ws
    return services.pointer_set(ws, ref(name, namespace), task, body.value, by(key))

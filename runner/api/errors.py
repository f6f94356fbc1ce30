"""Every error of the API as JSON: `{"error": message}`, plus `field` (and `problems`, each
with its field) where a request's content is wrong. The `Error` model and `ERRORS` document
them in the OpenAPI document; `HANDLERS` turn exceptions into them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from runner.api.auth import AuthError
from runner.definitions.errors import describe, model_in
from runner.errors import (
    DefinitionsInvalid,
    HistoryUnwritable,
    InvalidValue,
    JobBusy,
    NameTaken,
    NotFound,
    NotRunning,
    RunnerError,
    StateUnavailable,
    Unreviewed,
    WriteBackRefused,
)

MAX_PROBLEMS = 20  # listed in a 422: a body with thousands of wrong keys gets a short answer


class Error(BaseModel):
    error: str
    field: str | None = None
    problems: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No valid key"},
    403: {
        "model": Error,
        "description": (
            "The key's scope does not allow it, the server is read-only, or a change through the "
            "API would apply a job's events or notifications without a review"
        ),
    },
    404: {"model": Error, "description": "No such job, run, connection or task"},
    409: {
        "model": Error,
        "description": (
            "The job is running (or, to cancel, is not); or a change cannot be written back to git now"
        ),
    },
    422: {"model": Error, "description": "The request is invalid: `field` says where"},
}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _capped_list(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first MAX_PROBLEMS problems, and a last one saying how many more there are."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], {"field": "", "message": f"and {more} more problem(s) not listed"}]


def refused(_: Request, exc: AuthError) -> JSONResponse:
    return _error(exc.status, exc.message)


def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    body_field = getattr(request.scope.get("route"), "body_field", None)
    model = model_in(body_field.field_info.annotation) if body_field is not None else None
    problems = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        problem = {"field": ".".join(str(p) for p in loc if p != "body"), "message": e["msg"]}
        if model is not None and loc[:1] == ("body",):  # worded as the CLI words a file's
            problem["message"], hint = describe(e, model, loc[1:])
            if hint:
                problem["hint"] = hint
        problems.append(problem)
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    return _error(422, _worded(first), field=first["field"], problems=_capped_list(problems))


def _worded(problem: dict[str, Any]) -> str:
    """A 422's `error`: its first problem, with the hint as the CLI prints one."""
    return f"{problem['message']} (hint: {problem['hint']})" if problem.get("hint") else problem["message"]


def http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return _error(exc.status_code, str(exc.detail))


def unexpected(_: Request, exc: Exception) -> JSONResponse:
    return _error(500, f"internal error ({type(exc).__name__}); the server's log has the details")


def runner_error(_: Request, exc: RunnerError) -> JSONResponse:
    if isinstance(exc, DefinitionsInvalid):
        problems = [
            {"field": p.location.field, "message": p.message, "hint": p.hint}
            | (
                {"file": p.location.file, "line": p.location.line, "col": p.location.col}
                if p.location.line
                else {}
            )
            for p in exc.problems
        ]
        return _error(422, _worded(problems[0]), field=problems[0]["field"], problems=_capped_list(problems))
    if isinstance(exc, Unreviewed):  # the key may not, whatever the value
        return _error(403, str(exc), field=exc.field)
    if isinstance(exc, InvalidValue):
        return _error(422, str(exc), field=exc.field)
    if isinstance(exc, StateUnavailable | HistoryUnwritable):  # the server's storage, not the request
        return _error(503, str(exc))
    conflict = isinstance(exc, JobBusy | NotRunning | NameTaken | WriteBackRefused)
    return _error(404 if isinstance(exc, NotFound) else 409 if conflict else 400, str(exc))


HANDLERS: dict[type[Exception], Callable[[Request, Any], JSONResponse]] = {
    AuthError: refused,
    RequestValidationError: invalid_request,
    HTTPException: http_error,
    Exception: unexpected,
    RunnerError: runner_error,
}

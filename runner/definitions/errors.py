"""Turn Pydantic validation errors into located problems: `file:line:col: field: message`.

Pydantic reports a `loc` tuple per error; the document knows the position of every key path,
so each error points at the line the user has to change. Unknown fields get "did you mean".
Inputs are never echoed: a value in a connection may be a secret.
"""

from __future__ import annotations

import difflib
import types
import typing

from pydantic import BaseModel, ValidationError

from runner.definitions.load import Document, PathKey
from runner.definitions.models import HINT
from runner.errors import Problem


def model_in(annotation: object) -> type[BaseModel] | None:
    """The model class inside `X | None`, `list[X]`, `Annotated[X, ...]`, if any (an API
    route's body too)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = model_in(arg)
            if found:
                return found
    return None


def _fields_at(model: type[BaseModel], path: PathKey) -> list[str]:
    """Names of the fields of the model found at `path` below `model` (for 'did you mean')."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = _by_yaml_name(current).get(part)
        current = model_in(field.annotation) if field else None
    return list(_by_yaml_name(current)) if current else []


def _by_yaml_name(model: type[BaseModel]) -> dict[str, typing.Any]:
    """A model's fields by the name YAML gives them (a field's alias where it has one)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def describe(error: dict, model: type[BaseModel], loc: PathKey) -> tuple[str, str]:
    """The message and hint of one Pydantic error at `loc` below `model`: unknown fields get
    "did you mean" (the API words a request body's errors as the CLI does a file's)."""
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        known = _fields_at(model, loc[:-1])
        close = difflib.get_close_matches(name, known, n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else (f"known fields: {', '.join(known)}" if known else "")
        )
        return f"unknown field {name!r}", hint
    if kind == "missing":
        return "required field is missing", ""
    if kind == "model_type":  # pydantic names its class: "… or instance of Schedule"
        known = _fields_at(model, loc)
        return "Input should be a mapping of fields", (f"its fields: {', '.join(known)}" if known else "")
    if msg == "Keys should be strings":  # YAML reads `null:`, `~:`, `yes:`, `1:` as no text
        return (
            "a key here is not text",
            "YAML reads a key written null, ~, true, false, yes, no or a number as that value: "
            'quote it, e.g. "null": "NULL"',
        )
    if kind == "value_error" and msg.startswith("Value error, "):
        message, _, hint = msg[len("Value error, ") :].partition(HINT)
        return message, hint
    if kind == "assertion_error" and msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, ") :], ""
    return msg, ""


def problems_from(
    exc: ValidationError, doc: Document, model: type[BaseModel], prefix: PathKey = ()
) -> list[Problem]:
    """One located problem per error of `exc`, raised by validating `model` at `prefix` of `doc`."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = _without_tags(doc.data, prefix, tuple(error["loc"]))
        message, hint = describe(error, model, loc)
        problems.append(Problem(doc.locate(prefix + loc), message, hint))
    return problems


def _without_tags(data: typing.Any, prefix: PathKey, loc: PathKey) -> PathKey:
    """`loc` without the tags Pydantic puts in it for a union told apart by `type` (a
    transform's `transforms[1].filter.regex` is `transforms[1].regex` in the file)."""
    node = data
    for part in prefix:
        node = _child(node, part)
    kept: list[str | int] = []
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue
        kept.append(part)
        node = _child(node, part)
    return tuple(kept)


def _child(node: typing.Any, part: str | int) -> typing.Any:
    if isinstance(node, dict):
        return node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None

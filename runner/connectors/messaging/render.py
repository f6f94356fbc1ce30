"""Changed rows and deleted keys into messages: payloads rendered from the task's templates in
the sandbox, a key and headers, and an id a consumer can deduplicate by."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner.connectors.base import WriteContext
from runner.connectors.messaging.encode import any_value, dumps, row_encoder
from runner.connectors.messaging.model import TEMPLATE_MARK, MessageWrite, Structure
from runner.definitions.templates import RENDER_SECONDS, RenderBudget, TemplateLimit, environment
from runner.errors import TerminalError
from runner.streams.types import Batch, Column

ONE_EXPRESSION = re.compile(r"^\{\{(?P<expression>(?:(?!\}\}).)*)\}\}$", re.DOTALL)


@dataclass
class Message:
    """One message as a broker's `Publisher` sends it. Its headers are `headers`, its own, and
    `shared`, those of every message of the task's run (one object for all of them: a publisher
    that encodes headers itself encodes these once)."""

    op: str  # upsert | delete
    id: str
    body: bytes
    headers: dict[str, str]
    destination: dict[str, str] = field(default_factory=dict)  # a broker's templates, rendered
    json: bool = True  # the body is JSON (else text)
    shared: dict[str, str] = field(default_factory=dict)

    def all_headers(self) -> dict[str, str]:
        """Every header of the message, in a dict of its own."""
        return {**self.headers, **self.shared}


Render = Callable[[dict[str, Any]], Any]


class Templates:
    """A task's templates compiled once in the sandbox, each a function of a message's context
    (which holds the environment's globals: each render shares it instead of copying them).

    A template of expressions alone is bounded by the sandbox's limits on every value it
    makes; one with statements (`{% for %}`, `{% if %}`) may loop, so its renders are bounded
    in time too (`statements`: the maker traces them with a `RenderBudget`)."""

    def __init__(self, what: str):
        self.what = what
        self.env: Any = None
        self.statements = False
        self.compiled = False  # some template is no constant: a message's renders need its context

    def environment(self) -> Any:
        if self.env is None:
            self.env = environment()
        return self.env

    def text(self, source: str, where: str) -> Render:
        """A text template (a constant when it has no template marks)."""
        if not TEMPLATE_MARK.search(source):
            return lambda context: source
        self.statements = self.statements or "{%" in source
        template = self._compile(lambda env: env.from_string(source), where)
        new_context = self._contexts(template)

        def render(context: dict[str, Any]) -> str:
            return "".join(template.root_render_func(new_context(context)))

        return render

    def structure(self, source: Structure, where: str) -> Render:
        """A JSON structure whose strings are templates; a string that is one `{{ expression }}`
        keeps its value's type."""
        if isinstance(source, dict):
            parts = {k: self.structure(v, f"{where}.{k}") for k, v in source.items()}
            return lambda context: {k: part(context) for k, part in parts.items()}
        if isinstance(source, list):
            items = [self.structure(v, f"{where}[{i}]") for i, v in enumerate(source)]
            return lambda context: [item(context) for item in items]
        if isinstance(source, str):
            match = ONE_EXPRESSION.match(source.strip())
            return self.text(source, where) if match is None else self._expression(match["expression"], where)
        return lambda context: source  # a number, true/false or null as written

    def _expression(self, source: str, where: str) -> Render:
        """An expression's value, of its own type. Jinja compiles it into a template that
        assigns it to `result` (`compile_expression`); that template is run here with the
        shared context, as `text` runs its own."""
        expression = self._compile(lambda env: env.compile_expression(source, undefined_to_none=False), where)
        template = expression._template
        new_context = self._contexts(template)

        def evaluate(context: dict[str, Any]) -> Any:
            ctx = new_context(context)
            for _ in template.root_render_func(ctx):
                pass
            return any_value(ctx.vars["result"])

        return evaluate

    def _contexts(self, template: Any) -> Callable[[dict[str, Any]], Any]:
        """What `template.new_context(context, shared=True)` makes, for a message's context,
        without what that costs on every call: Jinja collects the names of the template's
        globals (a walk over their ChainMap) into each context, for importing a template as a
        module, which a render never does. A third of a templated message's time went there."""
        env, context_class, name, blocks = self.env, self.env.context_class, template.name, template.blocks
        return lambda context: context_class(env, context, name, blocks)

    def _compile(self, make: Callable[[Any], Any], where: str) -> Any:
        from jinja2 import TemplateError

        self.compiled = True
        try:
            return make(self.environment())
        except TemplateError as exc:
            raise TerminalError(f"{self.what}.{where}: {exc}") from None


class MessageMaker:
    """A task's rows and deleted keys -> messages."""

    def __init__(self, write: MessageWrite, columns: list[Column], context: WriteContext):
        self.write, self.context = write, context
        names = [c.name for c in columns]
        missing = [k for k in write.keys if k not in names]
        if missing:
            known = ", ".join(names)
            raise TerminalError(f"write.keys: {', '.join(missing)} not among the columns ({known})")
        self.key_index = [names.index(k) for k in write.keys]
        self.encode_row = row_encoder(columns)
        self.encode_key = row_encoder([columns[i] for i in self.key_index])
        templates = Templates("write")
        self.payload = templates.structure(write.payload, "payload") if write.payload is not None else None
        self.delete_payload = (
            templates.structure(write.delete_payload, "delete_payload")
            if write.delete_payload is not None
            else None
        )
        constant = {n: t for n, t in write.headers.items() if not TEMPLATE_MARK.search(t)}
        self.headers = {
            n: templates.text(t, f"headers.{n}") for n, t in write.headers.items() if n not in constant
        }
        self.destination = {
            op: {n: templates.text(t, n) for n, t in write.templates(op).items()}
            for op in ("upsert", "delete")
        }
        self.traced = templates.statements  # only a template with statements may loop
        self.rendered = templates.compiled  # else every message's templates are constants: no context
        globals_ = templates.env.globals if templates.env is not None else {}
        self.base = {**globals_, "job": context.job, "task": context.task, "run_id": context.run_id}
        self.heads = {op: dumps([context.job, context.task, op]) for op in ("upsert", "delete")}
        self.shared = {
            "runner-job": context.job,
            "runner-task": context.task,
            "runner-run": context.run_id,
            **constant,
        }
        self.constant_destination = (
            {op: {n: d({}) for n, d in ds.items()} for op, ds in self.destination.items()}
            if not self.rendered
            else {}
        )

    def upserts(self, batch: Batch) -> list[Message]:
        return self._bounded(lambda: [self._message("upsert", self.encode_row(row), row) for row in batch])

    def deletes(self, keys: Batch) -> list[Message]:
        return self._bounded(lambda: [self._message("delete", self.encode_key(key), key) for key in keys])

    def _message(self, op: str, values: dict[str, Any], row: tuple) -> Message:
        encoded = dumps(values)
        ident = _digest(self.heads[op], encoded)
        if op == "upsert":
            template, source = self.payload, self.write.payload
        else:
            template, source = self.delete_payload, self.write.delete_payload
        is_json = not isinstance(source, str)  # unset (the row), or a JSON structure
        headers = {"runner-op": op, "runner-id": ident}
        if not self.rendered:  # the row as it is, to constant places: nothing to render
            return Message(op, ident, encoded, headers, self.constant_destination[op], is_json, self.shared)
        key = {k: values[k] for k in self.write.keys} if op == "upsert" else values
        context = {**self.base, "row": values, "key": key, "op": op, "id": ident}
        if self.traced:  # each message's renders have the whole budget
            self.budget.deadline = time.monotonic() + RENDER_SECONDS
        if template is None:
            body = encoded
        else:
            rendered = template(context)
            body = dumps(rendered) if is_json else str(rendered).encode()
        headers.update({n: h(context) for n, h in self.headers.items()})
        destination = {n: d(context) for n, d in self.destination[op].items()}
        return Message(op, ident, body, headers, destination, is_json, self.shared)

    def _bounded(self, make: Callable[[], list[Message]]) -> list[Message]:
        """Messages made, a template's failure named; templates with statements bounded in time
        per message (`RenderBudget`, which also stops them when the run is cancelled)."""
        from jinja2 import TemplateError

        tracer = sys.gettrace()
        if self.traced:
            self.budget = RenderBudget("write (templates)", self.context.cancel, RENDER_SECONDS)
            sys.settrace(self.budget.trace)
        try:
            return make()
        except (TemplateError, TemplateLimit, TypeError, ValueError) as exc:
            hint = " (a delete's `row` holds the key columns only)" if "undefined" in str(exc) else ""
            raise TerminalError(f"write: a template failed: {exc}{hint}") from None
        finally:
            if self.traced:
                sys.settrace(tracer)


def message_id(context: WriteContext, op: str, values: dict[str, Any]) -> str:
    """The same change of the same task always has the same id (a rerun after a failure sends
    the ids it sent before); a row changed back and forth between runs is told apart only by
    what changed with it (a watermark column does). The digest of the job, task and operation
    and of the row's JSON (a delete's: its key's), which is the default payload: made once."""
    return _digest(dumps([context.job, context.task, op]), dumps(values))


def _digest(head: bytes, values: bytes) -> str:
    return hashlib.sha256(head + values).hexdigest()[:32]

"""The Jinja sandbox scripts run in, and the syntax check `runner validate` applies to them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # jinja2 is imported when a script is checked or run, not at start-up
    from jinja2.sandbox import SandboxedEnvironment


def environment() -> SandboxedEnvironment:
    """A sandbox with undefined names as errors; `ident` is the target's quoting at render."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["ident"] = lambda name: name
    return env


def check_syntax(source: str) -> str | None:
    """A message when `source` is not a valid template."""
    from jinja2 import TemplateError

    try:
        environment().parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        return f"invalid template{f' (line {line} of the script)' if line else ''}: {exc.message or exc}"
    return None

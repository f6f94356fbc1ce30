"""The Jinja sandbox scripts run in, and the syntax check `runner validate` applies to them.

Jinja's immutable sandbox keeps a script from reaching Python internals or changing the
lists it is given (`columns.reverse()` would bind values to the wrong columns). On top of it,
every step that could make a huge value from a small script is bounded: `range` sizes,
repetition (`*`), powers (`**`), `%` and `format` widths, the integers filters and methods
take, and the size of what a call, a filter or an operator gives back. `lipsum` is gone. The
time a render may take is bounded where it runs, by a `RenderBudget`.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator, Sized
from decimal import Decimal
from types import FrameType
from typing import TYPE_CHECKING, Any

from runner.errors import Cancelled, TerminalError

if TYPE_CHECKING:  # jinja2 is imported when a script is checked or run, not at start-up
    from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_CHARS = 1_000_000  # the longest string or list a script may make, and its whole output
MAX_RANGE = 10_000  # items of one range()
MAX_WIDTH = 10_000  # a width or precision in a `%` or `format` specification
MAX_INT_BITS = 4_096  # the largest integer an operator may make
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


RENDER_SECONDS = 5.0  # one render of one script; a statement's text takes milliseconds


class TemplateLimit(Exception):
    """A script asked for more than a render may use; the message says which bound."""


def _sized(value: Any) -> Any:
    """`value`, when it is not a string, list or mapping longer than MAX_CHARS."""
    if isinstance(value, str | bytes | list | tuple | dict | set) and len(value) > MAX_CHARS:
        raise TemplateLimit(f"a value of {len(value):,} items or characters exceeds {MAX_CHARS:,}")
    return value


def _small_ints(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
            raise TemplateLimit(f"the argument {value:,} exceeds {MAX_CHARS:,}")
        _sized(value)


def _check_widths(numbers: list[str]) -> None:
    for number in numbers:
        if number == "*":
            raise TemplateLimit("a '*' width or precision is not allowed in a script; write the number")
        if number and int(number) > MAX_WIDTH:
            raise TemplateLimit(f"a width or precision of {int(number):,} exceeds {MAX_WIDTH:,}")


def percent_format(text: str, args: Any) -> str:
    """`text % args` with its widths and precisions bounded."""
    for match in _PERCENT_SPEC.finditer(text):
        _check_widths([match[1] or "", match[2] or ""])
    return _sized(text % args)


def _exact(left: Any, right: Any) -> tuple[Any, Any]:
    """A float beside a Decimal (a `decimal` column times `1.19`) as the Decimal its literal
    reads as, which Python would refuse to mix: money stays exact."""
    if isinstance(left, Decimal) and isinstance(right, float):
        return left, Decimal(repr(right))
    if isinstance(left, float) and isinstance(right, Decimal):
        return Decimal(repr(left)), right
    return left, right


def _binop(left: Any, operator: str, right: Any) -> Any:
    """The operators that can make a large value from small operands, bounded first; a float
    beside a Decimal is made a Decimal (`_exact`)."""
    left, right = _exact(left, right)
    if operator == "-":
        return left - right
    if operator == "/":
        return left / right
    if operator == "//":
        return left // right
    ints = all(isinstance(v, int) for v in (left, right))
    if operator == "**":
        if ints and abs(left) > 1 and right > 0 and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise TemplateLimit(f"{left} ** {right} exceeds {MAX_INT_BITS} bits")
        return left**right
    if operator == "*":
        if ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimit(f"a product exceeds {MAX_INT_BITS} bits")
        else:
            count, seq = (left, right) if isinstance(left, int) else (right, left)
            if isinstance(count, int) and isinstance(seq, Sized) and len(seq) * count > MAX_CHARS:
                raise TemplateLimit(f"repeating {len(seq):,} items {count:,} times exceeds {MAX_CHARS:,}")
        return _sized(left * right)
    if operator == "%" and isinstance(left, str):
        return percent_format(left, right)
    if operator == "%":
        return left % right
    return _sized(left + right)


def _bounded_filter(name: str, function: Any) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _small_ints(args[1:], kwargs)
        if name == "format" and args and isinstance(args[0], str):
            return percent_format(args[0], kwargs or args[1:])
        if name == "replace" and len(args) >= 3:
            _check_replace(args[0], args[1], args[2])
        return _sized(function(*args, **kwargs))

    bounded.__dict__.update(getattr(function, "__dict__", {}))  # Jinja's pass_context marks
    return bounded


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        grows = (len(new) - len(old)) * (text.count(old) if old else len(text) + 1)
        if len(text) + grows > MAX_CHARS:
            raise TemplateLimit(f"the replacement would exceed {MAX_CHARS:,} characters")


def environment() -> ImmutableSandboxedEnvironment:
    """A bounded, immutable sandbox with undefined names as errors; `ident` is the target's
    quoting at render."""
    from string import Formatter

    from jinja2 import StrictUndefined
    from jinja2.runtime import Context
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
    from jinja2.utils import Namespace

    class BoundedFormatter(SandboxedFormatter):
        def format_field(self, value: Any, format_spec: str) -> Any:
            _check_widths(re.findall(r"\d+", format_spec))
            return Formatter.format_field(self, value, format_spec)

    class BoundedNamespace(Namespace):
        def __setitem__(self, name: str, value: Any) -> None:
            super().__setitem__(name, _sized(value))

    class BoundedEnvironment(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**", "%", "+", "-", "/", "//"})

        def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
            return _binop(left, operator, right)

        def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _small_ints(args, kwargs)
            if getattr(__obj, "__name__", None) == "replace" and isinstance(
                getattr(__obj, "__self__", None), str
            ):
                _check_replace(__obj.__self__, *args[:2])
            return _sized(super().call(__context, __obj, *args, **kwargs))

        def wrap_str_format(self, value: Any) -> Any:
            if getattr(value, "__name__", None) not in ("format", "format_map") or not isinstance(
                getattr(value, "__self__", None), str
            ):
                return None
            text, vformat = value.__self__, BoundedFormatter(self).vformat
            if value.__name__ == "format_map":
                return lambda mapping: _sized(vformat(text, (), mapping))
            return lambda *args, **kwargs: _sized(vformat(text, args, kwargs))

    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False)
    del env.globals["lipsum"]
    env.globals["range"] = _range
    env.globals["namespace"] = BoundedNamespace
    env.filters = {name: _bounded_filter(name, f) for name, f in env.filters.items()}
    env.filters["ident"] = lambda name: name
    return env


class RenderBudget:
    """Stops a render that runs past its deadline or whose run is cancelled: a trace hook on
    this thread (`sys.settrace(budget.trace)` around the render) checks both as the template's
    code runs, so neither a loop nor a recursion can hold the worker (and its job's lock) past
    a cancel or a timeout. `cancel` is the run's `CancelToken`."""

    def __init__(self, what: str, cancel: Any, seconds: float):
        self.what, self.cancel, self.seconds = what, cancel, seconds
        self.deadline = time.monotonic() + seconds
        self.next_poll = 0.0

    def check(self) -> None:
        now = time.monotonic()
        if now > self.deadline:
            raise TerminalError(
                f"{self.what}: rendering took longer than {self.seconds:g} s; simplify the script"
            )
        if self.cancel is not None and now >= self.next_poll:
            self.next_poll = now + 0.05
            if self.cancel.cancelled:
                raise Cancelled(self.cancel.reason or "cancelled")

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        self.check()
        return self.trace if frame.f_code.co_filename == "<template>" else None

    def chunks(self, parts: Iterator[str]) -> Iterator[str]:
        """The rendered parts, with the whole output bounded to MAX_CHARS."""
        size = 0
        for part in parts:
            size += len(part)
            if size > MAX_CHARS:
                raise TerminalError(f"{self.what}: the rendered script exceeds {MAX_CHARS:,} characters")
            yield part


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(numbers):,} items exceeds {MAX_RANGE:,}")
    return numbers


def check_syntax(source: str) -> str | None:
    """A message when `source` is not a valid template."""
    from jinja2 import TemplateError

    try:
        environment().parse(source)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        return f"invalid template{f' (line {line} of the script)' if line else ''}: {exc.message or exc}"
    return None

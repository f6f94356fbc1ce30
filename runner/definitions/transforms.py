"""A task's transforms: steps between its reader and its writer that change each row on the
way (`tasks[].transforms`), as the user writes them.

Each step is one of a closed set, told apart by `type`: `compute` (a column from a sandboxed
Jinja expression over the row), `filter` (keep or drop rows by an expression or a regular
expression on a column), `rename`, `drop`, `cast` (to one of runner's canonical types) and
`mask` (a column's personal data hashed with a keyed digest, or redacted). What each does to a
row lives in `runner.transforms`, one module per type; here is only what can be checked
without a source: the fields, the syntax of expressions and patterns, and which columns each
step reads, adds, changes and removes, so that `runner validate` can follow the columns through
the steps and point at the field of the first one that names a column it cannot have.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from runner.definitions.models import StrictModel
from runner.definitions.secrets import ONE_REFERENCE, check_references

FieldPath = tuple[str | int, ...]
# runner's canonical column types (`runner.streams.types.TypeKind`, which this layer cannot import)
TYPE_KINDS = (
    "smallint", "integer", "bigint", "decimal", "real", "double", "boolean", "text", "varchar", "char",
    "date", "time", "duration", "timestamp", "timestamptz", "json", "jsonb", "binary", "uuid",
)  # fmt: skip
_TYPE = re.compile(r"^([a-z]+)(?:\((\d+)(?:,\s*(\d+))?\))?$")
TYPE_HELP = f"one of runner's types: {', '.join(TYPE_KINDS)}; e.g. decimal(12,2), varchar(40)"


def check_type(text: str) -> str:
    """A canonical type's name (`bigint`, `decimal(12,2)`, `varchar(40)`), or a ValueError
    listing them."""
    match = _TYPE.match(text.strip().lower())
    if match is None or match[1] not in TYPE_KINDS:
        raise ValueError(f"unknown type {text!r}; {TYPE_HELP}")
    if match[2] is not None and match[1] not in ("decimal", "varchar", "char"):
        raise ValueError(f"type {match[1]!r} takes no arguments")
    return text.strip().lower()


TypeName = Annotated[str, AfterValidator(check_type)]


def expression_problem(source: str) -> str | None:
    """Why `source` is not a valid Jinja expression (None when it is)."""
    from jinja2 import TemplateSyntaxError

    from runner.definitions.templates import environment

    try:
        environment().compile_expression(source)
    except TemplateSyntaxError as exc:
        return f"invalid expression: {exc.message or exc}"
    return None


def expression_names(source: str) -> set[str]:
    """The names an expression reads (each a column, or `row`), beside the sandbox's own."""
    from jinja2 import meta

    from runner.definitions.templates import environment

    env = environment()
    found = meta.find_undeclared_variables(env.parse("{{ (" + source + ") }}"))
    return set(found) - set(env.globals)  # `range`, `dict`, ...: the sandbox's own names


class TransformModel(StrictModel):
    """The base of every step: which columns it names, so the columns can be followed."""

    def reads(self) -> list[tuple[FieldPath, str]]:
        """The columns the step needs from the rows it is given (field path, column)."""
        return []

    def changes(self) -> list[tuple[FieldPath, str]]:
        """The columns whose values or names the step changes, or removes (field path, column)."""
        return []

    def after(self, columns: list[str]) -> list[str]:
        """The columns of the rows it gives, from those of the rows it is given."""
        return columns

    def summary(self) -> str:
        """The step in a few words, for `runner describe` and `plan`."""
        raise NotImplementedError


def _valid_expression(source: str | None) -> str | None:
    """A step's Jinja `expression`, refused at its field when it does not parse."""
    problem = expression_problem(source) if source is not None else None
    if problem:
        raise ValueError(problem)
    return source


class Compute(TransformModel):
    """A column computed from each row by a Jinja expression (sandboxed, as scripts are), or,
    from a SQL source, by a SQL expression the source computes in its read."""

    type: Literal["compute"] = Field(description="The step: compute.")
    column: str = Field(
        min_length=1, description="The column it sets: a new one (added last), or one of the row's, replaced."
    )
    expression: str | None = Field(
        None,
        min_length=1,
        description=(
            "A Jinja expression (no braces) over the row: each column by its name, and `row`, a mapping "
            "of every column (`row['first name']`), e.g. `first_name ~ ' ' ~ last_name` or "
            "`(amount * 1.19) | round(2)`. It runs in the same sandbox as scripts; a NULL is `none`."
        ),
    )
    sql: str | None = Field(
        None,
        min_length=1,
        description=(
            "Instead of `expression`, from a SQL source: a SQL expression over the source's columns, in "
            "its dialect (`upper(email)`, `amount * 1.19`), added to the read's SELECT, so the source "
            "computes it (for every strategy's read: rows, digests, rows by key). Such steps come first "
            "and see the source's columns."
        ),
    )
    to: TypeName | None = Field(
        None,
        description=(
            f"The computed column's type (the value is cast to it): {TYPE_HELP}. Unset: text for an "
            "`expression`, the type the source gives for `sql`."
        ),
    )

    @field_validator("expression")
    @classmethod
    def _syntax(cls, source: str | None) -> str | None:
        return _valid_expression(source)

    @model_validator(mode="after")
    def _one_way(self) -> Compute:
        if (self.expression is None) == (self.sql is None):
            raise ValueError("give exactly one of 'expression' (Jinja, over the row) or 'sql' (in the read)")
        return self

    def reads(self) -> list[tuple[FieldPath, str]]:
        if self.expression is None:  # SQL: the source checks its names when the read runs
            return []
        return [(("expression",), n) for n in sorted(expression_names(self.expression) - {"row"})]

    def changes(self) -> list[tuple[FieldPath, str]]:
        return [(("column",), self.column)]

    def after(self, columns: list[str]) -> list[str]:
        return columns if self.column in columns else [*columns, self.column]

    def summary(self) -> str:
        how = f"sql {self.sql}" if self.sql is not None else self.expression
        return f"compute {self.column} ({self.to or ('as read' if self.sql else 'text')}) = {how}"


class Filter(TransformModel):
    """Rows kept or dropped by a Jinja expression over the row, or by a regular expression
    searched in one column's text."""

    type: Literal["filter"] = Field(description="The step: filter.")
    expression: str | None = Field(
        None,
        min_length=1,
        description="A Jinja expression over the row (as `compute`'s); a row matches when it is true.",
    )
    column: str | None = Field(
        None,
        min_length=1,
        description="With `regex`: the column whose text is searched (NULL never matches).",
    )
    regex: str | None = Field(
        None, min_length=1, description="With `column`: a Python regular expression, searched in the value."
    )
    keep: bool = Field(
        True,
        description="true keeps the rows that match (drops the others); false drops the rows that match.",
    )

    @field_validator("expression")
    @classmethod
    def _syntax(cls, source: str | None) -> str | None:
        return _valid_expression(source)

    @field_validator("regex")
    @classmethod
    def _pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _one_way(self) -> Filter:
        if (self.expression is None) == (self.regex is None):
            raise ValueError("give either 'expression', or 'column' and 'regex'")
        if (self.column is None) != (self.regex is None):
            raise ValueError("'column' and 'regex' go together")
        return self

    def reads(self) -> list[tuple[FieldPath, str]]:
        if self.column is not None:
            return [(("column",), self.column)]
        assert self.expression is not None
        return [(("expression",), n) for n in sorted(expression_names(self.expression) - {"row"})]

    def summary(self) -> str:
        how = "keep" if self.keep else "drop"
        what = self.expression if self.expression is not None else f"{self.column} ~ /{self.regex}/"
        return f"filter: {how} rows where {what}"


class Rename(TransformModel):
    """Columns given new names (the rows' values and order stay)."""

    type: Literal["rename"] = Field(description="The step: rename.")
    columns: dict[str, str] = Field(
        min_length=1, description="`old name: new name`, for each column renamed."
    )

    @field_validator("columns")
    @classmethod
    def _names(cls, columns: dict[str, str]) -> dict[str, str]:
        if any(not new for new in columns.values()):
            raise ValueError("a new name is empty")
        if len(set(columns.values())) != len(columns):
            raise ValueError("two columns get the same new name")
        return columns

    def reads(self) -> list[tuple[FieldPath, str]]:
        return [(("columns", old), old) for old in self.columns]

    def changes(self) -> list[tuple[FieldPath, str]]:
        return self.reads()

    def after(self, columns: list[str]) -> list[str]:
        return [self.columns.get(c, c) for c in columns]

    def summary(self) -> str:
        return "rename " + ", ".join(f"{old} -> {new}" for old, new in self.columns.items())


class Drop(TransformModel):
    """Columns left out of what the target gets."""

    type: Literal["drop"] = Field(description="The step: drop.")
    columns: list[str] = Field(min_length=1, description="The columns dropped.")

    def reads(self) -> list[tuple[FieldPath, str]]:
        return [(("columns", i), name) for i, name in enumerate(self.columns)]

    def changes(self) -> list[tuple[FieldPath, str]]:
        return self.reads()

    def after(self, columns: list[str]) -> list[str]:
        return [c for c in columns if c not in self.columns]

    def summary(self) -> str:
        return "drop " + ", ".join(self.columns)


class Cast(TransformModel):
    """Columns converted to another of runner's canonical types; the target's column follows."""

    type: Literal["cast"] = Field(description="The step: cast.")
    columns: dict[str, TypeName] = Field(
        min_length=1, description=f"`column: type`, for each column cast; the type is {TYPE_HELP}."
    )

    def reads(self) -> list[tuple[FieldPath, str]]:
        return [(("columns", name), name) for name in self.columns]

    def changes(self) -> list[tuple[FieldPath, str]]:
        return self.reads()

    def summary(self) -> str:
        return "cast " + ", ".join(f"{name} to {to}" for name, to in self.columns.items())


class Mask(TransformModel):
    """A column of personal data hidden before anything is written: replaced by a keyed digest
    of its value (HMAC-SHA256 with a secret salt: equal values give equal digests, so joins and
    counts still work, but a digest cannot be looked up without the salt), or redacted."""

    type: Literal["mask"] = Field(description="The step: mask.")
    column: str = Field(min_length=1, description="The column masked.")
    method: Literal["hash", "redact"] = Field(
        "hash",
        description=(
            "hash: the value's HMAC-SHA256 under `salt`, as 64 hex digits (text); NULL stays NULL. "
            "redact: the value replaced by `replacement` (NULL when unset)."
        ),
    )
    salt: str | None = Field(
        None,
        description=(
            "With method hash: the digest's secret key, as a reference (`${env:NAME}` or `${file:path}`), "
            "never written in the definition, the state, logs or history."
        ),
    )
    replacement: str | None = Field(
        None, description="With method redact: the text every value becomes (the column is text then)."
    )

    @field_validator("salt")
    @classmethod
    def _reference(cls, salt: str | None) -> str | None:
        if salt is not None:
            if not ONE_REFERENCE.match(salt):
                raise ValueError("'salt' is a secret: give it as a reference, ${env:NAME} or ${file:path}")
            problems = check_references(salt)
            if problems:
                raise ValueError(problems[0])
        return salt

    @model_validator(mode="after")
    def _method(self) -> Mask:
        if self.method == "hash":
            if self.salt is None:
                raise ValueError(
                    "method hash needs 'salt', a secret reference such as ${env:MASK_SALT}: an unkeyed "
                    "digest of an email or a name is found again by hashing guesses"
                )
            if self.replacement is not None:
                raise ValueError("'replacement' goes with method redact")
        elif self.salt is not None:
            raise ValueError("'salt' goes with method hash")
        return self

    def reads(self) -> list[tuple[FieldPath, str]]:
        return [(("column",), self.column)]

    def changes(self) -> list[tuple[FieldPath, str]]:
        return self.reads()

    def summary(self) -> str:
        return f"mask {self.column} ({self.method})"


TransformSpec = Annotated[
    Compute | Filter | Rename | Drop | Cast | Mask,
    Field(discriminator="type"),
]
TRANSFORMS_HELP = (
    "Steps applied in order to every row between the reader and the writer: compute, filter, "
    "rename, drop, cast, mask (README: Transforms). The target gets the columns the last step gives; "
    "key columns and the watermark column pass through unchanged."
)


def column_problems(
    transforms: list[TransformModel],
    columns: list[str] | None,
    untouchable: list[tuple[str, str]],
) -> list[tuple[FieldPath, str]]:
    """Problems of the columns named by `transforms` (paths below `transforms`): each step's
    against the columns the steps before it leave, starting from the source's `columns` (None
    when only the source knows them: then only what earlier steps removed is checked).
    `untouchable` lists the columns that must reach the target as read, with why (the keys
    that identify a row, the watermark column)."""
    problems: list[tuple[FieldPath, str]] = []
    known = list(columns) if columns is not None else None
    removed: dict[str, str] = {}  # column -> which step renamed or dropped it
    fixed = dict(untouchable)
    for i, step in enumerate(transforms):
        for path, name in step.reads():
            if known is not None and name not in known:
                gone = f" ({removed[name]})" if name in removed else ""
                problems.append(
                    ((i, *path), f"column {name!r} is not among the columns here{gone}: {', '.join(known)}")
                )
            elif known is None and name in removed:
                problems.append(((i, *path), f"column {name!r} is gone here ({removed[name]})"))
        for path, name in step.changes():
            if name in fixed:
                problems.append(
                    ((i, *path), f"column {name!r} is {fixed[name]}: it must reach the target as read")
                )
        before = known if known is not None else [n for _, n in step.reads()]
        after = step.after(before)
        for name in set(before) - set(after):
            removed[name] = f"{step.type} at transforms[{i}]"  # type: ignore[attr-defined]
        for name in set(after) - set(before):  # a new name (a rename's, a computed column)
            removed.pop(name, None)
        if known is not None:
            known = after
    return problems

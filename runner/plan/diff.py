"""Compare desired definitions with the applied state: a pure function, no I/O.

A plan lists every object as create / update / delete / unchanged; an update names each
changed field with its old and new value. It records the revision it was made against so
that applying a saved plan can refuse when the state moved on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from runner.definitions.validate import Definition, digest

if TYPE_CHECKING:
    from runner.state.objects import AppliedObject

Action = Literal["create", "update", "delete", "unchanged"]
PLAN_FORMAT = "runner-plan/1"
# Connections are created before the jobs that use them, and deleted after.
_KIND_ORDER = {"Connection": 0, "Job": 1}


@dataclass(frozen=True)
class FieldChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    namespace: str
    name: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    file: str = ""
    line: int = 0
    fields: list[FieldChange] = field(default_factory=list)
    moved: bool = False  # unchanged document, but defined at another file or line

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """As plain data, sharing the documents rather than copying them (`dataclasses.asdict`
        deep-copied every job's spec: seconds for a plan of a thousand jobs)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["fields"] = [{"path": c.path, "old": c.old, "new": c.new} for c in self.fields]
        return out


@dataclass(frozen=True)
class Plan:
    base_revision: int | None
    base_state: str  # digest of the applied objects the plan was made against
    digest: str  # of every desired document: the revision's identity
    changes: list[Change]

    @property
    def has_changes(self) -> bool:
        return any(c.action != "unchanged" for c in self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> dict[str, Any]:
        return {a: self.count(a) for a in ("create", "update", "delete", "unchanged")} | {
            "changed": [f"{c.action} {c.kind} {c.ref}" for c in self.changes if c.action != "unchanged"]
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "base_revision": self.base_revision,
            "base_state": self.base_state,
            "digest": self.digest,
            "changes": [c.to_dict() for c in self.changes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not a runner plan (format {data.get('format')!r}, expected {PLAN_FORMAT!r})")
        changes = [
            Change(**{**c, "fields": [FieldChange(**f) for f in c["fields"]]}) for c in data["changes"]
        ]
        return cls(data["base_revision"], data["base_state"], data["digest"], changes)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": [1]}}` -> `{"a.b[0]": 1}`; empty containers are kept as leaves."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value:
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> list[FieldChange]:
    old, new = flatten(before), flatten(after)
    _missing = None
    return [
        FieldChange(path, old.get(path, _missing), new.get(path, _missing))
        for path in sorted(old.keys() | new.keys(), key=_path_order(old, new))
        if old.get(path, _missing) != new.get(path, _missing) or (path in old) != (path in new)
    ]


def _path_order(old: dict[str, Any], new: dict[str, Any]) -> Any:
    order = {p: i for i, p in enumerate([*new, *(p for p in old if p not in new)])}
    return lambda p: order[p]


def diff(
    desired: Iterable[Definition],
    applied: Iterable[AppliedObject],
    base_revision: int | None,
    base_state: str,
) -> Plan:
    """The plan that turns `applied` into `desired`."""
    wanted = {d.key: d for d in desired}
    documents = {key: d.document() for key, d in wanted.items()}  # once each: a model dump
    current = {(o.kind, o.namespace, o.name): o for o in applied}
    changes: list[Change] = []
    for key, d in wanted.items():
        doc = documents[key]
        obj = current.get(key)
        if obj is None:
            changes.append(
                Change("create", *key, after=doc, file=d.file, line=d.line, fields=field_changes({}, doc))
            )
        elif obj.document != doc:
            changes.append(
                Change(
                    "update",
                    *key,
                    before=obj.document,
                    after=doc,
                    file=d.file,
                    line=d.line,
                    fields=field_changes(obj.document, doc),
                )
            )
        else:
            changes.append(
                Change(
                    "unchanged",
                    *key,
                    before=obj.document,
                    after=doc,
                    file=d.file,
                    line=d.line,
                    moved=(obj.file, obj.line) != (d.file, d.line),
                )
            )
    for key, obj in current.items():
        if key not in wanted:
            changes.append(Change("delete", *key, before=obj.document, file=obj.file, line=obj.line))
    changes.sort(
        key=lambda c: (
            c.action == "delete",
            _KIND_ORDER[c.kind] * (-1 if c.action == "delete" else 1),
            c.kind,
            c.namespace,
            c.name,
        )
    )
    return Plan(base_revision, base_state, digest(sorted(documents.values(), key=_doc_key)), changes)


def _doc_key(doc: dict[str, Any]) -> tuple[str, str, str]:
    return (doc["kind"], doc["metadata"]["namespace"], doc["metadata"]["name"])

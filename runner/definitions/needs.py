"""What a task needs of its connections' kinds, checked where the task is defined.

The strategies and delete modes (`runner.changes`) say what a task needs (`Need`); the kinds
(`runner.connectors`) declare what they can (`Capabilities`). The definitions import neither:
the caller hands both in (`CapabilityCheck`), as it hands in the connection models, and
`runner validate` refuses a task whose source or target kind cannot do what it asks, at the
field that asks for it, instead of a run that fails half-way.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # a task's models say what they need (`WriteModel.needs`)
    from runner.definitions.tasks import Task

End = Literal["source", "target"]


@dataclass(frozen=True)
class Need:
    """One thing a task asks of the kind at one end."""

    end: End
    capability: str  # a field of `runner.connectors.base.Capabilities`
    path: tuple[str | int, ...]  # the task's field that asks for it, e.g. ("changes", "strategy")
    why: str  # what the task would do with it, in the user's words


Needs = Callable[["Task"], Iterable[Need]]  # what a task needs of its kinds (`changes.strategies.task_needs`)


def refusals(
    unmet: Iterable[Need], connections: Mapping[End, str], kinds: Mapping[End, str]
) -> list[tuple[End, tuple[str | int, ...], str]]:
    """One message per field whose needs a kind lacks: (end, field path below the task, message),
    e.g. `strategy 'hash' compares digests computed in the source; the source connection 'm'
    is of type 'memory', which cannot (digests, key_lookup)`."""
    fields: dict[tuple[End, tuple[str | int, ...]], list[Need]] = {}
    for need in unmet:
        fields.setdefault((need.end, need.path), []).append(need)
    found = []
    for (end, path), needs in fields.items():
        whys = "; ".join(dict.fromkeys(n.why for n in needs))
        missing = ", ".join(n.capability for n in needs)
        message = (
            f"{whys}; the {end} connection {connections[end]!r} is of type {kinds[end]!r}, "
            f"which cannot ({missing})"
        )
        found.append((end, path, message))
    return found


@dataclass(frozen=True)
class CapabilityCheck:
    """What `validate_documents` checks tasks with: each connection type's declared
    capabilities (by name) and the needs of a task."""

    capabilities: Mapping[str, Collection[str]]
    needs: Callable[[Task], Iterable[Need]]

    def unmet(self, task: Task, kinds: Mapping[End, str]) -> list[Need]:
        """The needs of `task` that the kinds of its ends (where known) lack."""
        return self.lacking(self.needs(task), kinds)

    def lacking(self, needs: Iterable[Need], kinds: Mapping[End, str]) -> list[Need]:
        """The `needs` that the kinds of their ends (where known) lack."""
        return [
            need
            for need in needs
            if need.end in kinds and need.capability not in self.capabilities.get(kinds[need.end], ())
        ]

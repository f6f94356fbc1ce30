"""Edit a definition file in place, keeping what people wrote: comments, key order, quotes,
flow style and indentation. A change through the API (or `runner jobs|task`) rewrites only the
document it is about; the other documents of the file stay byte for byte.

ruamel.yaml round-trips a document with its comments; the indentation it writes is guessed
from the document itself. ruamel keeps a comment above a list item with the item *before*
it, so moving or deleting tasks that way would move comments onto the wrong task: tasks in a
block list are moved, added and deleted as lines instead, each with the comment lines above it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

SEPARATOR = re.compile(r"^---(?=[ \t\r]|$)", re.M)
_BLOCK_KEY = re.compile(r"^( *)(- +)?[^#\s-][^:#]*:[ \t]*(#.*)?$")  # `key:` opening a block
DEFAULT_LAYOUT = (2, 2)  # mapping indent, offset of a list's dash: the README's style


class EditError(ValueError):
    """An edit that cannot be made to the document as it stands (no such task, say)."""


@dataclass
class Chunk:
    """One document's text: its `---` line ("" before the first marker) and what follows."""

    head: str
    body: str


def split(text: str) -> list[Chunk]:
    chunks, pos, head = [], 0, ""
    for marker in SEPARATOR.finditer(text):
        chunks.append(Chunk(head, text[pos : marker.start()]))
        end = text.find("\n", marker.start())
        end = len(text) if end < 0 else end + 1
        head, pos = text[marker.start() : end], end
    chunks.append(Chunk(head, text[pos:]))
    return chunks


def layout(text: str) -> tuple[int, int]:
    """(mapping indent, dash offset) as the text uses them, from its first nested mapping and
    its first block list; the README's style where it has none."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    mapping = offset = None
    for line, following in zip(lines, lines[1:], strict=False):
        opened = _BLOCK_KEY.match(line)
        if not opened:
            continue
        base = len(opened.group(1)) + len(opened.group(2) or "")
        indent = len(following) - len(following.lstrip(" "))
        if indent < base or (indent == base and not following.lstrip(" ").startswith("- ")):
            continue
        if following.lstrip(" ").startswith("- "):
            offset = indent - base if offset is None else offset
        elif mapping is None and indent > base:
            mapping = indent - base
        if mapping is not None and offset is not None:
            break
    return (mapping or DEFAULT_LAYOUT[0], DEFAULT_LAYOUT[1] if offset is None else offset)


def _yaml(shape: tuple[int, int]) -> YAML:
    from ruamel.yaml import YAML  # ~40 ms of import: only a change to a definition needs it

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # a long query stays on its line
    mapping, offset = shape
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    return yaml


def _dump(yaml: YAML, data: Any) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def plain(value: Any) -> Any:
    """ruamel's round-trip values as plain JSON-able ones (to compare them with a request's)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _node(value: Any) -> Any:
    """A request's value as ruamel values, in block style."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _node(v)
        return out
    if isinstance(value, list):
        return CommentedSeq([_node(v) for v in value])
    return value


def merge(old: Any, new: Any) -> Any:
    """`new` in place of `old`, keeping `old`'s nodes (their comments and style) wherever the
    value did not change: keys in order, tasks matched by name."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if plain(old) == plain(new):
        return old
    if isinstance(old, CommentedMap) and isinstance(new, dict):
        for key in [k for k in old if k not in new]:
            drop_key(old, key)
        for position, (key, value) in enumerate(new.items()):
            if key in old:
                old[key] = merge(old[key], value)
            else:
                old.insert(min(position, len(old)), key, _node(value))
        return old
    if isinstance(old, CommentedSeq) and isinstance(new, list):
        named = all(isinstance(v, dict) and "name" in v for v in (*old, *new))
        if named:
            by_name = {str(item["name"]): item for item in old}
            items = [
                merge(by_name[str(v["name"])], v) if str(v["name"]) in by_name else _node(v) for v in new
            ]
        elif len(old) == len(new):
            items = [merge(o, n) for o, n in zip(old, new, strict=True)]
        else:
            items = [_node(v) for v in new]
        if len(items) == len(old) and all(a is b for a, b in zip(items, old, strict=True)):
            return old
        old[:] = items
        return old
    return _node(new)


def drop_key(mapping: CommentedMap, key: Any) -> None:
    """Delete `key`, keeping the comment lines below its value (ruamel keeps them on the key)."""
    keys = list(mapping)
    token = mapping.ca.items.get(key, [None] * 4)[2] if hasattr(mapping, "ca") else None
    del mapping[key]
    if token is None or "\n" not in token.value.rstrip("\n"):
        return
    below = token.value[token.value.index("\n") + 1 :]  # what follows the key's own line
    at = keys.index(key)
    if at == 0 or not below.strip():
        return
    previous = keys[at - 1]
    entry = mapping.ca.items.setdefault(previous, [None, None, None, None])
    if entry[2] is None:
        from ruamel.yaml.error import CommentMark
        from ruamel.yaml.tokens import CommentToken

        entry[2] = CommentToken("\n" + below, CommentMark(0), None)
    else:
        entry[2].value = entry[2].value.rstrip("\n") + "\n" + below


class DefinitionFile:
    """A definition file's documents, each editable on its own."""

    def __init__(self, text: str | None):
        self.chunks = split(text) if text else []

    def text(self) -> str | None:
        """The file's new text; None when no document is left in it (the file goes)."""
        text = "".join(c.head + c.body for c in self.chunks)
        if not any(self.data(i) is not None for i in range(len(self.chunks))):
            return None
        return text

    def _source(self, i: int) -> tuple[str, str]:
        """(the part kept verbatim, the part parsed): a `---` line with content on it is parsed."""
        chunk = self.chunks[i]
        rest = chunk.head[3:].strip()
        if rest and not rest.startswith("#"):
            return "", chunk.head + chunk.body
        return chunk.head, chunk.body

    def data(self, i: int) -> Any:
        """Document `i` as plain values (None when it does not parse)."""
        import yaml

        try:
            return yaml.load(self._source(i)[1], Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError:
            return None

    def find(self, kind: str, name: str, namespace_of: Callable[[Any], str], namespace: str) -> int | None:
        """The index of the document defining `kind` `namespace/name`."""
        for i in range(len(self.chunks)):
            data = self.data(i)
            if not isinstance(data, dict) or data.get("kind") != kind:
                continue
            meta = data.get("metadata") or {}
            if isinstance(meta, dict) and str(meta.get("name")) == name and namespace_of(meta) == namespace:
                return i
        return None

    def edit(self, i: int, change: Callable[[CommentedMap], None]) -> None:
        """Apply `change` to document `i`'s round-trip tree and write the document back."""
        kept, text = self._source(i)
        crlf = "\r\n" in text
        text = text.replace("\r\n", "\n")
        yaml = _yaml(layout(text))
        data = yaml.load(text)
        change(data)
        dumped = _dump(yaml, data)
        self.chunks[i] = Chunk(kept, dumped.replace("\n", "\r\n") if crlf else dumped)

    def replace(self, i: int, document: dict[str, Any]) -> None:
        self.edit(i, lambda data: merge(data, document))

    def remove(self, i: int) -> None:
        del self.chunks[i]
        if self.chunks and i == 0 and self.chunks[0].head.strip() == "---":
            self.chunks[0].head = ""  # the next document opens the file now: no marker needed

    def append(self, document: dict[str, Any], text: str | None = None) -> None:
        """A new document at the end: `text` as written (a file given to `runner jobs
        create`, comments and all), else `document` in the README's layout."""
        text = text if text is not None else _dump(_yaml(DEFAULT_LAYOUT), _node(document))
        text = SEPARATOR.sub("", text, count=1).lstrip("\n") if text.startswith("---") else text
        text = text if text.endswith("\n") else text + "\n"
        if not self.chunks or all(self.data(i) is None for i in range(len(self.chunks))):
            self.chunks = [Chunk("", text)]
            return
        last = self.chunks[-1]
        if not last.body.endswith("\n"):
            last.body += "\n"
        self.chunks.append(Chunk("---\n", text))

    # --- tasks, as lines ----------------------------------------------------------------

    def tasks(self, i: int, change: Callable[[list[str], list[tuple[int, int]]], None]) -> None:
        """Edit document `i`'s block list `spec.tasks` as lines: `change` gets the document's
        lines and each task's span (first line with its comments above, end) and edits them.

        Raises:
            EditError: `spec.tasks` is not a block list (then `edit` changes it as data).
        """
        kept, text = self._source(i)
        lines = text.splitlines(keepends=True)
        spans = _task_spans(_yaml(layout(text)).load(text), lines)
        change(lines, spans)
        self.chunks[i] = Chunk(kept, "".join(lines))

    def render_task(self, i: int, task: dict[str, Any]) -> list[str]:
        """A new task's lines, indented as document `i`'s tasks are."""
        text = self._source(i)[1]
        mapping, offset = layout(text)
        data = _yaml(DEFAULT_LAYOUT).load(text)
        seq = data["spec"]["tasks"]
        dash = _dash_column(seq, text.splitlines(keepends=True), 0) if len(seq) else None
        if dash is None:
            dash = data["spec"].lc.key("tasks")[1] + offset
        rendered = _dump(_yaml((mapping, 0)), [_node(task)])
        if "\r\n" in text:
            rendered = rendered.replace("\n", "\r\n")
        return [" " * dash + line if line.strip() else line for line in rendered.splitlines(keepends=True)]


def _dash_column(seq: Any, lines: list[str], item: int) -> int | None:
    line, col = seq.lc.item(item)
    before = lines[line][:col].rstrip()
    return len(before) - 1 if before.endswith("-") else None


def _task_spans(data: Any, lines: list[str]) -> list[tuple[int, int]]:
    """Each task's lines [start, end): from the comment lines just above its dash to the next
    task's; the last ends before the first line that is not part of it (comments and blank
    lines at its end stay with what follows)."""
    try:
        seq = data["spec"]["tasks"]
    except (KeyError, TypeError):
        raise EditError("the document has no spec.tasks") from None
    if getattr(seq, "fa", None) is None or seq.fa.flow_style() or not len(seq):
        raise EditError("spec.tasks is not a block list")
    dashes = []
    for item in range(len(seq)):
        dash = _dash_column(seq, lines, item)
        if dash is None:
            raise EditError("a task's dash is not on its first line")
        dashes.append((seq.lc.item(item)[0], dash))
    column = dashes[0][1]

    def comment_or_blank(n: int) -> bool:
        stripped = lines[n].strip()
        return not stripped or (stripped.startswith("#") and len(lines[n]) - len(lines[n].lstrip()) >= column)

    starts = []
    for line, _ in dashes:
        start = line
        while start > 0 and comment_or_blank(start - 1) and lines[start - 1].strip():
            start -= 1
        starts.append(start)
    end = dashes[-1][0] + 1
    while end < len(lines):
        text = lines[end]
        indent = len(text) - len(text.lstrip())
        if (
            text.strip()
            and not text.lstrip().startswith("#")
            and (indent < column or (indent == column and not text.lstrip().startswith("-")))
        ):
            break
        end += 1
    while end > dashes[-1][0] + 1 and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return [(start, nxt) for start, nxt in zip(starts, [*starts[1:], end], strict=True)]

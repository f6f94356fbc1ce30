"""Read YAML definition files into documents that remember where every key came from.

PyYAML keeps the last of two equal keys in a mapping without a word; a definition with a
duplicate key is ambiguous, so we walk the composed node tree first, record the line and column
of every key path, and reject duplicates before anything is constructed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.definitions.models import NAME_PATTERN
from runner.errors import Location, Problem

if TYPE_CHECKING:
    import yaml

DEFINITION_DIRS = ("connections.d", "jobs.d")
DEFAULT_NAMESPACE = "default"
# Limits that keep a load, a plan and an apply short (the daemon applies in its own process,
# beside its API): a file past them is refused with a clear error before it is parsed.
MAX_FILE_BYTES = 2 << 20
MAX_DEFINITIONS = 10_000

PathKey = tuple[str | int, ...]


def resolve_reference(
    ref: str, namespace: str, connections: Collection[tuple[str, str]]
) -> tuple[str, str] | None:
    """A job's `source`/`target`: `ns/name`, or `name` in the job's namespace, else in 'default'."""
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return (ns, name) if (ns, name) in connections else None
    for ns in (namespace, DEFAULT_NAMESPACE):
        if (ns, ref) in connections:
            return (ns, ref)
    return None


def format_path(path: PathKey) -> str:
    """`('spec', 'tasks', 0, 'write')` -> `spec.tasks[0].write`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclass
class Document:
    """One YAML document of a definition file."""

    file: str  # as shown to the user: relative to the working directory when below it
    index: int  # position of the document in its file, from 0
    data: Any
    folder_namespace: str | None  # from the sub-folder of jobs.d/ or connections.d/, if any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    relpath: str = ""  # relative to the definitions folder: what the state store records
    rejected: bool = False  # has duplicate keys: checked for its other problems, never a definition

    def locate(self, path: PathKey) -> Location:
        """The location of `path`, or of its nearest ancestor that exists in the file."""
        probe = tuple(path)
        while probe and probe not in self.positions:
            probe = probe[:-1]
        line, col = self.positions.get(probe, (1, 1))
        return Location(self.file, line, col, format_path(path))


def display_path(path: Path, cwd: Path | None = None) -> str:
    """A path relative to the working directory (`cwd`, resolved, when the caller shows many
    paths) when it lies below it, else absolute."""
    return _shown(path.resolve(), cwd or Path.cwd().resolve())


def _shown(absolute: Path, cwd: Path) -> str:
    try:
        return str(absolute.relative_to(cwd))
    except ValueError:
        return str(absolute)


_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"


def _walk(
    node: yaml.Node, path: PathKey, doc: Document, problems: list[Problem], loader: Any, memo: dict[int, Any]
) -> Any:
    """Record the position of every key path below `node`, report duplicate keys, and return
    the node's value, built in the same pass (PyYAML's constructor would walk the tree again;
    it still builds what is not a plain mapping, list or scalar: merge keys, other tags). A
    node reached again through an alias is not walked again (`memo`): an alias of itself would
    recurse forever, and nested aliases would take exponential time ("billion laughs")."""
    import yaml

    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, yaml.MappingNode):
        plain = node.tag == _MAP and all(
            isinstance(k, yaml.ScalarNode) and k.tag != _MERGE for k, _ in node.value
        )
        data: Any = {} if plain else None
        memo[id(node)] = data
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(
                        Location(doc.file, line, key_node.start_mark.column + 1, format_path((*path, key))),
                        f"duplicate key {key!r} (first at line {seen[key]})",
                        "a mapping may name each key once; PyYAML would silently keep the last one",
                    )
                )
                if plain:  # as PyYAML would: the last one wins (the document is rejected anyway)
                    data[loader.construct_object(key_node)] = loader.construct_object(value_node, deep=True)
                continue
            seen[key] = line
            child = (*path, key)
            doc.positions[child] = (line, key_node.start_mark.column + 1)
            value = _walk(value_node, child, doc, problems, loader, memo)
            if plain:
                data[key if key_node.tag == _STR else loader.construct_object(key_node)] = value
        if not plain:
            data = memo[id(node)] = loader.construct_object(node, deep=True)
        return data
    if isinstance(node, yaml.SequenceNode):
        items: Any = [] if node.tag == _SEQ else None
        memo[id(node)] = items
        for i, item in enumerate(node.value):
            child = (*path, i)
            doc.positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            value = _walk(item, child, doc, problems, loader, memo)
            if node.tag == _SEQ:
                items.append(value)
        if node.tag != _SEQ:
            items = memo[id(node)] = loader.construct_object(node, deep=True)
        return items
    value = node.value if node.tag == _STR else loader.construct_object(node)
    memo[id(node)] = value
    return value


def load_text(
    text: str, file: str, folder_namespace: str | None = None, relpath: str | None = None
) -> tuple[list[Document], list[Problem]]:
    """Parse every document of one file; problems are returned, never raised."""
    import yaml  # here: a run, which reads the state store and no file, does not need it

    docs: list[Document] = []
    problems: list[Problem] = []
    # the C loader composes ~10x faster; the pure-Python one where PyYAML was built without it
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = Document(file, index, None, folder_namespace, relpath=relpath or file)
            doc.positions[()] = (node.start_mark.line + 1, node.start_mark.column + 1)
            index += 1
            before = len(problems)
            doc.data = _walk(node, (), doc, problems, loader, {})
            loader.constructed_objects, loader.recursive_objects = {}, {}  # as construct_document does
            doc.rejected = len(problems) > before
            if doc.data is None:
                continue
            if not isinstance(doc.data, dict):
                problems.append(
                    Problem(
                        doc.locate(()),
                        "a definition must be a mapping with apiVersion, kind, metadata and spec",
                    )
                )
                continue
            docs.append(doc)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        lines = text.splitlines()
        tab = 0 < line <= len(lines) and lines[line - 1][col - 1 : col] == "\t"
        hint = "YAML does not allow tabs for indentation: indent with spaces" if tab else ""
        problems.append(Problem(Location(file, line, col), f"YAML syntax error: {message}", hint))
    except yaml.YAMLError as exc:
        problems.append(Problem(Location(file), f"YAML error: {exc}"))
    finally:
        loader.dispose()
    return docs, problems


def definition_files(root: Path) -> tuple[list[tuple[Path, str | None, Path]], list[Problem]]:
    """Every `*.yaml`/`*.yml` below `jobs.d/` and `connections.d/`, sorted, with the namespace
    its first-level sub-folder gives (None at the top of the folder) and its resolved path (once:
    resolving is most of the cost of finding 1,000 files); and the problems of the
    files left out. A sub-folder whose name is not a valid namespace is left out (its name would
    reach plans and history unchecked: a newline in it forges a line of output), and so is a
    file that lies outside the definitions folder through a symlink (a pull request could make
    `validate` print another file's lines into CI logs)."""
    inside = root.resolve()
    files: list[tuple[Path, str | None, Path]] = []
    problems: list[Problem] = []
    for top in DEFINITION_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        found = []
        for dirpath, dirnames, filenames in os.walk(base):
            visible = sorted(d for d in dirnames if not d.startswith("."))
            if Path(dirpath) == base:
                for d in [d for d in visible if not re.fullmatch(NAME_PATTERN, d)]:
                    visible.remove(d)
                    problems.append(
                        Problem(
                            Location(display_path(base)),
                            f"sub-folder {d!r} is not a valid namespace; its files are not read",
                            "lower-case letters, digits, '-', '_' and '.', at most 63 characters",
                        )
                    )
            dirnames[:] = visible
            for name in filenames:
                if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                    found.append(Path(dirpath) / name)
        for path in sorted(found):
            if not path.name.isprintable():
                problems.append(
                    Problem(
                        Location(display_path(path.parent)),
                        f"file name {path.name!r} holds a control character; it is not read",
                    )
                )
                continue
            real = path.resolve()
            if not real.is_relative_to(inside):
                problems.append(
                    Problem(
                        Location(f"{display_path(path.parent)}{os.sep}{path.name}"),
                        "a symlink to a file outside the definitions folder; it is not read",
                        "copy the definition into the folder instead",
                    )
                )
                continue
            rel = path.relative_to(base).parts
            files.append((path, rel[0] if len(rel) > 1 else None, real))
    return files, problems


def lost_definitions(problems: list[Problem]) -> bool:
    """Whether loading may have lost definitions: a file not read whole (a YAML syntax error,
    a file too big or unreadable) is reported without a field; a problem in a document's
    field leaves its kind and name known."""
    return any(not p.location.field for p in problems)


def load_folder(root: Path) -> tuple[list[Document], list[Problem]]:
    """Load every definition file below `root`; all problems are collected."""
    docs: list[Document] = []
    problems: list[Problem] = []
    if not any((root / d).is_dir() for d in DEFINITION_DIRS):
        problems.append(
            Problem(
                Location(display_path(root)),
                "no jobs.d/ or connections.d/ folder here",
                "point --dir (or RUNNER_DIR) at the folder that holds them",
            )
        )
        return docs, problems
    files, problems = definition_files(root)
    cwd = Path.cwd().resolve()
    for path, namespace, real in files:
        shown = _shown(real, cwd)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                problems.append(
                    Problem(
                        Location(shown),
                        f"the file is {size / (1 << 20):.1f} MB; a definition file is at most "
                        f"{MAX_FILE_BYTES >> 20} MB",
                        "split it into several files",
                    )
                )
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(Location(shown), f"cannot read file: {exc}"))
            continue
        file_docs, file_problems = load_text(text, shown, namespace, path.relative_to(root).as_posix())
        docs.extend(file_docs)
        problems.extend(file_problems)
        if len(docs) > MAX_DEFINITIONS:  # stop reading: the rest would only take time
            problems.append(
                Problem(
                    Location(shown),
                    f"more than {MAX_DEFINITIONS:,} definitions (connections and jobs); at most "
                    f"{MAX_DEFINITIONS:,} are applied at once",
                    "keep the definitions of separate teams in separate folders (each with its own daemon "
                    "and state store)",
                )
            )
            return [], problems
    return docs, problems

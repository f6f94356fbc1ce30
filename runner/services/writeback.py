"""Changes to jobs and tasks made through the API or the CLI, written back to git.

Git stays the truth: a change is written into the definitions folder (a new file, or the
job's document edited in place with its comments kept), the whole folder is validated with it
first (an invalid change is refused with located problems and nothing is written), committed
with who made it as the author, then applied as `runner apply` would. With a `branch`, the
change is committed to that branch only (built from the branch's tip, or from HEAD for a new
branch) and not applied, so it goes through review; the work tree and HEAD are not touched.

A change holds a lock from reading the file to applying it (two changes at once both land, one
after the other) and refuses when the file differs from HEAD (uncommitted changes, a commit
made meanwhile: the branch moves only if it still is where the change started from), and, for
an update or delete, when the job is running.

A change made through the API that would be applied (no `branch`) may not add or alter a job's
`events` or `notify`, nor add a secret reference the job did not hold (`unreviewed`): a command
event runs any program on the daemon's machine and an SQL event any statement, a webhook
resolves secret references and sends them where its URL says, and a mask's salt keys digests
with whatever secret it names. Those come only from a commit a person made or a review branch
merged, as ad-hoc runs refuse them (`runner.runs.jobs.ADHOC_REVIEWED_ONLY`).
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.definitions import secrets
from runner.definitions.edit import DefinitionFile, EditError
from runner.definitions.gitrepo import Author, Repo
from runner.definitions.load import (
    DEFAULT_NAMESPACE,
    DEFINITION_DIRS,
    Document,
    format_path,
    load_folder,
    load_text,
    lost_definitions,
)
from runner.definitions.models import NAME_PATTERN
from runner.definitions.validate import validate_documents
from runner.errors import (
    DefinitionsInvalid,
    InvalidValue,
    JobBusy,
    Location,
    LockTimeout,
    NotFound,
    Problem,
    RunnerError,
    Unreviewed,
    WriteBackRefused,
)
from runner.jobs.types import capability_check, registered_models
from runner.services import definitions
from runner.state import locks
from runner.workspace import Workspace

REVIEWED_ONLY = ("events", "notify")  # a job's fields an unreviewed change may keep or drop, not set
LOCK_TIMEOUT = 30.0  # seconds a change waits for another change to the same folder
_FOLDER_LOCKS: dict[Path, threading.Lock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


def api_author(key: str) -> Author:
    """The author of a change made with API key `key`."""
    return Author(f"runner API key {key}", "runner@localhost")


@dataclass(frozen=True)
class Target:
    """The job a change is about: found in the folder, or new (`create`)."""

    ref: str  # name or namespace/name
    create: dict[str, Any] | None = None  # the new job's document
    running_matters: bool = True  # an update or delete of a running job is refused


Change = Callable[[DefinitionFile, int | None, str], str]  # edits the file; says what changed


# --- jobs -------------------------------------------------------------------------------


def create_job(
    ws: Workspace,
    document: dict[str, Any],
    namespace: str | None = None,
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    text: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    """A new job in `jobs.d/<name>.yaml` (`jobs.d/<namespace>/<name>.yaml` outside the default
    namespace); `text`, the YAML `document` was read from, is written as it is (its comments
    kept). `unreviewed`: made through the API (see the module's docstring).

    Raises:
        InvalidValue: the document has no valid name, or is not a Job.
        Unreviewed: `unreviewed`, no `branch`, and the job has events, notifications or a
            secret reference.
        WriteBackRefused: the job exists already, or the folder cannot take the change.
        DefinitionsInvalid: the folder with the job is not valid.
    """
    document = _job_document(document, None, namespace)
    meta = document["metadata"]
    new = f"{meta.get('namespace') or DEFAULT_NAMESPACE}/{meta['name']}"

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        file.append(document, text)
        return f"Create job {ref}"

    target = Target(new, create=document, running_matters=False)
    return _write_back(ws, target, change, author, by, branch, unreviewed)


def replace_job(
    ws: Workspace,
    ref: str,
    document: dict[str, Any],
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    """The job's document replaced by `document`, edited in place: what did not change keeps
    its comments and layout. `unreviewed`: made through the API (see the module's docstring)."""
    name = ref.rpartition("/")[2]
    document = _job_document(document, name, None)

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        old = _namespace_stated(file, index)
        if "namespace" not in document["metadata"] and old is not None:
            document["metadata"]["namespace"] = old
        file.replace(index, document)
        return f"Update job {ref}"

    return _write_back(ws, Target(ref), change, author, by, branch, unreviewed)


def edit_job(
    ws: Workspace,
    ref: str,
    sets: list[tuple[str, Any]],
    unsets: list[str] | None = None,
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
) -> dict[str, Any]:
    """Set (or remove) single fields of a job: `spec.batch_size`, `spec.tasks[orders].deletes`
    (a task by name or position), each value as YAML would read it."""
    unsets = unsets or []
    paths = [p for p, _ in sets] + unsets

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None

        def edit(data: Any) -> None:
            for path, value in sets:
                _set_path(data, _parse_path(path), value)
            for path in unsets:
                _unset_path(data, _parse_path(path))

        file.edit(index, edit)
        return f"Edit job {ref}: {'set' if sets else 'unset'} {', '.join(paths)}"

    if not paths:
        raise InvalidValue("say what to change: --set PATH=VALUE or --unset PATH", "set")
    return _write_back(ws, Target(ref), change, author, by, branch)


def delete_job(
    ws: Workspace, ref: str, author: Author | None = None, by: str | None = None, branch: str | None = None
) -> dict[str, Any]:
    """The job's document removed from its file (the file too, when nothing else is in it)."""

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        file.remove(index)
        return f"Delete job {ref}"

    return _write_back(ws, Target(ref), change, author, by, branch)


# --- tasks ------------------------------------------------------------------------------


def add_task(
    ws: Workspace,
    ref: str,
    task: dict[str, Any],
    position: int | None = None,
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    """A task added at `position` (1 is first; last when None)."""
    name = _task_name(task)

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        names = _task_names(file, index)
        if name in names:
            raise WriteBackRefused(f"job {ref} has a task {name!r} already")
        at = len(names) if position is None else _position(position, len(names) + 1)
        try:
            rendered = file.render_task(index, task)

            def insert(lines: list[str], spans: list[tuple[int, int]]) -> None:
                where = spans[at][0] if at < len(spans) else spans[-1][1]
                lines[where:where] = rendered

            file.tasks(index, insert)
        except EditError:  # no tasks yet, or a flow list: as data
            file.edit(index, lambda data: _tasks_of(data).insert(at, _as_node(task)))
        return f"Add task {name} to job {ref}"

    return _write_back(ws, Target(ref), change, author, by, branch, unreviewed)


def replace_task(
    ws: Workspace,
    ref: str,
    task_name: str,
    task: dict[str, Any],
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    """A task replaced, edited in place (a task may be renamed: its pointer stays with the old name)."""
    task = {"name": task_name, **task} if "name" not in task else task

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        at = _task_index(file, index, task_name, ref)

        def edit(data: Any) -> None:
            from runner.definitions.edit import merge

            tasks = _tasks_of(data)
            tasks[at] = merge(tasks[at], task)

        file.edit(index, edit)
        return f"Update task {task_name} of job {ref}"

    return _write_back(ws, Target(ref), change, author, by, branch, unreviewed)


def delete_task(
    ws: Workspace,
    ref: str,
    task_name: str,
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        at = _task_index(file, index, task_name, ref)
        try:
            file.tasks(index, lambda lines, spans: lines.__delitem__(slice(*spans[at])))
        except EditError:
            file.edit(index, lambda data: _tasks_of(data).pop(at))
        return f"Delete task {task_name} of job {ref}"

    return _write_back(ws, Target(ref), change, author, by, branch, unreviewed)


def move_task(
    ws: Workspace,
    ref: str,
    task_name: str,
    position: int | None = None,
    before: str | None = None,
    after: str | None = None,
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    """A task moved to `position` (1 is first), or just before or after another task: the
    order in which a job's tasks run (CData's move)."""
    if sum(x is not None for x in (position, before, after)) != 1:
        raise InvalidValue("say where to: one of position, before or after", "position")

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        names = _task_names(file, index)
        at = _task_index(file, index, task_name, ref)
        others = [n for n in names if n != task_name]
        if position is not None:
            to = _position(position, len(names))
        else:
            other = before if before is not None else after
            if other == task_name or other not in others:
                raise NotFound(f"job {ref} has no other task {other!r}")
            to = others.index(other) + (1 if after is not None else 0)
        try:

            def move(lines: list[str], spans: list[tuple[int, int]]) -> None:
                blocks = [lines[s:e] for s, e in spans]
                block = blocks.pop(at)
                blocks.insert(to, block)
                lines[spans[0][0] : spans[-1][1]] = [line for b in blocks for line in b]

            file.tasks(index, move)
        except EditError:
            file.edit(index, lambda data: _tasks_of(data).insert(to, _tasks_of(data).pop(at)))
        return f"Move task {task_name} of job {ref} to position {to + 1}"

    return _write_back(ws, Target(ref), change, author, by, branch, unreviewed)


def switch_task(
    ws: Workspace,
    ref: str,
    task_name: str,
    active: bool,
    author: Author | None = None,
    by: str | None = None,
    branch: str | None = None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    """Switch a task off (`active: false`, CData's Is_Active) or on again (the line goes)."""

    def change(file: DefinitionFile, index: int | None, ref: str) -> str:
        assert index is not None
        at = _task_index(file, index, task_name, ref)

        def edit(data: Any) -> None:
            from runner.definitions.edit import drop_key

            task = _tasks_of(data)[at]
            if active:
                if "active" in task:
                    drop_key(task, "active")
            elif "active" in task:
                task["active"] = False
            else:
                task.insert(list(task).index("name") + 1 if "name" in task else 0, "active", False)

        file.edit(index, edit)
        return f"Switch {'on' if active else 'off'} task {task_name} of job {ref}"

    return _write_back(ws, Target(ref), change, author, by, branch, unreviewed)


# --- the write-back ---------------------------------------------------------------------


def _write_back(
    ws: Workspace,
    target: Target,
    change: Change,
    author: Author | None,
    by: str | None,
    branch: str | None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    repo = Repo(ws.root)
    if branch is not None:
        repo.check_branch(branch)
    with _serialised(ws, in_place=branch is None):
        if branch is None:
            return _in_place(ws, repo, target, change, author, by, unreviewed)
        with tempfile.TemporaryDirectory(prefix="runner-branch-") as tmp:
            return _on_branch(ws, repo, Path(tmp), branch, target, change, author, by)


def _in_place(
    ws: Workspace,
    repo: Repo,
    target: Target,
    change: Change,
    author: Author | None,
    by: str | None,
    unreviewed: bool = False,
) -> dict[str, Any]:
    head = repo.head()
    docs, problems = _folder(ws.root)
    relpath, namespace, name = _locate(docs, target)
    ref = f"{namespace}/{name}"
    path = ws.root / relpath
    gitpath = repo.path(relpath)
    with _job_held(ws, ref) if target.running_matters else nullcontext():
        if repo.dirty(gitpath):
            raise WriteBackRefused(
                f"{relpath} has uncommitted changes: commit or discard them first (a change "
                "through runner is committed on its own, never with someone's unfinished work)"
            )
        old = path.read_bytes() if path.exists() else None
        if (repo.hash(old) if old is not None else None) != repo.blob(head, gitpath):
            raise WriteBackRefused(
                f"{relpath} differs from the last commit: commit or discard the changes first"
            )
        subject, new = _edit(old, target, change, ref, relpath)
        definition = _validated(ws, docs, problems, ref, relpath, new)
        if unreviewed:
            _check_reviewed(docs, relpath, new)
        blob = repo.hash(new.encode(), write=True) if new is not None else None
        message = _message(subject, by)
        commit = repo.commit(head, gitpath, blob, message, author)
        if repo.head() != head or (path.read_bytes() if path.exists() else None) != old:
            raise WriteBackRefused(f"{relpath} changed while the change was being made; send it again")
        _write(path, new)
        try:
            repo.move("HEAD", commit, head, subject)
        except WriteBackRefused:
            _write(path, old.decode() if old is not None else None)
            raise
        repo.sync_index(gitpath, blob)
        result = _result(subject, ref, relpath, commit, None, definition)
        try:
            applied = definitions.apply(ws)
            result |= {"applied": True, "revision": applied.revision}
        except RunnerError as exc:  # committed: the daemon or a later apply picks it up
            result |= {"applied": False, "apply_error": str(exc)}
        return result


def _on_branch(
    ws: Workspace,
    repo: Repo,
    tmp: Path,
    branch: str,
    target: Target,
    change: Change,
    author: Author | None,
    by: str | None,
) -> dict[str, Any]:
    tip = repo.tip(branch)
    base = tip or repo.head()
    if base is None:
        raise WriteBackRefused("the repository has no commit yet to branch from")
    repo.export(base, DEFINITION_DIRS, tmp)
    docs, problems = _folder(tmp)
    relpath, namespace, name = _locate(docs, target)
    ref = f"{namespace}/{name}"
    path = tmp / relpath
    old = path.read_bytes() if path.exists() else None
    subject, new = _edit(old, target, change, ref, relpath)
    definition = _validated(ws, docs, problems, ref, relpath, new)
    gitpath = repo.path(relpath)
    blob = repo.hash(new.encode(), write=True) if new is not None else None
    message = _message(subject, by)
    commit = repo.commit(base, gitpath, blob, message, author)
    repo.move(f"refs/heads/{branch}", commit, tip, subject)
    return _result(subject, ref, relpath, commit, branch, definition) | {"applied": False}


@contextmanager
def _serialised(ws: Workspace, in_place: bool) -> Iterator[None]:
    """One change to a folder at a time: in this process, and (for changes that apply)
    across processes through the state store's write-back lock."""
    key = ws.root.resolve()
    with _FOLDER_LOCKS_GUARD:
        lock = _FOLDER_LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(timeout=LOCK_TIMEOUT):
        raise LockTimeout(f"another change to {ws.root} took over {LOCK_TIMEOUT:.0f} s")
    try:
        if in_place:
            with ws.store(create=True).locks.locked(locks.WRITE_BACK, LOCK_TIMEOUT):
                yield
        else:
            yield
    finally:
        lock.release()


@contextmanager
def _job_held(ws: Workspace, ref: str) -> Iterator[None]:
    """The job's run lock, held while it is changed: a running job is refused, and no run
    starts between the check and the apply."""
    store = ws.store(create=True)
    try:
        lock_id = store.locks.acquire(locks.job_lock(ref), timeout=0)
    except LockTimeout:
        held = store.locks.info(locks.job_lock(ref))
        holder = held.holder if held else "another process"
        raise JobBusy(
            f"job {ref} is running ({holder}): a running job is neither updated nor deleted; "
            "change it when the run has ended"
        ) from None
    try:
        yield
    finally:
        store.locks.release(locks.job_lock(ref), lock_id)


def _jobs(docs: list[Document]) -> list[tuple[Document, str, str]]:
    """(document, namespace, name) of each job among `docs`."""
    jobs = []
    for doc in docs:
        if not isinstance(doc.data, dict):
            continue
        meta = doc.data.get("metadata")
        if doc.data.get("kind") != "Job" or not isinstance(meta, dict) or "name" not in meta:
            continue
        namespace = str(meta.get("namespace") or doc.folder_namespace or DEFAULT_NAMESPACE)
        jobs.append((doc, namespace, str(meta["name"])))
    return jobs


def _check_reviewed(docs: list[Document], relpath: str, new: str | None) -> None:
    """Refuse an unreviewed change that leaves a job of the file (the one changed, or one it
    became: a replaced job may state another namespace) with `REVIEWED_ONLY` fields other
    than its own at HEAD (keeping or dropping them is fine), or with a secret reference it did
    not hold (a mask's salt of `${env:DB_PASSWORD}` would write digests keyed with that
    password, to be guessed at offline).

    Raises:
        Unreviewed: naming the field.
    """

    def jobs(found: list[Document]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(ns, n): doc.data for doc, ns, n in _jobs([d for d in found if d.relpath == relpath])}

    before = jobs(docs)
    after = jobs(load_text(new, relpath, _folder_of(relpath), relpath)[0]) if new is not None else {}
    for key, data in after.items():
        old = before.get(key, {})
        spec_before, spec_after = (
            d.get("spec") if isinstance(d.get("spec"), dict) else {} for d in (old, data)
        )
        for field in REVIEWED_ONLY:
            if spec_after.get(field) and spec_after.get(field) != spec_before.get(field):
                raise Unreviewed(
                    f"spec.{field} is not set through the API without a review (a command event runs on "
                    "the daemon's machine, a webhook sends the secrets it references): send the change "
                    "with ?branch=NAME and merge it after review, or commit it by hand",
                    f"spec.{field}",
                )
        held = {ref for _, ref in secrets.references_in(old)}
        for path, ref in secrets.references_in(data):
            if ref not in held:
                raise Unreviewed(
                    f"{ref} is a secret the job did not read: a change through the API adds none without "
                    "a review (send it with ?branch=NAME and merge it after review, or commit it by hand)",
                    format_path(path),
                )


def _locate(docs: list[Document], target: Target) -> tuple[str, str, str]:
    """(file relative to the folder, namespace, name) of the job a change is about."""
    jobs = _jobs(docs)
    namespace, _, name = target.ref.rpartition("/")
    if target.create is not None:
        found = [(d, ns, n) for d, ns, n in jobs if (ns, n) == (namespace, name)]
        if found:
            where = found[0][0].locate(())
            raise WriteBackRefused(f"job {target.ref} exists already ({where.file}:{where.line})")
        stated = target.create["metadata"].get("namespace")
        relpath = f"jobs.d/{stated + '/' if stated and stated != DEFAULT_NAMESPACE else ''}{name}.yaml"
        return relpath, namespace, name
    if namespace:
        found = [(d, ns, n) for d, ns, n in jobs if (ns, n) == (namespace, name)]
    else:
        found = [(d, ns, n) for d, ns, n in jobs if n == name]
        if len(found) > 1:
            found = [j for j in found if j[1] == DEFAULT_NAMESPACE] or found
    if not found:
        raise NotFound(f"no job {target.ref!r} in the definitions folder")
    if len(found) > 1:
        refs = ", ".join(f"{ns}/{n}" for _, ns, n in found)
        raise NotFound(f"job {target.ref!r} is ambiguous: {refs}; name it as namespace/name")
    doc, namespace, name = found[0]
    return doc.relpath, namespace, name


def _edit(
    old: bytes | None, target: Target, change: Change, ref: str, relpath: str
) -> tuple[str, str | None]:
    """(what changed, the file's new text; None when the file goes)."""
    try:
        text = old.decode("utf-8") if old is not None else None
    except UnicodeDecodeError:
        raise WriteBackRefused("the job's file is not UTF-8 text") from None
    file = DefinitionFile(text)
    index = None
    if target.create is None:
        namespace, _, name = ref.partition("/")
        folder = _folder_of(relpath) or DEFAULT_NAMESPACE
        index = file.find("Job", name, lambda meta: str(meta.get("namespace") or folder), namespace)
        if index is None:
            raise NotFound(f"no job {ref!r} in its file")
    try:
        subject = change(file, index, ref)
    except EditError as exc:
        raise InvalidValue(str(exc), "spec.tasks") from None
    return subject, file.text()


def _folder_of(relpath: str) -> str | None:
    """The namespace a file's sub-folder gives (`jobs.d/<namespace>/…`)."""
    parts = Path(relpath).parts
    return parts[1] if len(parts) > 2 else None


def _validated(
    ws: Workspace,
    docs: list[Document],
    problems: list[Problem],
    ref: str,
    relpath: str,
    new: str | None,
) -> dict[str, Any] | None:
    """The folder's definitions with the file's new text in place of its old one, validated
    as `runner validate` would; the changed job's document as applied (None when it went).

    Raises:
        DefinitionsInvalid: all problems, located in the new text.
    """
    docs = [d for d in docs if d.relpath != relpath]
    problems = [p for p in problems if p.location.file != relpath]
    if new is not None:
        new_docs, new_problems = load_text(new, relpath, _folder_of(relpath), relpath)
        docs += new_docs
        problems += new_problems
    found, invalid = validate_documents(
        docs,
        base_dir=ws.root,
        **registered_models(),
        capabilities=capability_check(),
        partial=lost_definitions(problems),
    )
    if problems or invalid:
        raise DefinitionsInvalid(problems + invalid)
    return next((d.document() for d in found if d.kind == "Job" and d.ref == ref), None)


def _result(
    subject: str, ref: str, relpath: str, commit: str, branch: str | None, document: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "change": subject,
        "job": ref,
        "file": relpath,
        "commit": commit,
        "branch": branch,
        "definition": document,
    }


def _message(subject: str, by: str | None) -> str:
    return f"{subject}\n\nMade through runner{f' by {by}' if by else ''}.\n"


def _write(path: Path, text: str | None) -> None:
    """Write a file whole (a temporary file renamed over it: the watcher never sees half),
    or remove it."""
    if text is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.runner-tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _folder(root: Path) -> tuple[list[Document], list[Problem]]:
    """The folder's documents and problems, each located by its path in the folder (as the
    state store records it), wherever the process runs and whichever tree `root` is."""
    docs, problems = load_folder(root)
    for doc in docs:
        doc.file = doc.relpath
    inside = root.resolve()
    moved = []
    for p in problems:
        loc = p.location
        file = Path(loc.file).resolve()  # shown relative to the working directory, as paths resolve
        shown = file.relative_to(inside).as_posix() if file.is_relative_to(inside) else loc.file
        moved.append(Problem(Location(shown, loc.line, loc.col, loc.field), p.message, p.hint))
    return docs, moved


# --- documents, tasks and paths -----------------------------------------------------------


def _job_document(document: Any, name: str | None, namespace: str | None) -> dict[str, Any]:
    """A request's job document, with `apiVersion` and `kind` filled in when left out."""
    if not isinstance(document, dict):
        raise InvalidValue("a job is a mapping with metadata and spec", "")
    document = dict(document)
    if document.setdefault("kind", "Job") != "Job":
        raise InvalidValue("only jobs are changed this way (kind: Job)", "kind")
    document.setdefault("apiVersion", "runner/v1")
    meta = document.get("metadata")
    if meta is None and name is not None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidValue("metadata must be a mapping with the job's name", "metadata")
    meta = dict(meta)
    if name is not None and meta.setdefault("name", name) != name:
        raise InvalidValue(f"metadata.name must be {name!r} (a job is not renamed this way)", "metadata.name")
    if namespace is not None and meta.setdefault("namespace", namespace) != namespace:
        raise InvalidValue(f"metadata.namespace must be {namespace!r}", "metadata.namespace")
    for field in ("name", "namespace"):
        value = meta.get(field)
        if value is not None and not (isinstance(value, str) and re.fullmatch(NAME_PATTERN, value)):
            raise InvalidValue(
                "lower-case letters, digits, '-', '_' and '.', at most 63 characters", f"metadata.{field}"
            )
    if "name" not in meta:
        raise InvalidValue("the job needs a name", "metadata.name")
    document["metadata"] = meta
    ordered = {k: document[k] for k in ("apiVersion", "kind", "metadata") if k in document}
    return ordered | {k: v for k, v in document.items() if k not in ordered}


def _namespace_stated(file: DefinitionFile, index: int) -> str | None:
    data = file.data(index)
    return (data.get("metadata") or {}).get("namespace") if isinstance(data, dict) else None


def _task_name(task: Any) -> str:
    if not isinstance(task, dict) or not isinstance(task.get("name"), str):
        raise InvalidValue("a task is a mapping with a name", "name")
    return task["name"]


def _task_names(file: DefinitionFile, index: int) -> list[str]:
    data = file.data(index)
    spec = data.get("spec") if isinstance(data, dict) else None
    tasks = spec.get("tasks") if isinstance(spec, dict) else None
    if tasks is None:
        return []
    if not isinstance(tasks, list):
        raise InvalidValue("the job's spec.tasks is not a list", "spec.tasks")
    return [str(t.get("name")) if isinstance(t, dict) else "" for t in tasks]


def _task_index(file: DefinitionFile, index: int, task_name: str, ref: str) -> int:
    names = _task_names(file, index)
    if task_name not in names:
        raise NotFound(f"job {ref} has no task {task_name!r} (tasks: {', '.join(names) or 'none'})")
    return names.index(task_name)


def _position(position: int, size: int) -> int:
    if not 1 <= position <= size:
        raise InvalidValue(f"position must be from 1 to {size}", "position")
    return position - 1


def _tasks_of(data: Any) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    spec = data.setdefault("spec", {})
    if spec.get("tasks") is None:
        spec["tasks"] = CommentedSeq()
    return spec["tasks"]


def _as_node(value: Any) -> Any:
    from runner.definitions.edit import merge

    return merge(None, value)


_PATH_PART = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


def _parse_path(path: str) -> list[str | int]:
    """`spec.tasks[orders].write.keys` -> ['spec', 'tasks', 'orders', 'write', 'keys'];
    `[2]` is an index, from 0, as validation errors name an item (`spec.tasks[2].write`): a
    path copied from one changes that item."""
    parts: list[str | int] = []
    for match in _PATH_PART.finditer(path):
        key, index = match.groups()
        if key is not None:
            parts.append(key)
        elif index.isdigit():
            parts.append(int(index))
        else:
            parts.append(index)
    if not parts or _PATH_PART.sub("", path).replace(".", ""):
        raise InvalidValue(f"not a field path: {path!r}", "set")
    return parts


def _step(node: Any, part: str | int, path: list[str | int], create: bool) -> Any:
    if isinstance(node, list):
        if isinstance(part, int):
            if not 0 <= part < len(node):
                counted = f"[0] to [{len(node) - 1}]" if node else "none"
                raise InvalidValue(f"no item [{part}] (there are {len(node)}: {counted})", _shown(path))
            return part
        for i, item in enumerate(node):
            if isinstance(item, dict) and str(item.get("name")) == part:
                return i
        raise NotFound(f"no item named {part!r} at {_shown(path)}")
    if isinstance(node, dict):
        if part not in node and not create:
            raise NotFound(f"no field {_shown(path)}")
        return part
    raise InvalidValue(f"{_shown(path)} is not a mapping or a list", _shown(path))


def _shown(path: list[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _set_path(data: Any, path: list[str | int], value: Any) -> None:
    from runner.definitions.edit import merge

    node = data
    for depth, part in enumerate(path[:-1]):
        key = _step(node, part, path[: depth + 1], create=True)
        if isinstance(node, dict) and key not in node:
            node[key] = merge(None, {})
        node = node[key]
    key = _step(node, path[-1], path, create=True)
    if isinstance(node, dict) and key not in node:  # a new field goes before the tasks, not after
        node.insert(list(node).index("tasks") if "tasks" in node else len(node), key, merge(None, value))
    else:
        node[key] = merge(node[key], value)


def _unset_path(data: Any, path: list[str | int]) -> None:
    from runner.definitions.edit import drop_key

    node = data
    for depth, part in enumerate(path[:-1]):
        node = node[_step(node, part, path[: depth + 1], create=False)]
    key = _step(node, path[-1], path, create=False)
    if isinstance(node, dict):
        drop_key(node, key)
    else:
        del node[key]

"""Validate loaded documents into definitions and check what spans documents: unique names
per kind and namespace, jobs that name connections which exist, and each task's `read` and
`write` against the models of the kinds of its job's connections.

The models come from the caller: connection kinds and job types register in the packages
above this one, which `definitions` never imports."""

from __future__ import annotations

import hashlib
import json
import re
from collections import ChainMap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from runner.definitions.changelogs import END_MODELS, is_writer, keeps_change_logs, reader_task, step_ends
from runner.definitions.errors import problems_from
from runner.definitions.events import event_problems, header_file_problems, notify_problems
from runner.definitions.jobs import DEFAULT_JOB_TYPE, JobSpec, cron_fields
from runner.definitions.kinds import TaskModels, connection_type, job_model, model_of, secret_file_problems
from runner.definitions.load import DEFAULT_NAMESPACE, Document, resolve_reference
from runner.definitions.models import ConnectionSpec, Envelope, Metadata
from runner.definitions.needs import CapabilityCheck, End, refusals
from runner.errors import MissingName, Problem

KINDS = ("Connection", "Job")


@dataclass(frozen=True)
class Definition:
    """A validated Connection or Job, with where it was defined."""

    kind: str
    metadata: Metadata
    namespace: str
    spec: ConnectionSpec | JobSpec
    file: str
    line: int

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def ref(self) -> str:
        """`namespace/name`: how plans, history and the CLI name the object."""
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def document(self) -> dict[str, Any]:
        """The canonical form kept in the state store: fields the user set, namespace resolved.
        Fields the user left at their default stay out, so a new default in a later release
        does not turn every object into an update."""
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.metadata.labels:
            meta["labels"] = dict(sorted(self.metadata.labels.items()))
        if self.metadata.description:
            meta["description"] = self.metadata.description
        return {
            "apiVersion": "runner/v1",
            "kind": self.kind,
            "metadata": meta,
            "spec": self.spec.model_dump(mode="json", exclude_unset=True),
        }


def digest(document: Any) -> str:
    """A stable sha256 of a JSON-able value (keys sorted)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _validate_spec(doc: Document, model: type[BaseModel]) -> tuple[Any, list[Problem]]:
    try:
        return model.model_validate(doc.data["spec"]), []
    except ValidationError as exc:
        return None, problems_from(exc, doc, model, ("spec",))


def _validate_document(
    doc: Document,
    connection_types: Mapping[str, type[ConnectionSpec]],
    base_dir: Path | None,
    job_types: Mapping[str, type[JobSpec]],
    task_models: Mapping[str, TaskModels],
    ends: Mapping[str, str],
) -> tuple[Definition | None, list[Problem]]:
    """One document against its model; a job's tasks against its connections' kinds (`ends`:
    `source`/`target` -> connection type, as far as known)."""
    problems: list[Problem] = []
    envelope: Envelope | None = None
    try:
        envelope = Envelope.model_validate(doc.data)
    except ValidationError as exc:
        for problem in problems_from(exc, doc, Envelope):
            field = problem.location.field
            if field in ("apiVersion", "kind"):
                given = doc.data.get(field)
                expected = "'runner/v1'" if field == "apiVersion" else "'Connection' or 'Job'"
                if given is not None:
                    problem = Problem(
                        problem.location, f"unknown {field} {str(given)!r}; expected {expected}"
                    )
            problems.append(problem)
        if any(p.location.field.split(".")[0] in ("apiVersion", "kind", "spec") for p in problems):
            return None, problems  # without a known kind and a spec mapping, the spec cannot be checked

    kind = doc.data["kind"]
    if kind == "Job":
        model = model_of(doc, job_types, "job type", DEFAULT_JOB_TYPE)
        if not isinstance(model, Problem):
            model = job_model(model, ends, ChainMap(END_MODELS, task_models))  # type: ignore[arg-type]
    else:
        model = model_of(doc, connection_types, "connection type", None)
    if isinstance(model, Problem):
        return None, [*problems, model]
    parsed, spec_problems = _validate_spec(doc, model)
    problems.extend(spec_problems)
    if isinstance(parsed, JobSpec):
        problems.extend(_task_name_problems(parsed, doc))
        problems.extend(
            Problem(doc.locate(("spec", *path)), message) for path, message in parsed.field_problems()
        )
    if isinstance(parsed, ConnectionSpec) and base_dir is not None:
        problems.extend(secret_file_problems(doc, parsed, base_dir))
    if isinstance(parsed, JobSpec) and base_dir is not None:
        problems.extend(header_file_problems(doc, parsed, base_dir))
    if envelope is None or problems:
        return None, problems

    meta = envelope.metadata
    if meta.namespace and doc.folder_namespace and meta.namespace != doc.folder_namespace:
        return None, [
            Problem(
                doc.locate(("metadata", "namespace")),
                f"namespace {meta.namespace!r} contradicts the folder {doc.folder_namespace!r} "
                "the file is in",
                "drop metadata.namespace or move the file",
            )
        ]
    return Definition(
        kind, meta, namespace_of(meta.namespace, doc), parsed, doc.relpath, doc.positions[()][0]
    ), []


def validate_documents(
    docs: list[Document],
    connection_types: Mapping[str, type[ConnectionSpec]],
    base_dir: Path | None = None,
    *,
    task_models: Mapping[str, TaskModels],
    job_types: Mapping[str, type[JobSpec]],
    capabilities: CapabilityCheck | None = None,
    partial: bool = False,
) -> tuple[list[Definition], list[Problem]]:
    """Validate every document and the references between them; all problems are returned.
    `partial`: a file could not be read whole (`load.lost_definitions`), so a name no document
    states may be defined there. A dangling reference is then not reported, nor what a job
    naming a connection not found would be checked against (its kind): the syntax error is
    the one problem, and the rest is checked once the file reads.
    With `base_dir` (the definitions folder), `${file:}` references must lie within the
    folders secrets may be read from. `task_models` (by connection type) check each task's
    `read` and `write` once its job's connections are known; `job_types` map `spec.type` to
    the job's spec model; with `capabilities`, each task's needs must be met by the kinds of
    the connections it reads from and writes to."""
    problems: list[Problem] = []
    definitions: list[Definition] = []
    documents: dict[int, Document] = {}  # id(definition) -> its document, to locate its fields
    named = [(doc, kind) for doc in docs if (kind := doc.data.get("kind")) in KINDS and _raw_key(doc)[1]]
    # A connection whose own spec is invalid still counts as existing (its problems are
    # reported already), and its type is what the jobs naming it are checked against.
    connections = {_raw_key(doc): connection_type(doc) for doc, kind in named if kind == "Connection"}
    known = set(connections)
    roles = _Roles(task_models)
    for doc in docs:
        if partial and _names_unknown_connection(doc, known):
            continue  # its tasks would be checked as a table's, whatever kind the connection is
        # A document with duplicate keys is still checked, so its other problems come in the
        # same report; it never becomes a definition (which of the two values was meant?).
        ends = _job_ends(doc, connections, task_models)
        definition, doc_problems = _validate_document(
            doc, connection_types, base_dir, job_types, task_models, ends
        )
        problems.extend(doc_problems)
        if definition is not None and not doc.rejected:
            definitions.append(definition)
            documents[id(definition)] = doc

    # Names and references are checked on the names every document states, valid or not:
    # a duplicate is reported even when one of the two has other problems, and a connection
    # whose own spec is invalid still exists for the jobs that use it.
    first: dict[tuple[str, str, str], Document] = {}
    duplicates: set[tuple[str, str, str, str]] = set()
    for doc, kind in named:
        key = (kind, *_raw_key(doc))
        other = first.setdefault(key, doc)
        if other is not doc:
            duplicates.add((*key, doc.relpath))
            problems.append(
                Problem(
                    doc.locate(("metadata", "name")),
                    f"duplicate {kind} '{key[1]}/{key[2]}'; "
                    f"first defined at {other.file}:{other.positions[()][0]}",
                    "names are unique per kind and namespace",
                )
            )
    definitions = [d for d in definitions if (*d.key, d.file) not in duplicates]

    # References are checked on every document that names them, valid or not, so a run reports
    # a dangling reference together with the job's other problems.
    for doc in docs:
        spec = doc.data.get("spec")
        if doc.data.get("kind") != "Job" or not isinstance(spec, dict):
            continue
        namespace = _raw_key(doc)[0]
        ends: dict[str, str] = {}  # source/target -> the type of the connection it names
        for field in ("source", "target"):
            ref = spec.get(field)
            key = resolve_reference(ref, namespace, known) if isinstance(ref, str) else None
            if isinstance(ref, str) and key is None:
                searched = sorted({namespace, DEFAULT_NAMESPACE})
                hint = "define it in connections.d/"
                if "/" not in ref:
                    hint += f" (looked in namespace {' and '.join(repr(n) for n in searched)})"
                problems.append(
                    MissingName(doc.locate(("spec", field)), f"connection {ref!r} does not exist", hint)
                )
            elif key is not None and connections[key]:
                kind = task_models.get(connections[key])
                if kind is not None and field not in kind.roles:
                    problems.append(_not_an_end(doc, field, ref, connections[key], kind.roles))
                    continue
                ends[field] = connections[key]
        if capabilities is not None:
            problems.extend(event_problems(doc, ends, capabilities.capabilities))

        def resolve(ref: str, namespace: str = namespace) -> str | None:
            key = resolve_reference(ref, namespace, known)
            return None if key is None else connections[key]

        problems.extend(notify_problems(doc, resolve, roles))
    problems.extend(_trigger_problems(docs, {_raw_key(doc) for doc, kind in named if kind == "Job"}))
    problems.extend(_step_problems(docs, connections))
    if capabilities is not None:
        problems.extend(_capability_problems(definitions, documents, capabilities, roles))
    if partial:
        problems = [p for p in problems if not isinstance(p, MissingName)]
    return definitions, problems


def _names_unknown_connection(doc: Document, known: set[tuple[str, str]]) -> bool:
    """A job document whose `source` or `target` names a connection no document states."""
    spec = doc.data.get("spec")
    if doc.data.get("kind") != "Job" or not isinstance(spec, dict):
        return False
    namespace = _raw_key(doc)[0]
    return any(
        isinstance(ref, str) and resolve_reference(ref, namespace, known) is None
        for ref in (spec.get("source"), spec.get("target"))
    )


class _Roles(Mapping[str, frozenset[str]]):
    """What each kind may be used for, looked up in `task_models` kind by kind (a registry's
    view imports only the kinds a folder names)."""

    def __init__(self, task_models: Mapping[str, TaskModels]):
        self._kinds = task_models

    def __getitem__(self, name: str) -> frozenset[str]:
        return self._kinds[name].roles

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


def job_ends(spec: Any, namespace: str, types: Mapping[tuple[str, str], str]) -> dict[str, str]:
    """A job spec's `source`/`target` -> the type of the connection each names, among `types`
    ((namespace, name) -> type), or the end of a reader or a writer that is not a connection
    (`changelogs.step_ends`); an end naming none is left out."""
    if not isinstance(spec, Mapping):
        return {}
    ends: dict[str, str] = {}
    for end in ("source", "target"):
        ref = spec.get(end)
        key = resolve_reference(ref, namespace, types.keys()) if isinstance(ref, str) else None
        if key is not None:
            ends[end] = types[key]
    return ends | step_ends(spec)


def _job_ends(
    doc: Document, connections: Mapping[tuple[str, str], str], task_models: Mapping[str, TaskModels]
) -> dict[str, str]:
    """A job document's ends (`job_ends`) whose connection's kind may be that end (the others
    are reported with the references)."""
    if doc.data.get("kind") != "Job":
        return {}
    ends = job_ends(doc.data.get("spec"), _raw_key(doc)[0], connections)
    return {
        end: kind_name
        for end, kind_name in ends.items()
        if (kind := task_models.get(kind_name)) is None or end in kind.roles or kind_name in END_MODELS
    }


def _not_an_end(doc: Document, field: str, ref: str, kind: str, roles: frozenset[str]) -> Problem:
    return Problem(
        doc.locate(("spec", field)),
        f"connection {ref!r} is of type {kind!r}, which cannot be a job's {field}",
        f"a connection of type {kind!r} is for: {', '.join(sorted(roles))}",
    )


def _capability_problems(
    definitions: list[Definition],
    documents: dict[int, Document],
    check: CapabilityCheck,
    roles: Mapping[str, frozenset[str]],
) -> list[Problem]:
    """Each task of a valid job against the kinds of its (valid) connections: a strategy its
    source cannot serve, a script its target cannot run, located at the field that asks."""
    types = {(d.namespace, d.name): d.spec.type for d in definitions if d.kind == "Connection"}
    problems: list[Problem] = []
    for job in definitions:
        spec = job.spec
        if not isinstance(spec, JobSpec):
            continue
        ends: dict[End, str] = {}
        refs: dict[End, str] = {}
        for end, ref in (("source", spec.source), ("target", spec.target)):
            if not isinstance(ref, str):  # a writer's source (a job), a reader's target (its change logs)
                continue
            key = resolve_reference(ref, job.namespace, set(types))
            if key is not None and end in roles.get(types[key], (end,)):  # else refused already
                ends[end], refs[end] = types[key], ref  # type: ignore[index]
        for end, path, message in refusals(check.lacking(spec.needs(check.needs), ends), refs, ends):
            able = ", ".join(sorted(check.capabilities.get(ends[end], ()))) or "nothing optional"
            where = documents[id(job)].locate(("spec", *path))
            problems.append(Problem(where, message, f"type {ends[end]!r} can: {able}"))
    return problems


def warnings_of(docs: list[Document]) -> list[Problem]:
    """What is valid but almost certainly not meant; reported by `validate`, never blocking.

    A six-field cron with `*` (or `*/1`, `0-59`) in its seconds field fires every second of
    each minute it matches: `* 5 * * * *` is 60 runs from 00:05:00 to 00:05:59, each hour."""
    warnings = [w for doc in docs if (w := _all_inactive(doc)) is not None]
    warnings += [w for doc in docs for w in _repeated_file_names(doc)]
    for doc in docs:
        spec = doc.data.get("spec")
        schedule = spec.get("schedule") if doc.data.get("kind") == "Job" and isinstance(spec, dict) else None
        cron = schedule.get("cron") if isinstance(schedule, dict) else None
        fields = cron_fields(cron) if isinstance(cron, str) else None
        if fields is None or len(fields) != 6:
            continue
        if fields[5] == ["*"]:
            warnings.append(
                Problem(
                    doc.locate(("spec", "schedule", "cron")),
                    f"{cron!r} fires every second: the sixth field (seconds) is "
                    f"{cron.split()[5]!r}, so the job runs 60 times in each minute it matches",
                    "write 0 as the sixth field to run once in that minute, or use 5 fields",
                )
            )
    return warnings


_BOOL = TypeAdapter(bool)


def _job_tasks(doc: Document) -> Any:
    """A Job document's `spec.tasks` as written (None where it has none)."""
    spec = doc.data.get("spec")
    return spec.get("tasks") if doc.data.get("kind") == "Job" and isinstance(spec, dict) else None


def _all_inactive(doc: Document) -> Problem | None:
    """A job whose tasks are all switched off (`active: false`): valid, and each run does nothing."""
    tasks = _job_tasks(doc)
    if not isinstance(tasks, list) or not tasks:
        return None
    if not all(isinstance(t, dict) and _switched_off(t.get("active", True)) for t in tasks):
        return None
    return Problem(
        doc.locate(("spec", "tasks")),
        "every task of the job is switched off (active: false): its runs do nothing",
        "set active: true on the tasks to run, or remove the job",
    )


_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)
_NAME = re.compile(r"[A-Za-z_]\w*")


def _repeated_file_names(doc: Document) -> list[Problem]:
    """A files task's `write.file` that gives two files the same name: a file is never
    overwritten, so the run that comes to the second stops there. Every committed batch is a
    file (`part` numbers them in a run), and every run names its own (`run_id`, or `started`)."""
    tasks = _job_tasks(doc)
    found = []
    for i, task in enumerate(tasks if isinstance(tasks, list) else []):
        write = task.get("write") if isinstance(task, dict) else None
        template = write.get("file") if isinstance(write, dict) else None
        if not isinstance(template, str):
            continue
        names = {n for expr in _EXPRESSION.findall(template) for n in _NAME.findall(expr)}
        missing = ("part" not in names, not names & {"run_id", "started"})
        if any(missing):
            found.append(
                Problem(
                    doc.locate(("spec", "tasks", i, "write", "file")),
                    f"{template!r} {_REPEATS[missing]}: a file is never overwritten",
                    "name the files by {{ run_id }}-{{ part }}, as the default does",
                )
            )
    return found


_REPEATS = {  # (no part, no run_id or started): what stops at a file that exists
    (True, False): "names every file of a run alike: without {{ part }}, a run that commits a second "
    "batch stops at its second file",
    (False, True): "names the files of every run alike: without {{ run_id }} (or {{ started }}), the "
    "next run stops at its first file",
    (True, True): "names every file alike: without {{ run_id }} and {{ part }}, the next run (or a "
    "second batch) stops at a file that exists",
}


def _switched_off(active: Any) -> bool:
    """`active` as the task model reads it: `0`, `"no"` or `"false"` switch a task off as
    `false` does (a value the model refuses is reported there, not here)."""
    try:
        return _BOOL.validate_python(active) is False
    except ValidationError:
        return False


def _triggers(doc: Document) -> list[tuple[int, str]]:
    """(index, job reference) of each `spec.after` entry a Job document states."""
    spec = doc.data.get("spec")
    after = spec.get("after") if doc.data.get("kind") == "Job" and isinstance(spec, dict) else None
    if not isinstance(after, list):
        return []
    return [
        (i, t["job"]) for i, t in enumerate(after) if isinstance(t, dict) and isinstance(t.get("job"), str)
    ]


def _cycle_from(
    job: tuple[str, str],
    edges: dict[tuple[str, str], list[tuple[str, str]]],
    path: list[tuple[str, str]],
    done: set[tuple[str, str]],
) -> list[tuple[str, str]] | None:
    """A depth-first search: the cycle reachable from `job` (first node repeated last), if any."""
    if job in path:
        return path[path.index(job) :] + [job]
    if job in done:
        return None
    path.append(job)
    for upstream in edges.get(job, []):
        cycle = _cycle_from(upstream, edges, path, done)
        if cycle:
            return cycle
    path.pop()
    done.add(job)
    return None


def _trigger_problems(docs: list[Document], jobs: set[tuple[str, str]]) -> list[Problem]:
    """Triggers name jobs that exist, and never form a cycle (a job that, through its
    triggers, would fire itself forever)."""
    problems: list[Problem] = []
    follows: dict[tuple[str, str], list[tuple[tuple[str, str], Document, int]]] = {}
    for doc in docs:
        me = _raw_key(doc)
        for i, ref in _triggers(doc):
            upstream = resolve_reference(ref, me[0], jobs)
            if upstream is None:
                problems.append(
                    MissingName(
                        doc.locate(("spec", "after", i, "job")),
                        f"job {ref!r} does not exist",
                        "a trigger names a job defined in jobs.d/",
                    )
                )
            elif me[1]:
                follows.setdefault(me, []).append((upstream, doc, i))
    done: set[tuple[str, str]] = set()
    for start in sorted(follows):
        cycle = _cycle_from(start, {k: [u for u, _, _ in v] for k, v in follows.items()}, [], done)
        if cycle:
            first, second = cycle[0], cycle[1]
            _, doc, i = next(entry for entry in follows[first] if entry[0] == second)
            names = " -> ".join(f"{ns}/{name}" for ns, name in reversed(cycle))
            problems.append(
                Problem(
                    doc.locate(("spec", "after", i, "job")),
                    f"triggers form a cycle: {names}",
                    "a job cannot fire itself, directly or through other jobs",
                )
            )
            done.update(cycle)
    return problems


def _step_problems(docs: list[Document], connections: Mapping[tuple[str, str], str]) -> list[Problem]:
    """A writer's source names a reader job that exists, each of its tasks a task of that
    reader, no two the same; a reader's `change_log.connection` is a files connection."""
    problems: list[Problem] = []
    jobs = {_raw_key(doc): doc for doc in docs if doc.data.get("kind") == "Job" and _raw_key(doc)[1]}
    for doc in docs:
        spec = doc.data.get("spec")
        if doc.data.get("kind") != "Job" or not isinstance(spec, dict):
            continue
        namespace = _raw_key(doc)[0]
        options = spec.get("change_log")
        ref = options.get("connection") if isinstance(options, dict) else None
        if isinstance(ref, str):
            key = resolve_reference(ref, namespace, connections.keys())
            if key is None:
                problems.append(
                    MissingName(
                        doc.locate(("spec", "change_log", "connection")),
                        f"connection {ref!r} does not exist",
                        "define a files connection in connections.d/",
                    )
                )
            elif connections[key] != "files":
                problems.append(
                    Problem(
                        doc.locate(("spec", "change_log", "connection")),
                        f"connection {ref!r} is of type {connections[key]!r}: change logs are kept in a "
                        "'files' connection's folder",
                    )
                )
        source = spec.get("source")
        if not is_writer(spec) or not isinstance(source.get("job"), str):
            continue
        name = source["job"]
        key = resolve_reference(name, namespace, jobs.keys())
        where = doc.locate(("spec", "source", "job"))
        if key is None:
            problems.append(
                MissingName(where, f"job {name!r} does not exist", "a writer's source is a reader job")
            )
            continue
        reader_spec = jobs[key].data.get("spec")
        if not isinstance(reader_spec, dict) or not keeps_change_logs(reader_spec):
            problems.append(
                Problem(
                    where,
                    f"job {name!r} keeps no change logs: it has a target and no change_log, or is a writer",
                    "a writer's source is a reader (a job with a source and no target) or has change_log",
                )
            )
            continue
        reader_tasks = reader_spec.get("tasks") if isinstance(reader_spec.get("tasks"), list) else []
        tasks = spec.get("tasks") if isinstance(spec.get("tasks"), list) else []
        taken: dict[str, int] = {}
        for i, task in enumerate(tasks):
            read = task.get("read") if isinstance(task, dict) else None
            wanted = read.get("table") if isinstance(read, dict) else None
            if not isinstance(wanted, str):
                continue
            found = reader_task(reader_tasks, wanted)
            at = doc.locate(("spec", "tasks", i, "read", "table"))
            if found is None:
                names = ", ".join(
                    repr(t.get("name")) for t in reader_tasks if isinstance(t, dict) and t.get("name")
                )
                problems.append(
                    Problem(
                        at,
                        f"job {name!r} has no task {wanted!r} (by name or table)",
                        f"its tasks: {names or 'none'}",
                    )
                )
            elif found.get("name") in taken:
                problems.append(
                    Problem(
                        at,
                        f"tasks[{taken[found['name']]}] applies task {found.get('name')!r} of job {name!r} "
                        "already: a writer applies each of its reader's tasks once",
                    )
                )
            else:
                taken[str(found.get("name"))] = i
    return problems


def _raw_key(doc: Document) -> tuple[str, str]:
    """(namespace, name) as a document states them, before validation ("" when unnamed)."""
    meta = doc.data.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    return namespace_of(meta.get("namespace"), doc), name if isinstance(name, str) else ""


def namespace_of(stated: object, doc: Document) -> str:
    """`metadata.namespace`, else the sub-folder the file is in, else 'default'."""
    return str(stated or doc.folder_namespace or DEFAULT_NAMESPACE)


def _task_name_problems(spec: JobSpec, doc: Document) -> list[Problem]:
    seen: set[str] = set()
    problems = []
    for i, name in enumerate(spec.task_names()):
        if name in seen:
            problems.append(
                Problem(doc.locate(("spec", "tasks", i, "name")), f"two tasks are named {name!r}")
            )
        seen.add(name)
    return problems


def check_document(
    data: dict[str, Any],
    where: str,
    connection_types: Mapping[str, type[ConnectionSpec]],
    base_dir: Path | None = None,
    *,
    task_models: Mapping[str, TaskModels],
    job_types: Mapping[str, type[JobSpec]],
    ends: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Problems of one canonical document from outside the folder (a saved plan's, an ad-hoc
    job's). A job's tasks are checked against its connections' kinds when `ends` gives them
    (`source`/`target` -> connection type)."""
    doc = Document(where, 0, data, None, positions={(): (0, 0)}, relpath=where)
    return _validate_document(doc, connection_types, base_dir, job_types, task_models, ends or {})[1]

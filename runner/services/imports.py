"""`runner import datazen|cdata FILE…`: the seed products' job definitions written as runner
YAML in a definitions folder, what could not be mapped, and whether the folder validates
with them (the import does not apply anything)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import DefinitionsInvalid, Problem, RunnerError
from runner.imports import cdata, datazen
from runner.imports.common import write
from runner.services.definitions import check
from runner.workspace import Workspace

SYSTEMS = ("datazen", "cdata")


@dataclass
class ImportResult:
    written: list[Path]
    jobs: list[str]
    report: list[str]
    problems: list[Problem] = field(default_factory=list)  # of the output folder, after writing

    @property
    def valid(self) -> bool:
        return not self.problems


def parse_connections(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` options -> {KEY: VALUE} (VALUE: a runner connection name, or a URL).

    Raises:
        RunnerError: one has no `=`.
    """
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise RunnerError(f"--connection {pair!r}: give KEY=NAME or KEY=URL")
        found[key.strip()] = value.strip()
    return found


def import_jobs(
    system: str,
    files: list[Path],
    out: Path,
    connections: list[str] | None = None,
    source: str | None = None,
    target: str | None = None,
    force: bool = False,
) -> ImportResult:
    """Import `files` of `system` into `out` (`jobs.d/`, `connections.d/`), then validate `out`.

    Raises:
        ImportFailed: a file is not JSON (with its line and column) or holds no job.
    """
    mapped = parse_connections(connections or [])
    if system == "datazen":
        imported = datazen.import_files(files, mapped)
    elif system == "cdata":
        imported = cdata.import_files(files, mapped, source, target)
    else:
        raise RunnerError(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")
    write(imported, out, force)
    problems: list[Problem] = []
    if imported.written:
        try:
            check(Workspace(out))
        except DefinitionsInvalid as exc:
            problems = exc.problems
    return ImportResult(imported.written, imported.jobs, imported.report.lines, problems)

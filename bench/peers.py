"""Sling and dlt beside runner in the benchmark (issue 21), each into a target of its own.

Both run from the peers' virtual environment (`bench/.peers`, which `make bench-peers` creates;
`BENCH_PEERS_VENV` names another), each as a subprocess under /usr/bin/time, with every file
they write in a folder of their own inside the harness's temporary folder: `HOME` points there
too, so nothing is written to the user's home.

- **Sling 1.4.11**: the Go binary the `sling-linux-amd64` wheel ships, run directly (the `sling`
  package's wrapper would try to download one into ~/.sling). A replication file
  (`replication.yaml`) names the connections, which are environment variables holding URLs;
  `SLING_HOME_DIR` and `SLING_TEMP_DIR` are in the folder. Full copy: `mode: full-refresh`.
  Incremental: `mode: incremental`, `primary_key: [id]`, `update_key: updated_at` (Sling reads
  the target's largest `updated_at` and merges the newer source rows on `id`).
- **dlt with the pyarrow backend**: `bench/dlt_events.py` run in the folder, whose
  `.dlt/config.toml` and `.dlt/secrets.toml` name the source and the target; the pipeline's
  working folder is in the folder too. Full copy: `write_disposition="replace"`; incremental:
  `dlt.sources.incremental("updated_at")` with `write_disposition="merge"` on `id`. dlt's
  PostgreSQL destination insists on a password: it gets a placeholder, which trust
  authentication ignores.

Neither propagates deletes: the rows a round deletes from the source stay in their targets, and
compare.py counts them as extra rows.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DLT_SCRIPT = BENCH / "dlt_events.py"
TABLE = "events"


@dataclass(frozen=True)
class Harness:
    """What the peers borrow from bench/run.py: its process runner (own process group, killed on
    any interruption), `psql`, the child environment, the services and the per-command timeout."""

    run: Callable[..., subprocess.CompletedProcess[str]]
    psql: Callable[..., str]
    env: dict[str, str]
    pg: tuple[str, str, str]  # host, port, user
    time: str
    timeout: float
    venv: Path

    @property
    def sling(self) -> Path:
        return sling_binary(self.venv) or Path("sling")

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def sling_binary(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages/sling_linux_amd64/bin/sling-linux-amd64"))
    return found[0] if found else None


def missing(venv: Path) -> str | None:
    """Why the peers cannot run from `venv`, or None."""
    if sling_binary(venv) is None or not any(venv.glob("lib/python3*/site-packages/dlt/__init__.py")):
        return f"the peers' environment {venv} lacks Sling or dlt: `make bench-peers` installs them"
    return None


class Peer:
    """One tool into its own PostgreSQL target, full copy or incremental."""

    name = ""

    def __init__(self, h: Harness, folder: Path, src_db: str, dst_db: str, incremental: bool) -> None:
        self.h, self.folder, self.src_db, self.dst_db = h, folder, src_db, dst_db
        self.incremental = incremental
        self.home = folder / "home"
        self.home.mkdir(parents=True)
        self.configure()

    def url(self, db: str, scheme: str = "postgresql", password: str | None = None) -> str:
        host, port, user = self.h.pg
        auth = f"{user}:{password}" if password else user
        return f"{scheme}://{auth}@{host}:{port}/{db}"

    def configure(self) -> None:
        raise NotImplementedError

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return self.h.env | {"HOME": str(self.home), "TMPDIR": str(self.home)}

    def reset(self) -> None:
        """Leave the target as before the tool's first run (a full copy's repeats each start there)."""
        raise NotImplementedError

    def step(self, what: str) -> dict[str, Any]:
        """One timed run: wall seconds from fork to exit and peak RSS."""
        rss = self.folder / "time.out"
        cmd = [self.h.time, "-f", "%M", "-o", str(rss), *self.command()]
        t0 = time.perf_counter()
        self.h.run(cmd, what=f"{self.name} ({what})", timeout=self.h.timeout, env=self.env(), cwd=self.folder)
        seconds = time.perf_counter() - t0
        kib = int(rss.read_text().split()[-1])
        rss.unlink()
        return {"seconds": round(seconds, 3), "rss_mb": round(kib / 1024, 1)}


class Sling(Peer):
    name = "sling"

    def configure(self) -> None:
        stream = (
            "    mode: incremental\n    primary_key: [id]\n    update_key: updated_at\n"
            if self.incremental
            else "    mode: full-refresh\n"
        )
        (self.folder / "replication.yaml").write_text(
            "source: BENCH_SRC\ntarget: BENCH_DST\n"
            f"streams:\n  public.{TABLE}:\n    object: public.{TABLE}\n{stream}"
        )
        (self.folder / "tmp").mkdir()

    def command(self) -> list[str]:
        return [str(self.h.sling), "run", "-r", str(self.folder / "replication.yaml")]

    def env(self) -> dict[str, str]:
        return super().env() | {
            "SLING_HOME_DIR": str(self.home),
            "SLING_TEMP_DIR": str(self.folder / "tmp"),
            "BENCH_SRC": self.url(self.src_db) + "?sslmode=disable",
            "BENCH_DST": self.url(self.dst_db) + "?sslmode=disable",
        }

    def reset(self) -> None:
        self.h.psql(f"DROP TABLE IF EXISTS {TABLE}, {TABLE}_tmp", db=self.dst_db)


class Dlt(Peer):
    name = "dlt"

    def configure(self) -> None:
        dot = self.folder / ".dlt"
        dot.mkdir()
        (dot / "config.toml").write_text('[runtime]\ndlthub_telemetry = false\nlog_level = "WARNING"\n')
        src = self.url(self.src_db, scheme="postgresql+psycopg2")
        dst = self.url(self.dst_db, password="trust")  # dlt requires one; trust auth ignores it
        (dot / "secrets.toml").write_text(
            f'[sources.sql_database]\ncredentials = "{src}"\n\n'
            f'[destination.postgres]\ncredentials = "{dst}"\n'
        )

    def command(self) -> list[str]:
        mode = "merge" if self.incremental else "replace"
        return [str(self.h.python), str(DLT_SCRIPT), mode, str(self.folder / "pipelines")]

    def env(self) -> dict[str, str]:
        data = str(self.folder / "data")
        return super().env() | {"DLT_DATA_DIR": data, "RUNTIME__DLTHUB_TELEMETRY": "false"}

    def reset(self) -> None:
        """dlt keeps its schema and state in the target (`_dlt_*` tables) and in the pipeline's
        folder: both go, so each repeat is a first load that creates its table, like runner's."""
        self.h.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public", db=self.dst_db)
        shutil.rmtree(self.folder / "pipelines", ignore_errors=True)


PEERS: dict[str, type[Peer]] = {"sling": Sling, "dlt": Dlt}


def summarise(steps: list[dict[str, Any]], floor_s: float) -> dict[str, Any]:
    """Median seconds of `steps`, its ratio to the floor of the same run, the highest peak RSS."""
    ordered = sorted(s["seconds"] for s in steps)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {
        "median_s": round(median, 3),
        "runs_s": [s["seconds"] for s in steps],
        "ratio_to_floor": round(median / floor_s, 2),
        "rss_mb": max(s["rss_mb"] for s in steps),
    }

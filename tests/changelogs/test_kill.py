"""A writer killed (kill -9, in a process of its own) while it applies a change log, and a reader
killed between its file's rename and its index entry: the next runs leave the target equal to
the source, nothing lost and nothing applied twice (the writer's position is stored only after
its target committed; a file the index does not list is never read, and is swept)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import services
from tests.changelogs.helpers import READER, change_shop, make_shop, rows, run, sqlite_url, writer
from tests.conftest import REPO


def kill_at(root: Path, job: str, point: str, tmp_path: Path) -> None:
    """Run `job` in a process of its own and kill -9 it once it reaches checkpoint `point`."""
    flag = tmp_path / f"paused-{job}-{point}"
    flag.unlink(missing_ok=True)
    env = {**os.environ, "RUNNER_PAUSE_AT": point, "RUNNER_PAUSE_FILE": str(flag), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "--dir", str(root), "run", job],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not flag.exists():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before reaching {point}: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run never reached {point}")
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


@pytest.fixture
def shop(project):
    make_shop(project.root / "src.db", customers=40)
    project.connection("src", "sqlite", "sqlite:///src.db")
    project.connection("lite", "sqlite", "sqlite:///lite.db")
    project.write("jobs.d/reader.yaml", READER.format(options=""))
    project.write("jobs.d/writer.yaml", writer("w", "lite", batch_size=7))
    services.apply(project.ws)
    return project


def _equal(project) -> None:
    for table in ("customers", "orders"):
        assert rows(sqlite_url(project.root / "lite.db"), table) == rows(
            sqlite_url(project.root / "src.db"), table
        ), table


@pytest.mark.parametrize("point", ["read", "write", "committed", "stored"])
def test_a_writer_killed_while_applying_then_run_again_ends_equal(shop, tmp_path, point):
    run(shop.ws, "reader")
    run(shop.ws, "w")
    for round_ in (1, 2, 3):
        change_shop(shop.root / "src.db", round_)
        run(shop.ws, "reader")
    kill_at(shop.root, "w", point, tmp_path)  # mid-way through the three runs' change logs
    run(shop.ws, "w")
    _equal(shop)
    again = run(shop.ws, "w")
    assert all(t["rows_read"] == 0 for t in again["tasks"])


def test_a_reader_killed_before_indexing_its_file_loses_nothing(shop, tmp_path):
    run(shop.ws, "reader")
    run(shop.ws, "w")
    change_shop(shop.root / "src.db", 1)
    kill_at(shop.root, "reader", "changelog_renamed", tmp_path)
    folder = shop.root / ".runner/changelogs/default/reader/customers"
    orphans = {p.name for p in folder.iterdir()} - {
        Path(e["file"]).name for e in services.changes(shop.ws, "reader")["change_logs"]
    }
    assert len(orphans) == 1  # on disk, whole, but in no index: no writer reads it
    run(shop.ws, "w")
    run(shop.ws, "reader")  # writes the changes again; the file no index lists is swept
    assert not orphans & {p.name for p in folder.iterdir()}
    run(shop.ws, "w")
    _equal(shop)

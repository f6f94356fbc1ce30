"""A history folder on a full (or nearly full) disk: the daemon refuses to start, a run
refuses to begin, and a run that fills the disk still records how it ended and what it
committed. The disk is a small tmpfs, so these tests need root to mount it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import services
from runner.history import files as history
from tests.daemon.conftest import job_yaml, make_source, rows_of, runner_cli


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 KB tmpfs, unmounted afterwards."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def free_bytes(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


def test_the_daemon_refuses_to_start_on_a_disk_without_room(daemon_project, small_disk):
    p = daemon_project
    d = p.start(env={"RUNNER_HISTORY": str(small_disk / "history")})
    assert d.proc.wait(30) == 1
    log = d.log_path.read_text()
    assert f"the history folder {small_disk / 'history'} has " in log and "KB free" in log
    assert "Traceback" not in log


def test_a_run_refuses_to_begin_on_a_disk_without_room(daemon_project, small_disk):
    p = daemon_project
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    services.apply(p.ws)
    result = runner_cli(p.root, "--history", str(small_disk / "history"), "run", "sync")
    assert result.returncode == 1
    assert f"error: the history folder {small_disk / 'history'} has " in result.stderr
    assert "Traceback" not in result.stderr
    assert not (p.root / "dst.db").exists() or not rows_of(p.root / "dst.db")  # nothing was copied


def fill(folder: Path) -> None:
    """Take every free byte of the disk, as another process writing there would."""
    with (folder / "filler").open("ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def test_a_run_that_fills_the_disk_records_what_it_committed(daemon_project, small_disk, monkeypatch):
    p = daemon_project
    make_source(p.root, rows=2000)
    p.write("jobs.d/sync.yaml", job_yaml("sync"))
    monkeypatch.setattr(history, "MIN_FREE", 64 << 10)  # the 160 KB disk is room enough to start
    ws = services.Workspace(p.root, history_dir=small_disk)
    services.apply(ws)

    def progress(task: str, rows_read: int) -> None:
        if rows_read == 1000:  # half-way, the disk fills up
            fill(small_disk)

    record = services.run(ws, "sync", progress=progress)
    assert record["status"] == "succeeded" and record["rows_written"] == 2000, record["error"]
    assert record["log_error"] == "the run log is incomplete: No space left on device"
    assert len(rows_of(p.root / "dst.db")) == 2000
    on_disk = services.run_record(ws, record["run_id"])
    assert on_disk["status"] == "succeeded" and on_disk["rows_written"] == 2000
    assert on_disk["tasks"][0]["inserted"] == 2000
    assert not list(small_disk.glob("**/.*.reserve"))
    ws.close()

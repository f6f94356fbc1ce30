"""A SQLite state store in WAL mode: switched by the first process that writes it (never by a
reader), every commit synced, shared by processes that hold it open together, kept whole by a
process killed with commits only in its log, and what SQLite no longer notices in that mode (a
header overwritten, a write into a file deleted or replaced) refused as before."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from runner.errors import StateUnavailable
from runner.state.store import StateReader, StateStore


def journal_mode(path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_a_store_is_in_wal_mode_and_every_commit_is_synced(tmp_path):
    db = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{db}")
    assert journal_mode(db) == "wal"
    with store.db.write() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    store.close()


def test_a_store_in_a_rollback_journal_is_switched_by_a_writer_not_a_reader(tmp_path):
    """A store an older runner made: `status` (a reader) leaves it as it is; the first command
    that writes switches it, and its data is all there."""
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    store = StateStore(url)
    store.switches.set_setting("note", "kept", "test")
    store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    reader = StateReader(url)
    assert reader.switches.setting("note")[0] == "kept"
    assert journal_mode(db) == "delete"
    reader.close()
    store = StateStore(url)
    assert journal_mode(db) == "wal"
    assert store.switches.setting("note")[0] == "kept"
    store.close()


def test_processes_holding_the_store_open_see_each_others_commits(tmp_path):
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    store = StateStore(url)
    store.switches.set_setting("from", "this process", "test")  # in the log, not yet checkpointed
    other = python(
        f"""
        from runner.state.store import StateStore
        store = StateStore({url!r})
        print(store.switches.setting("from")[0])
        store.switches.set_setting("back", "the other process", "test")
        """
    )
    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() == "this process"
    assert store.switches.setting("back")[0] == "the other process"
    for n in range(3):  # each closes as if it were the store's last user: this one still is one
        store.switches.set_setting("here", n, "test")
        later = python(
            f"""
            from runner.state.store import StateStore
            store = StateStore({url!r})
            assert store.switches.setting("here")[0] == {n}
            store.switches.set_setting("there", {n}, "test")
            store.close()
            """
        )
        assert later.returncode == 0, later.stderr
        assert store.switches.setting("there")[0] == n
    store.close()


def test_commits_in_the_log_of_a_process_killed_are_kept(tmp_path):
    """kill -9 with commits in the `-wal` file only (never checkpointed into the store): the next
    process that opens the store finds them."""
    db = tmp_path / "state.db"
    url = f"sqlite:///{db}"
    StateStore(url).close()
    killed = python(
        f"""
        import os, signal
        from runner.state.store import StateStore
        store = StateStore({url!r})
        for n in range(50):
            store.switches.set_setting(f"key{{n}}", n, "test")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "state.db-wal").stat().st_size > 0  # the commits are in the log
    store = StateStore(url)
    assert [store.switches.setting(f"key{n}")[0] for n in range(50)] == list(range(50))
    store.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_write_into_a_store_file_deleted_or_replaced_is_refused(tmp_path, how):
    """In WAL mode SQLite would take the write into the old file's log, which no one reads
    again: it is refused, as a rollback journal's SQLite refused it."""
    db = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{db}")
    store.switches.set_setting("before", 1, "test")
    if how == "deleted":
        db.unlink()
    else:
        shutil.copy(db, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", db)
    with pytest.raises(StateUnavailable, match=f"the state store cannot be used: .*state.db was {how}"):
        store.switches.set_setting("after", 2, "test")
    assert store.db.check() is not None
    store.close()


def test_a_header_overwritten_in_place_fails_reads_and_writes(tmp_path):
    db = tmp_path / "state.db"
    store = StateStore(f"sqlite:///{db}")
    store.switches.set_setting("before", 1, "test")  # its pages are in the log: reads need not touch the file
    with db.open("r+b") as f:
        f.write(b"garbage" * 16)
    with pytest.raises(StateUnavailable, match="the state store cannot be used: file is not a database"):
        store.switches.setting("before")
    with pytest.raises(StateUnavailable, match="the state store cannot be used: file is not a database"):
        store.switches.set_setting("after", 2, "test")
    store.close()

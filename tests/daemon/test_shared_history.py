"""The members of a cluster starting together (a daemon and its workers at once) agree on one
history folder id, in the state store and in the folder, and none fails on another's write:
each used to see no id, write its own into the folder and insert it into the store, and all
but one died on the store's unique key (seen as a daemon exiting at a broker-restart test's
start)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runner import services
from runner.services.cluster import HISTORY_ID, HISTORY_ID_FILE


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    url = request.getfixturevalue("pg_url")
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.mark.parametrize("attempt", range(10))  # a race: the old code failed 4 of these 20
def test_members_starting_together_agree_on_one_history_id(tmp_path, state_url, attempt):
    history = tmp_path / "shared-history"
    services.Workspace(tmp_path, state_url, history).store(create=True)
    members, gate, failures, lock = 8, threading.Barrier(8), [], threading.Lock()

    def start() -> None:
        ws = services.Workspace(tmp_path, state_url, history)  # as a process of its own opens it
        gate.wait()
        try:
            services.check_shared_history(ws)
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(members)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    on_disk = (history / HISTORY_ID_FILE).read_text(encoding="utf-8").strip()
    stored = services.Workspace(tmp_path, state_url, history).store().switches.setting(HISTORY_ID)
    assert stored is not None and stored[0] == on_disk and len(on_disk) == 32
    assert sorted(p.name for p in history.iterdir()) == [HISTORY_ID_FILE]  # no member's own file left
    services.check_shared_history(services.Workspace(tmp_path, state_url, history))  # a later member agrees

"""Named points in a run where a test can stop or slow the process.

`RUNNER_PAUSE_AT=<point>` makes the run create the file `RUNNER_PAUSE_FILE` when it reaches
that point and then wait forever (`<point>#<n>`: the n-th time it reaches it, so a test can
stop a run with some batches committed and recorded); the crash-safety tests kill it there
and check that the next run leaves the target equal to the source. `RUNNER_BATCH_DELAY=<seconds>` makes every
batch read take that much longer, so the daemon's tests can cancel, stop or kill a run that
is going on. Unset (always, outside those tests), a checkpoint costs two dictionary lookups.

Points: `read` (a batch read, nothing of it written), `write` (a batch staged, not committed),
`committed` (the target committed a batch, its pointer or digests not yet recorded), `window`
(a backfill's window read and its end recorded as the pointer, the next window not begun),
`emptied` (a task's table truncated or dropped before its run, nothing loaded yet), `stored`
(a cdc task's log position recorded, the source's log not yet told: `runner.changes.cdc`; a
writer's position in its reader's change logs recorded), `file written` (a files target's
file, or a change-log file, complete under its hidden temporary name, not yet renamed),
`changelog_renamed` (a change-log file synced and renamed, not yet indexed:
`runner.connectors.changelog_files`), `target_committed` (a job with a target and change logs:
the target committed, its change log not indexed yet: `runner.connectors.changelog_kept`),
`reshaped` (a cdc task's target altered to the table's new columns, nothing in them written).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

_reached: Counter[str] = Counter()


def checkpoint(point: str) -> None:
    if point == "read" and (delay := os.environ.get("RUNNER_BATCH_DELAY")):
        time.sleep(float(delay))
    pause = os.environ.get("RUNNER_PAUSE_AT")
    if pause is None:
        return
    name, _, nth = pause.partition("#")
    if name != point:
        return
    _reached[point] += 1
    if _reached[point] < int(nth or 1):
        return
    Path(os.environ["RUNNER_PAUSE_FILE"]).write_text(point)
    while True:
        time.sleep(60)

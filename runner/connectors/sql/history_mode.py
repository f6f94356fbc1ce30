"""History mode (SCD type 2) in a SQL target: the table keeps every version of a row.

A version is current while its `valid_to` is NULL (its `current` flag says the same for
readers); the table's primary key is the task's keys plus `valid_from`. A run has one
timestamp (`History.at`, the run's start): every version it opens starts then, every version
it closes ends then. A merge of the staged rows is two statements in the writer's transaction:

1. close: the current versions whose values differ from their staged row get `valid_to` and
   `current = false`;
2. open: every staged row whose key has no current version (the ones just closed, and new
   keys) is inserted as a current version.

So an unchanged row is untouched, and one current version per key holds by construction: a
version is opened only for a key without one, in the transaction that closed the old one. A
run killed after a commit and run again reads the committed rows once more, finds them equal
to their current versions and opens nothing (no duplicate version). A delete closes the
current version (`close`). Everything that compares the target with the source (key buckets,
keys found, in-target row hashes) looks at current versions only (`WriterState.live_sql`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.connectors.base import STAGE, MergeCounts
from runner.errors import TerminalError
from runner.streams.types import Column, ColumnType

if TYPE_CHECKING:
    from runner.connectors.base import History
    from runner.connectors.sql.writer import SqlWriter

TIMESTAMP = ColumnType("timestamp")


def columns(history: History | None) -> list[Column]:
    """The version columns a history table has beyond the source's."""
    if history is None:
        return []
    return [
        Column(history.valid_from, TIMESTAMP),
        Column(history.valid_to, TIMESTAMP),
        Column(history.current, ColumnType("boolean")),
    ]


def primary_key(keys: list[str], history: History | None) -> list[str]:
    """The table's primary key: the keys, plus `valid_from` in history mode."""
    return [*keys, history.valid_from] if history is not None else keys


def check_table(w: SqlWriter) -> None:
    """Refuse a table that existed before without the version columns (made by a run without
    history mode: its primary key is the keys alone, so it cannot hold two versions of a row)."""
    history = w.history
    if history is None:
        return
    missing = [name for name in history.names() if name not in w.target_types]
    if missing:
        raise TerminalError(
            f"the target table {w.table} has no column {', '.join(map(repr, missing))}: it was made "
            "without write.history, and its primary key cannot hold two versions of a row; drop it, "
            "or run once with --recreate"
        )


def at(w: SqlWriter) -> object:
    """The run's timestamp as the driver takes it for a timestamp column."""
    assert w.history is not None
    return w.c.batch_encoder([Column(w.history.valid_from, TIMESTAMP)])([(w.history.at,)])[0][0]


def merge(w: SqlWriter, only: str = "", params: tuple = ()) -> MergeCounts:
    """Close the current versions that differ from their staged rows, open a version for every
    staged row whose key has none. `only` (with `params`) limits both to one staged key (the
    diagnosis of a rejected row)."""
    history = w.history
    assert history is not None
    c, q, t, s = w.c, w.q, "t", "s"
    counts = MergeCounts()
    stamp = at(w)
    names = ", ".join(w.names)
    version = f"{names}, {q(history.valid_from)}, {q(history.valid_to)}, {q(history.current)}"
    opened = f"{c.mark}, NULL, TRUE"
    if w.empty_at_start and not only:
        w.cursor.execute(
            f"INSERT INTO {w.target} ({version}) SELECT {names}, {opened} FROM {q(STAGE)}", (stamp,)
        )
        counts.inserted = max(w.cursor.rowcount, 0)
        return counts
    on = " AND ".join(f"{t}.{q(k)} = {s}.{q(k)}" for k in w.keys)
    current = f"{t}.{q(history.valid_to)} IS NULL"
    values = [col for col in w.columns if col.name not in w.keys]
    closed = 0
    if values:
        differs = [c.distinct_sql(f"{t}.{q(col.name)}", f"{s}.{q(col.name)}", col.type) for col in values]
        sets = [(q(history.valid_to), c.mark), (q(history.current), "FALSE")]
        where = f"({' OR '.join(differs)}){only}"
        w.cursor.execute(
            c.update_join_sql(w.target, t, q(STAGE), s, f"{on} AND {current}", sets, where), (stamp, *params)
        )
        closed = max(w.cursor.rowcount, 0)
    picked = ", ".join(f"{s}.{n}" for n in w.names)
    first_key = f"{t}.{q(w.keys[0])}"
    w.cursor.execute(
        f"INSERT INTO {w.target} ({version}) SELECT {picked}, {opened} FROM {q(STAGE)} {s} "
        f"LEFT JOIN {w.target} {t} ON {on} AND {current} WHERE {first_key} IS NULL{only}",
        (stamp, *params),
    )
    added = max(w.cursor.rowcount, 0)
    counts.updated = closed  # each closed version was opened again with the new values
    counts.inserted = added - closed
    return counts


def close(w: SqlWriter, condition: str, params: tuple = ()) -> int:
    """Close the current versions where `condition` holds (a delete in history mode)."""
    history = w.history
    assert history is not None
    q = w.q
    w.cursor.execute(
        f"UPDATE {w.target} SET {q(history.valid_to)} = {w.c.mark}, {q(history.current)} = FALSE "
        f"WHERE {q(history.valid_to)} IS NULL AND {condition}",
        (at(w), *params),
    )
    return max(w.cursor.rowcount, 0)

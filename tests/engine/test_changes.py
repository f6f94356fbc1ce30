"""Change detection across runs: full (with keys) and watermark, each delete mode, over
pairs of dialects. A source table goes through inserts, updates, deletes, NULLs, unicode,
a row at the pointer's boundary and a late row; after every run the target equals the
source row by row (or differs exactly as `ignore`/`soft` say), and a run with nothing to do
writes nothing and counts nothing twice."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest

from runner import services
from runner.changes import deletes as bucket_deletes
from runner.changes.task import RunOptions
from runner.connectors.sql.buckets import KeyBucketQueries
from runner.connectors.sql.writer import SqlWriter
from runner.errors import RunnerError
from tests.engine.conftest import Database

PAIRS = [
    ("sqlite", "sqlite"),
    ("postgresql", "postgresql"),
    ("mariadb", "mariadb"),
    ("sqlite", "postgresql"),
    ("postgresql", "mariadb"),
    ("mariadb", "sqlite"),
]
DDL = {
    "sqlite": "CREATE TABLE src_items (id INTEGER PRIMARY KEY, name VARCHAR(40), price NUMERIC(12,2), "
    "updated_at TIMESTAMP)",
    "postgresql": "CREATE TABLE src_items (id integer PRIMARY KEY, name varchar(40), price numeric(12,2), "
    "updated_at timestamp(6))",
    "mariadb": "CREATE TABLE src_items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(12,2), "
    "updated_at DATETIME(6)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
}
T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123456)
NAMES = ["Zürich", "東京", "🎁 gift", "", "O'Brien", None, "naïve"]


def ts(value: Any) -> Any:
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def canonical(row: tuple) -> tuple:
    id_, name, price, updated = row[:4]
    return (
        int(id_),
        name,
        None if price is None else Decimal(str(price)).quantize(Decimal("0.01")),
        ts(updated),
    )


class Source:
    def __init__(self, db: Database):
        self.db = db
        with db.cursor() as c:
            c.execute(DDL[db.dialect])

    def _value(self, v: Any) -> Any:
        if self.db.dialect == "sqlite" and isinstance(v, dt.datetime):
            return v.isoformat(sep=" ", timespec="microseconds")
        if self.db.dialect == "sqlite" and isinstance(v, Decimal):
            return str(v)
        return v

    def upsert(self, rows: list[tuple]) -> None:
        m = self.db.mark
        with self.db.cursor() as c:
            for row in rows:
                c.execute(f"DELETE FROM src_items WHERE id = {m}", (row[0],))
                c.execute(
                    f"INSERT INTO src_items VALUES ({m}, {m}, {m}, {m})", tuple(self._value(v) for v in row)
                )

    def delete(self, ids: list[int]) -> None:
        with self.db.cursor() as c:
            for i in ids:
                c.execute(f"DELETE FROM src_items WHERE id = {self.db.mark}", (i,))

    def rows(self) -> list[tuple]:
        return sorted(
            canonical(r) for r in self.db.fetch("SELECT id, name, price, updated_at FROM src_items")
        )


def target_rows(db: Database, soft: bool = False) -> list[tuple]:
    cols = "id, name, price, updated_at" + (", _deleted_at" if soft else "")
    return sorted(
        canonical(r) + ((r[4] is not None,) if soft else ())
        for r in db.fetch(f"SELECT {cols} FROM dst_items")
    )


def setup_job(
    project, source: Database, target: Database, strategy: str, deletes: str, extra: str = ""
) -> None:
    project.connection("src", source.dialect, source.url)
    project.connection("dst", target.dialect, target.url)
    changes = (
        "{strategy: watermark, column: updated_at" + extra + "}"
        if strategy == "watermark"
        else f"{{strategy: {strategy}}}"
    )
    project.job(
        "sync",
        "src",
        "dst",
        f"""
        - name: items
          read: {{table: src_items}}
          write: {{table: dst_items, keys: [id]}}
          changes: {changes}
          deletes: {deletes}
        """,
        extra="  batch_size: 4\n",
    )
    services.apply(project.ws)


def run(project, **options: Any) -> dict:
    record = services.run(project.ws, "sync", RunOptions(**options))
    assert record["status"] == "succeeded", record["error"]
    return record["tasks"][0]


@pytest.mark.parametrize("deletes", ["ignore", "propagate", "soft"])
@pytest.mark.parametrize("strategy", ["full", "watermark", "hash"])
@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_runs_keep_target_equal_to_source(project, make_database, src, dst, strategy, deletes):
    source = Source(make_database(src, "source"))
    target = make_database(dst, "target")
    initial = [
        (i, NAMES[i % len(NAMES)], Decimal(i * 10 + 1) / 100, T0 + dt.timedelta(seconds=i))
        for i in range(1, 11)
    ]
    source.upsert(initial)
    setup_job(project, source.db, target, strategy, deletes)

    first = run(project)
    assert (first["rows_read"], first["inserted"], first["updated"], first["deleted"]) == (10, 10, 0, 0)
    assert target_rows(target, deletes == "soft") == [
        r + ((False,) if deletes == "soft" else ()) for r in source.rows()
    ]
    if strategy == "watermark":
        assert first["pointer_after"]["value"].replace("T", " ").startswith("2026-03-01 12:00:10.123456")

    # the second round: 2 updates, 2 inserts (one at the pointer's exact value), 2 deletes, a NULL
    pointer = T0 + dt.timedelta(seconds=10)
    changed = [
        (3, "changed ✓", Decimal("99.99"), pointer + dt.timedelta(seconds=5)),
        (4, None, None, pointer + dt.timedelta(seconds=6)),
        (11, "new at the boundary", Decimal("1.00"), pointer),
        (12, "new", Decimal("-5.50"), pointer + dt.timedelta(seconds=7)),
        (13, "no timestamp", Decimal("0.01"), None),
    ]
    source.upsert(changed)
    source.delete([1, 2])
    before = target_rows(target, deletes == "soft")
    second = run(project)
    assert (second["inserted"], second["updated"]) == (3, 2)
    expected_deleted = 0 if deletes == "ignore" else 2
    assert second["deleted"] == expected_deleted
    now = target_rows(target, deletes == "soft")
    if deletes == "propagate":
        assert now == source.rows()
    elif deletes == "ignore":
        assert [r for r in now if r[0] not in (1, 2)] == source.rows()
        assert [r for r in now if r[0] in (1, 2)] == [r for r in before if r[0] in (1, 2)]
    else:
        assert [r[:4] for r in now if not r[4]] == source.rows()
        assert [(r[0], r[4]) for r in now if r[4]] == [(1, True), (2, True)]

    # a run with nothing new writes nothing, deletes nothing again, counts nothing twice
    third = run(project)
    assert (third["inserted"], third["updated"], third["deleted"]) == (0, 0, 0)
    if strategy == "watermark":
        # the row at the pointer (id 12) and the NULL row are read again, and found unchanged
        assert third["rows_read"] == third["unchanged"] == 2
        assert third["pointer_after"] == second["pointer_after"] == third["pointer_before"]
    else:
        assert third["unchanged"] == third["rows_read"] == 11
    assert target_rows(target, deletes == "soft") == now

    # a row that reappears is revived by a soft delete
    if deletes == "soft":
        source.upsert([(1, "back", Decimal("1.00"), pointer + dt.timedelta(seconds=20))])
        fourth = run(project)
        assert fourth["updated"] == 1
        assert [r for r in target_rows(target, True) if r[0] == 1] == [
            (1, "back", Decimal("1.00"), pointer + dt.timedelta(seconds=20), False)
        ]


@pytest.mark.parametrize(
    ("src", "dst"), [("sqlite", "sqlite"), ("postgresql", "mariadb"), ("mariadb", "postgresql")]
)
def test_watermark_lookback_picks_up_late_rows(project, make_database, src, dst):
    source = Source(make_database(src, "source"))
    target = make_database(dst, "target")
    source.upsert([(i, f"row {i}", Decimal("1.00"), T0 + dt.timedelta(minutes=i)) for i in range(1, 6)])
    setup_job(project, source.db, target, "watermark", "ignore", extra=", lookback: 10m")
    run(project)
    # committed late with an older value, 3 minutes behind the pointer
    source.upsert([(50, "late", Decimal("2.00"), T0 + dt.timedelta(minutes=2))])
    second = run(project)
    assert second["inserted"] == 1
    assert target_rows(target) == source.rows()


def test_watermark_pointer_keeps_microseconds_and_survives_resync(project, make_database):
    source = Source(make_database("postgresql", "source"))
    target = make_database("postgresql", "target")
    source.upsert(
        [(1, "a", Decimal("1.00"), T0), (2, "b", Decimal("1.00"), T0 + dt.timedelta(microseconds=1))]
    )
    setup_job(project, source.db, target, "watermark", "propagate")
    first = run(project)
    assert first["pointer_after"] == {"type": "datetime", "value": "2026-03-01T12:00:00.123457"}
    shown = services.pointer_show(project.ws, "sync")
    assert shown[0]["pointer"] == first["pointer_after"] and shown[0]["by"]
    again = run(project, resync=True)
    assert again["pointer_before"] is None and again["rows_read"] == 2 and again["unchanged"] == 2


def test_pointer_set_moves_the_next_read(project, make_database):
    source = Source(make_database("sqlite", "source"))
    target = make_database("sqlite", "target")
    source.upsert([(i, f"row {i}", Decimal("1.00"), T0 + dt.timedelta(days=i)) for i in range(1, 6)])
    setup_job(project, source.db, target, "watermark", "ignore")
    change = services.pointer_set(project.ws, "sync", "items", "2026-03-04 12:00:00.123456")
    assert change["new"] == {"type": "text", "value": "2026-03-04 12:00:00.123456"}
    first = run(project)
    assert first["rows_read"] == 3  # days 3 (at the pointer), 4 and 5
    assert [r[0] for r in target_rows(target)] == [3, 4, 5]
    assert first["pointer_after"]["value"] == "2026-03-06 12:00:00.123456"
    services.pointer_set(project.ws, "sync", "items", None)
    assert services.pointer_show(project.ws, "sync")[0]["pointer"] is None


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_pointer_set_refuses_text_that_is_not_a_time(project, make_database, dialect):
    source = Source(make_database(dialect, "source"))
    target = make_database(dialect, "target")
    source.upsert([(i, f"row {i}", Decimal("1.00"), T0 + dt.timedelta(days=i)) for i in range(1, 4)])
    setup_job(project, source.db, target, "watermark", "ignore")
    for bad in ("yesterday", "NaN", "2026-13-45"):
        with pytest.raises(RunnerError, match="is not a number or an ISO date or time"):
            services.pointer_set(project.ws, "sync", "items", bad)
    assert services.pointer_show(project.ws, "sync")[0]["pointer"] is None
    run(project)  # now the pointer is the column's own type (text of a time in SQLite)
    with pytest.raises(RunnerError, match="is not"):
        services.pointer_set(project.ws, "sync", "items", "yesterday")
    assert services.pointer_show(project.ws, "sync")[0]["pointer"]["value"].startswith("2026-03-04")
    assert run(project)["rows_read"] == 1  # the row at the pointer, nothing skipped


def test_dry_run_counts_and_writes_nothing(project, make_database):
    source = Source(make_database("postgresql", "source"))
    target = make_database("postgresql", "target")
    source.upsert([(i, "x", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in range(1, 6)])
    setup_job(project, source.db, target, "watermark", "propagate")
    run(project)
    source.upsert([(9, "new", Decimal("1.00"), T0 + dt.timedelta(hours=1))])
    source.delete([1])
    dry = run(project, dry_run=True)
    assert (dry["inserted"], dry["deleted"]) == (1, 1)
    assert [r[0] for r in target_rows(target)] == [1, 2, 3, 4, 5]
    assert services.pointer_show(project.ws, "sync")[0]["pointer"]["value"].endswith("12:00:05.123456")
    real = run(project)
    assert (real["inserted"], real["deleted"]) == (1, 1)


def test_limit_reads_at_most_n_rows_and_skips_deletes(project, make_database):
    source = Source(make_database("sqlite", "source"))
    target = make_database("sqlite", "target")
    source.upsert([(i, "x", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in range(1, 21)])
    setup_job(project, source.db, target, "full", "propagate")
    run(project)
    source.delete([1, 2])
    limited = run(project, limit=5)  # a test run: rolled back (tests/engine/test_targets.py)
    assert limited["rows_read"] == 5 and limited["deleted"] == 0
    assert len(target_rows(target)) == 20


def test_deleted_keys_query(project, make_database):
    source = Source(make_database("mariadb", "source"))
    with source.db.cursor() as c:
        c.execute("CREATE TABLE deleted_items (id INT)")
        c.execute("INSERT INTO deleted_items VALUES (2), (4), (99)")
    target = make_database("postgresql", "target")
    source.upsert([(i, "x", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in range(1, 6)])
    project.connection("src", "mariadb", source.db.url)
    project.connection("dst", "postgresql", target.url)
    project.job(
        "sync",
        "src",
        "dst",
        """
        - name: items
          read: {table: src_items, deleted_keys_query: "SELECT id FROM deleted_items"}
          write: {table: dst_items, keys: [id]}
          changes: {strategy: watermark, column: updated_at}
          deletes: propagate
        """,
    )
    services.apply(project.ws)
    dry = run(project, dry_run=True)  # into no table yet: the query's keys among the rows read
    assert (dry["inserted"], dry["deleted"]) == (5, 2)
    first = run(project)
    assert (first["inserted"], first["deleted"]) == (5, 2)
    assert [r[0] for r in target_rows(target)] == [1, 3, 5]
    with source.db.cursor() as c:
        c.execute("DROP TABLE deleted_items")
    with target.cursor() as c:  # a dry run into no table reads the query as the run would
        c.execute("DROP TABLE dst_items")
    dry = services.run(project.ws, "sync", services.RunOptions(dry_run=True))
    assert dry["status"] == "failed" and "deleted_items" in dry["error"]


def test_on_error_continue_runs_the_next_task(project, make_database):
    source = Source(make_database("sqlite", "source"))
    target = make_database("sqlite", "target")
    source.upsert([(1, "x", Decimal("1.00"), T0)])
    project.connection("src", "sqlite", source.db.url)
    project.connection("dst", "sqlite", target.url)
    project.job(
        "sync",
        "src",
        "dst",
        """
        - {name: broken, read: {table: missing}, write: {table: nowhere}}
        - {name: items, read: {table: src_items}, write: {table: dst_items, keys: [id]}}
        """,
        extra="  on_error: continue\n",
    )
    services.apply(project.ws)
    record = services.run(project.ws, "sync")
    assert record["status"] == "failed" and record["failed_tasks"] == ["broken"]
    assert [t["status"] for t in record["tasks"]] == ["failed", "succeeded"]
    assert target_rows(target) == source.rows()


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("sqlite", "sqlite"),
        ("postgresql", "postgresql"),
        ("mariadb", "postgresql"),
        ("postgresql", "mariadb"),
    ],
)
@pytest.mark.parametrize("deletes", ["propagate", "soft"])
@pytest.mark.parametrize("few", [500, 0], ids=["ranges", "staged"])
def test_watermark_deletes_by_key_buckets(project, make_database, monkeypatch, src, dst, deletes, few):
    """Deletes under an integer key compare per-bucket counts and sums: negative keys, the
    zero bucket, a whole bucket gone and a single key gone must all be found, whether a
    bucket's one missing key is read off the sums, its keys are compared by ranges or (`few`
    0) staged in the target."""
    monkeypatch.setattr(bucket_deletes, "FEW_BUCKETS", few)
    read_off = spy(monkeypatch, bucket_deletes, "_single_deletes")
    source = Source(make_database(src, "source"))
    target = make_database(dst, "target")
    source.upsert(
        [(i, f"r{i}", Decimal("1.00"), T0 + dt.timedelta(seconds=i % 50)) for i in range(-700, 701, 3)]
    )
    setup_job(project, source.db, target, "watermark", deletes)
    run(project)
    gone = [-700, -1, 2, 5, 698] + list(range(101, 200, 3))  # single keys, around zero, a whole stretch
    source.delete(gone)
    second = run(project)
    existed = [g for g in gone if (g + 700) % 3 == 0]  # the keys the source had
    assert second["deleted"] == len(existed) > 30
    assert read_off[-1][0] == 2  # -700 and 698: alone in their buckets
    live = [r for r in target_rows(target, deletes == "soft") if deletes == "propagate" or not r[4]]
    assert [r[:4] for r in live] == source.rows()


def test_watermark_deletes_look_keys_up_in_both_databases_at_once(project, make_database, monkeypatch):
    """The keys that differ are looked up in source and target at once, not one after the
    other; and the keys read off the sums and the keys of the other differing buckets (by
    ranges) in the same lookups: each database is asked once."""
    source = Source(make_database("postgresql", "source"))
    target = make_database("postgresql", "target")
    source.upsert([(i, f"r{i}", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in range(1, 641)])
    setup_job(project, source.db, target, "watermark", "propagate")
    run(project)
    source.delete([5, 70, 71, 72, 300])  # 5 and 300 alone in their buckets of 64 keys; 70-72 in one
    asked: list[str] = []
    in_source = threading.Event()
    source_find, target_find = KeyBucketQueries.find_keys, SqlWriter.find_keys

    def source_side(self, *args, **kwargs):
        asked.append("source")
        in_source.set()
        return source_find(self, *args, **kwargs)

    def target_side(self, *args, **kwargs):
        asked.append("target")
        assert in_source.wait(10), "the target's keys were looked up before the source was asked"
        return target_find(self, *args, **kwargs)

    monkeypatch.setattr(KeyBucketQueries, "find_keys", source_side)
    monkeypatch.setattr(SqlWriter, "find_keys", target_side)
    read_off = spy(monkeypatch, bucket_deletes, "_single_deletes")
    second = run(project)
    assert second["deleted"] == 5
    assert read_off[-1][:2] == (2, [])  # 5 and 300 read off the sums; bucket 1 compared by its range
    assert sorted(asked) == ["source", "target"]
    assert [r[0] for r in target_rows(target)] == [r[0] for r in source.rows()]


def test_watermark_deletes_never_read_a_live_key_off_the_sums(project, make_database, monkeypatch):
    """A bucket whose target lacks a source row (one added below the pointer, which a
    watermark cannot see) breaks what the sums assume: here they point at key 70, which the
    source still has. It must stay, and the bucket is compared key by key instead."""
    read_off = spy(monkeypatch, bucket_deletes, "_single_deletes")
    source = Source(make_database("postgresql", "source"))
    target = make_database("postgresql", "target")
    keys = [i for i in range(1, 129) if i != 100]  # two buckets of 64 keys, and 128
    source.upsert([(i, f"r{i}", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in keys])
    setup_job(project, source.db, target, "watermark", "propagate")
    run(project)
    source.delete([80, 90])
    source.upsert([(100, "late", Decimal("1.00"), T0)])  # below the pointer: never read
    second = run(project)
    assert read_off[-1][0] == 0  # 80 + 90 - 100 = 70: found live in the source, not deleted
    assert second["deleted"] == 2
    ids = {r[0] for r in target_rows(target)}
    assert 70 in ids and not ids & {80, 90, 100}


@pytest.mark.parametrize(
    ("src", "dst"), [("sqlite", "sqlite"), ("postgresql", "postgresql"), ("postgresql", "mariadb")]
)
@pytest.mark.parametrize("deletes", ["propagate", "soft"])
def test_watermark_deletes_not_hidden_by_late_keys_of_equal_count_and_sum(
    project, make_database, src, dst, deletes
):
    """Keys 1 and 4 are deleted while 2 and 3 are committed late, behind the pointer, in the
    same bucket: its count (10) and key sum (78) are the same on both sides, yet 1 and 4 are
    gone from the source. The bucket digest must tell the two key sets apart; the late rows
    are not deleted and arrive once they change."""
    source = Source(make_database(src, "source"))
    target = make_database(dst, "target")
    source.upsert([(i, f"r{i}", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in [1, *range(4, 13)]])
    setup_job(project, source.db, target, "watermark", deletes)
    run(project)
    source.delete([1, 4])
    source.upsert([(i, "late", Decimal("1.00"), T0) for i in (2, 3)])  # below the pointer: not read
    second = run(project)
    assert second["deleted"] == 2
    live = [r[:4] for r in target_rows(target, deletes == "soft") if deletes == "propagate" or not r[4]]
    assert [r[0] for r in live] == list(range(5, 13))
    if deletes == "soft":
        assert {r[0] for r in target_rows(target, True) if r[4]} == {1, 4}
    source.upsert([(i, "late", Decimal("2.00"), T0 + dt.timedelta(hours=1)) for i in (2, 3)])
    third = run(project)
    assert (third["inserted"], third["deleted"]) == (2, 0)
    live = [r[:4] for r in target_rows(target, deletes == "soft") if deletes == "propagate" or not r[4]]
    assert live == source.rows()


@pytest.mark.parametrize(
    ("src", "dst"), [("sqlite", "sqlite"), ("postgresql", "postgresql"), ("postgresql", "mariadb")]
)
def test_watermark_deletes_read_off_the_sums_only_when_proven(project, make_database, src, dst):
    """Keys 1, 4 and 7 deleted, 2 and 3 committed late behind the pointer, in one bucket: the
    target holds one key more and the sums differ by 7, which is indeed gone. Reading it off
    the sums must not close the bucket: 1 and 4 (whose sum equals the late keys') are gone
    too, and only the bucket's digests with key 7 taken out would prove otherwise."""
    source = Source(make_database(src, "source"))
    target = make_database(dst, "target")
    source.upsert([(i, f"r{i}", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in [1, *range(4, 13)]])
    setup_job(project, source.db, target, "watermark", "propagate")
    run(project)
    source.delete([1, 4, 7])
    source.upsert([(i, "late", Decimal("1.00"), T0) for i in (2, 3)])  # below the pointer: not read
    assert run(project)["deleted"] == 3
    assert [r[0] for r in target_rows(target)] == [5, 6, *range(8, 13)]


def spy(monkeypatch, module: Any, name: str) -> list[Any]:
    """Record what `module.name` returns, call after call."""
    returned: list[Any] = []
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        returned.append(real(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(module, name, wrapper)
    return returned


def test_watermark_deletes_with_a_text_key(project, make_database):
    db = make_database("postgresql", "source")
    with db.cursor() as c:
        c.execute("CREATE TABLE src_items (code text PRIMARY KEY, updated_at timestamp)")
        c.execute("INSERT INTO src_items SELECT 'k' || g, now() FROM generate_series(1, 300) g")
    target = make_database("postgresql", "target")
    project.connection("src", "postgresql", db.url)
    project.connection("dst", "postgresql", target.url)
    project.job(
        "sync",
        "src",
        "dst",
        """
        - name: items
          read: {table: src_items}
          write: {table: dst_items, keys: [code]}
          changes: {strategy: watermark, column: updated_at}
          deletes: propagate
        """,
    )
    services.apply(project.ws)
    run(project)
    with db.cursor() as c:
        c.execute("DELETE FROM src_items WHERE code IN ('k1', 'k150', 'k300')")
    assert run(project)["deleted"] == 3
    assert target.fetch("SELECT count(*) FROM dst_items") == [(297,)]


def test_bucket_digests_agree_across_dialects(make_database, tmp_path):
    """Each dialect sums up a bucket's key hashes in its own SQL; all must give the same
    digest as `key_hash` in Python (negative keys, zero, keys past 2**32, a bigint near its
    end), or no bucket would ever agree between two of them."""
    from runner.connectors.registry import open_connector
    from runner.definitions.tasks import ReadSpec
    from runner.streams.keys import key_hash

    keys = [-(2**62), -7, -1, 0, 1, 2, 3, 4, 99, 2**32 + 5, 2**62 + 11, 2**63 - 1]
    width = 2**61
    expected: dict[int, tuple[int, int, int]] = {}
    for k in keys:
        b = bucket_deletes._bucket(k, width)
        n, s, h = expected.get(b, (0, 0, 0))
        expected[b] = (n + 1, s + k, h + key_hash(k))
    assert len(expected) == 4 and key_hash(-7) != key_hash(7)
    for dialect in ("sqlite", "postgresql", "mariadb"):
        db = make_database(dialect, "keys")
        with db.cursor() as c:
            c.execute("CREATE TABLE keyset (id BIGINT PRIMARY KEY)")
            for k in keys:
                c.execute(f"INSERT INTO keyset VALUES ({db.mark})", (k,))
        connector = open_connector("keys", {"type": dialect, "url": db.url}, tmp_path)
        got = connector.key_buckets(ReadSpec(table="keyset"), "id", width)  # type: ignore[attr-defined]
        assert got == expected, dialect
        if connector.native_key_hash("id") is not None:  # type: ignore[attr-defined]
            # PostgreSQL between PostgreSQL databases: its own hash, summed alike per key
            native = connector.native_key_hashes(keys)  # type: ignore[attr-defined]
            assert len(set(native.values())) == len(keys) and all(0 <= h < 2**60 for h in native.values())
            summed: dict[int, tuple[int, int, int]] = {}
            for k in keys:
                n, s, h = summed.get(bucket_deletes._bucket(k, width), (0, 0, 0))
                summed[bucket_deletes._bucket(k, width)] = (n + 1, s + k, h + native[k])
            spec = ReadSpec(table="keyset")
            assert connector.key_buckets(spec, "id", width, native=True) == summed  # type: ignore[attr-defined]


def test_target_sums_beside_the_merges_never_wait_for_the_writer(make_database, tmp_path):
    """The watermark round's target sums run on a connection of their own beside the writer's
    transaction, which waits for them before its deletes. Had the writer taken a lock that the
    sums' read must wait for (a column added to the target in its transaction), each would
    wait for the other for ever: the sums hold the table from before their snapshot, and a
    lock held already fails them within a second (the sums are then read after the merges)."""
    import threading
    import time

    from runner.connectors.registry import open_connector
    from runner.definitions.tasks import ReadSpec

    db = make_database("postgresql", "sums")
    with db.cursor() as c:
        c.execute("CREATE TABLE keyset (id BIGINT PRIMARY KEY)")
        c.execute("INSERT INTO keyset SELECT generate_series(1, 100)")
    connector = open_connector("sums", {"type": "postgresql", "url": db.url}, tmp_path)
    taken = threading.Event()
    with db.engine.connect() as writer:  # the writer: DDL in its open transaction
        writer.exec_driver_sql("ALTER TABLE keyset ADD COLUMN color text")
        started = time.monotonic()
        with pytest.raises(Exception, match="lock timeout"):
            connector.key_buckets(ReadSpec(table="keyset"), "id", 64, taken=taken.set)  # type: ignore[attr-defined]
        assert time.monotonic() - started < 10 and not taken.is_set()
        writer.rollback()
    # with no lock held, the sums are read in their snapshot
    got = connector.key_buckets(ReadSpec(table="keyset"), "id", 64, taken=taken.set)  # type: ignore[attr-defined]
    assert taken.is_set() and sum(n for n, _, _ in got.values()) == 100

"""A merge of a few staged rows into a large PostgreSQL target looks each row up by key: with a
unique index on the keys, in one INSERT … ON CONFLICT DO UPDATE (each row looked up once),
else in the UPDATE and INSERT joins. Either way the target ends equal to the source and the run
counts inserted, updated and unchanged rows exactly: a soft-deleted row that comes back is
updated, a row read again unchanged is left as it was."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from runner import services
from runner.changes import deletes as bucket_deletes
from runner.changes import watermark
from runner.connectors.sql.writer import SqlWriter
from tests.engine.test_changes import T0, Source, run, setup_job, target_rows

ROWS = 3000  # the target over ten times the stage of a round: its rows are looked up by key


@pytest.fixture
def merges(monkeypatch):
    """How each merge of a writer went: 'upsert' or 'joins'."""
    seen: list[str] = []
    upsert, joins = SqlWriter._upsert, SqlWriter._merge

    def spy_upsert(self, *args):
        seen.append("upsert")
        return upsert(self, *args)

    def spy_joins(self, only="", params=()):
        seen.append("joins")
        return joins(self, only, params)

    monkeypatch.setattr(SqlWriter, "_upsert", spy_upsert)
    monkeypatch.setattr(SqlWriter, "_merge", spy_joins)
    return seen


def load(project, make_database, deletes: str, before=None) -> tuple[Source, object]:
    source = Source(make_database("postgresql", "source"))
    target = make_database("postgresql", "target")
    if before is not None:
        before(target)
    source.upsert(
        [(i, f"row {i}", Decimal("1.00"), T0 + dt.timedelta(seconds=i)) for i in range(1, ROWS + 1)]
    )
    setup_job(project, source.db, target, "watermark", deletes, extra=", lookback: 10s")
    run(project)
    return source, target


def a_round(source: Source) -> None:
    """3 rows updated, 2 inserted, 1 deleted; with the lookback, rows near the pointer are read
    again unchanged."""
    late = T0 + dt.timedelta(seconds=ROWS + 100)
    source.upsert([(i, f"changed {i}", Decimal("2.50"), late) for i in (10, 20, 30)])
    source.upsert([(ROWS + i, None, None, late) for i in (1, 2)])
    source.delete([40])


@pytest.mark.parametrize("deletes", ["propagate", "soft"])
def test_a_small_round_is_one_upsert_with_exact_counts(project, make_database, merges, deletes):
    source, target = load(project, make_database, deletes)
    merges.clear()
    a_round(source)
    second = run(project)
    assert merges and set(merges) == {"upsert"}
    assert (second["inserted"], second["updated"], second["deleted"]) == (2, 3, 1)
    assert second["unchanged"] == second["rows_read"] - 5 > 0  # read again through the lookback
    soft = deletes == "soft"
    expected = [r + (False,) if soft else r for r in source.rows()]
    if soft:
        expected = sorted([*expected, (40, "row 40", Decimal("1.00"), T0 + dt.timedelta(seconds=40), True)])
    assert target_rows(target, soft=soft) == expected
    if soft:  # the deleted row comes back: an update that clears its mark
        source.upsert([(40, "back", Decimal("3.00"), T0 + dt.timedelta(seconds=ROWS + 200))])
        third = run(project)
        assert (third["inserted"], third["updated"]) == (0, 1)
        assert target_rows(target, soft=True) == [r + (False,) for r in source.rows()]


def test_a_rounds_new_keys_are_summed_up_from_its_upsert(project, make_database, monkeypatch, merges):
    """With deletes, the target's key buckets are summed up beside the round's merge, and the
    keys the merge inserts are added to them: read off what the upsert itself inserted, not
    looked up in the target before it. Those sums must be the target's own after the merge,
    bucket by bucket (new keys in the buckets of deleted ones and in buckets past the old key
    range, updated rows adding none, rows read again unchanged adding none), and the deletes
    then found exact."""
    source, target = load(project, make_database, "propagate")
    looked_up: list[int] = []
    real_new = SqlWriter.new_key_buckets
    monkeypatch.setattr(
        SqlWriter, "new_key_buckets", lambda self, *a: looked_up.append(1) or real_new(self, *a)
    )
    compared: list[tuple[dict, dict]] = []
    real_deletes = bucket_deletes.deletes_by_buckets

    def check(run_, w, sums, early=None):
        assert early is not None  # summed up beside the merge
        native = bucket_deletes._native_hash(run_)
        compared.append((early.result(), w.target_buckets(sums.width, native)))
        return real_deletes(run_, w, sums, early)

    monkeypatch.setattr(watermark, "deletes_by_buckets", check)
    merges.clear()
    a_round(source)  # 2 new keys past the range, 3 updated, 1 deleted
    late = T0 + dt.timedelta(seconds=ROWS + 100)
    source.delete([41, 42, 1000])
    source.upsert([(1000, "again", Decimal("4.00"), late)])  # deleted and inserted: one bucket
    source.upsert([(ROWS + 500 + i, f"far {i}", None, late) for i in range(70)])  # new buckets
    second = run(project)
    assert merges and set(merges) == {"upsert"} and looked_up == []
    assert (second["inserted"], second["updated"], second["deleted"]) == (72, 4, 3)
    ((summed, actual),) = compared
    assert summed == actual
    assert target_rows(target) == source.rows()


def test_without_a_unique_index_on_the_keys_the_joins_merge(project, make_database, merges):
    def plain_index(target) -> None:  # the user's table: no primary key, an index that repeats keys
        with target.cursor() as c:
            c.execute(
                "CREATE TABLE dst_items (id integer, name varchar(40), price numeric(12,2), "
                "updated_at timestamp(6))"
            )
            c.execute("CREATE INDEX dst_items_id ON dst_items (id)")

    source, target = load(project, make_database, "propagate", before=plain_index)
    merges.clear()
    a_round(source)
    second = run(project)
    assert merges and set(merges) == {"joins"}
    assert (second["inserted"], second["updated"], second["deleted"]) == (2, 3, 1)
    assert target_rows(target) == source.rows()


def test_a_table_of_keys_only_inserts_the_new_and_keeps_the_rest(project, make_database, merges):
    source_db = make_database("postgresql", "source")
    target = make_database("postgresql", "target")
    with source_db.cursor() as c:
        c.execute("CREATE TABLE src_items (id integer PRIMARY KEY)")
        c.execute(f"INSERT INTO src_items SELECT generate_series(1, {ROWS})")
    project.connection("src", "postgresql", source_db.url)
    project.connection("dst", "postgresql", target.url)
    project.job(
        "sync",
        "src",
        "dst",
        """
        - name: items
          read: {table: src_items}
          write: {table: dst_items, keys: [id]}
          changes: {strategy: watermark, column: id, lookback: 3}
        """,
        extra="  batch_size: 4\n",
    )
    services.apply(project.ws)
    run(project)
    with source_db.cursor() as c:
        c.execute(f"INSERT INTO src_items VALUES ({ROWS + 1}), ({ROWS + 2})")
    merges.clear()
    second = run(project)
    assert merges and set(merges) == {"upsert"}
    assert (second["inserted"], second["updated"], second["unchanged"]) == (2, 0, 4)  # ids 2997-3000 again
    assert sorted(r[0] for r in target.fetch("SELECT id FROM dst_items")) == list(range(1, ROWS + 3))


def test_a_merged_table_leaves_room_on_its_pages_and_takes_new_rows_in_key_order(project, make_database):
    """A table runner creates to merge into is filled to 90% of a page (room for an updated row's
    new version beside the old: no new index entry); the upsert takes the staged rows in key
    order, so rows read in another order land in the table in key order."""
    source, target = load(project, make_database, "propagate")
    ((options,),) = target.fetch("SELECT reloptions FROM pg_class WHERE relname = 'dst_items'")
    assert options == ["fillfactor=90"]
    late = T0 + dt.timedelta(seconds=ROWS + 100)
    source.upsert([(ROWS + i, f"new {i}", None, late + dt.timedelta(seconds=-i)) for i in range(6, 0, -1)])
    source.upsert([(10, "changed", Decimal("2.00"), late)])
    second = run(project)
    assert (second["inserted"], second["updated"]) == (6, 1)
    assert target_rows(target) == source.rows()
    placed = [r[0] for r in target.fetch(f"SELECT id FROM dst_items WHERE id > {ROWS} ORDER BY ctid")]
    assert placed == list(range(ROWS + 1, ROWS + 7))

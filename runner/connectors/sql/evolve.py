"""A SQL target table following its source's columns (`schema_changes`), and strings cut to
fit their column (`truncate_strings`).

Before a writer's transaction begins, its target table is compared with the source's columns
and with the columns the source had at the task's last run (`TableEvolution.known`):

- a source column the table lacks is added (nullable, the source's type mapped);
- a column whose source type changed since the last run is widened when the target's type
  holds every value of its old type in the new one (a longer varchar, int to bigint, more
  numeric digits on both sides of the point); PostgreSQL alters the type, MariaDB restates the
  whole column (MODIFY keeps its NULL, default, collation and comment), SQLite rebuilds the
  table (it has no ALTER COLUMN; see `SqliteConnector.alter_type_sql`). A type the target
  already holds needs nothing;
- a change the target could follow only by losing data (a narrowing, text to integer) stops the
  task before anything is written, naming the column, both types and the DDL that would follow;
- a column gone from the source stays (NULL in new rows), or with `drop` is dropped.

Only a change of the *source* is followed: a target made by hand with other types than the
source's (a wider varchar, another type) is left as it is, as it always was. The plan is made
from the target as it is, so a run killed after the DDL and before its data commit finds
nothing left to do: this matters for MariaDB, which commits every ALTER TABLE at once (and is
why the DDL runs before the writer's transaction: inside it, it would commit the rows staged so
far). A dry run alters nothing: where DDL is transactional (PostgreSQL, SQLite) it runs inside
the dry run's transaction, which is rolled back, so the counts are a real run's; MariaDB's would
commit, so its dry run stops after reporting the DDL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from runner.definitions.tasks import ReadSpec
from runner.errors import TerminalError
from runner.streams.types import INTEGERS, Batch, ColumnType

if TYPE_CHECKING:
    from runner.connectors.base import TableEvolution
    from runner.connectors.sql.writer import SqlWriter

_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}  # decimal digits of each integer type
_STRINGS = ("char", "varchar", "text")


@dataclass(frozen=True)
class SchemaChange:
    """One change of the target table: `add`, `widen`, `nullable` (its NOT NULL dropped) or
    `drop` of `column`."""

    column: str
    change: str
    before: str | None  # the target's type, as it declares it
    after: str | None  # the type it gets
    ddl: list[str]

    def record(self, applied: bool) -> dict[str, Any]:
        return asdict(self) | {"ddl": "; ".join(self.ddl), "applied": applied}


def holds(old: ColumnType, new: ColumnType) -> bool:
    """Whether a column of type `new` holds every value of type `old` unchanged."""
    if old == new:
        return True
    a, b = old.kind, new.kind
    if a in INTEGERS and b in INTEGERS:
        return INTEGERS.index(a) <= INTEGERS.index(b)
    if a in INTEGERS and b == "decimal":
        return new.precision is None or new.precision - (new.scale or 0) >= _DIGITS[a]
    if a == b == "decimal":
        if new.precision is None:
            return True
        if old.precision is None:
            return False
        old_scale, new_scale = old.scale or 0, new.scale or 0
        return new_scale >= old_scale and new.precision - new_scale >= old.precision - old_scale
    if a == "real" and b == "double":
        return True
    if a in _STRINGS and b in _STRINGS:
        if b == "text":
            return a != "char"  # a char's padding would become part of the text
        if a == "text" or (a == "char") != (b == "char"):
            return False
        return (old.length or 0) <= (new.length or 0)
    return False


def plan(w: SqlWriter, evolve: TableEvolution, cursor: Any) -> list[SchemaChange]:
    """The changes that make the target table follow the source (see the module's text).

    Raises:
        TerminalError: a change the target cannot follow without losing data.
    """
    c, table, settings = w.c, w.table, evolve.settings
    declared = dict(c.declared_columns(cursor, ReadSpec(table=table)))
    target = {name: c.parse_type(d) for name, d in declared.items()}
    known = {e["name"]: evolve.known_type(e) for e in evolve.known} if evolve.known is not None else None
    added, widened, refused = [], [], []
    for col in w.columns:
        if col.name not in target:
            if settings.add:
                ddl = c.add_column_sql(table, col)
                added.append(SchemaChange(col.name, "add", None, c.render_type(col.type), ddl))
            continue  # else the writer refuses it (`SqlWriter.stage_columns`)
        was, now = (known or {}).get(col.name), target[col.name]
        if not settings.widen or was is None or was == col.type or now is None:
            continue  # no change of the source's type since the last run: nothing to follow
        # the source's type as the target will read it back (SQLite: every integer a bigint;
        # MariaDB: a text key a varchar)
        wanted = c.parse_type(_typed(w, col.name)) or col.type
        if wanted == now:
            continue
        if holds(now, wanted):
            widened.append(col)
        elif not (holds(was, col.type) and holds(wanted, now)):  # else the target holds it already
            what = "a narrowing" if holds(wanted, now) else "an incompatible type"
            ddl = "; ".join(c.alter_columns_sql(cursor, table, {col.name: _typed(w, col.name)}))
            refused.append(
                f"column {col.name!r}: the source's type changed from {was} to {col.type}, which the "
                f"target's {declared[col.name]} cannot follow without losing data ({what}); the DDL "
                f"that would follow it: {ddl}"
            )
    if refused:
        raise TerminalError(
            f"the target table {table} cannot follow the source, nothing was written: "
            + "; ".join(refused)
            + " (or set schema_changes: add for this task to keep the target's type)"
        )
    source = {col.name for col in w.columns}
    gone = [n for n in known or () if n not in source and n in declared and n not in w.keys and n != w.soft]
    relaxed = _relaxed(w, evolve, cursor, declared, gone) if settings.widen and known is not None else []
    # one statement changes them all (SQLite rebuilds the table once), before columns are added
    types = {col.name: _typed(w, col.name) for col in widened}
    ddl = c.alter_columns_sql(cursor, table, types, relaxed) if widened or relaxed else []
    changes = [SchemaChange(col.name, "widen", declared[col.name], types[col.name], ddl) for col in widened]
    changes += [SchemaChange(name, "nullable", "NOT NULL", "NULL", ddl) for name in relaxed]
    changes += added
    if settings.drop:
        changes += [SchemaChange(n, "drop", declared[n], None, c.drop_column_sql(table, n)) for n in gone]
    return changes


def _typed(w: SqlWriter, name: str) -> str:
    """The DDL of a column's new type, as a new table would have it (a key column's as keys
    are made: MariaDB indexes a bounded part of a text key)."""
    if name in w.keys:
        return dict(zip(w.keys, w.c.key_types(w.key_columns), strict=True))[name]
    return w.c.render_type(next(col.type for col in w.columns if col.name == name))


def _relaxed(
    w: SqlWriter, evolve: TableEvolution, cursor: Any, declared: dict[str, str], gone: list[str]
) -> list[str]:
    """The target's NOT NULL columns (not keys) whose source column dropped its NOT NULL since
    the last run, or is gone from the source (it gets NULL in new rows) and is not dropped."""
    strict = w.c.not_null(cursor, w.table) - set(w.keys)
    was = {e["name"] for e in evolve.known or () if e.get("not_null")}
    now = evolve.not_null
    found = {n for n in declared if n in strict and n in was and now is not None and n not in now}
    dropping = evolve.settings.drop
    return [n for n in declared if n in strict and (n in found or (n in gone and not dropping))]


def _execute(cursor: Any, changes: list[SchemaChange]) -> None:
    done: list[list[str]] = []
    for change in changes:
        if change.ddl not in done:  # columns widened together share their statement
            done.append(change.ddl)
            for statement in change.ddl:
                cursor.execute(statement)


def follow_source(w: SqlWriter) -> list[SchemaChange]:
    """Before the writer's transaction: make the target table follow the source, each change
    committed (not in a dry run: its changes are returned for `rehearse`)."""
    evolve = w.evolution
    if evolve is None or not evolve.settings.alters or not w.c.table_exists(w.table):
        return []
    cursor = w.dbapi.cursor()
    w.c.begin(w.dbapi.driver_connection)
    try:
        changes = plan(w, evolve, cursor)
        if evolve.dry_run or not changes:
            # nothing written: no commit, which SQLite would hold up behind the read of a
            # source table in the same file (a commit waits for every reader of the file)
            w.dbapi.rollback()
            return changes
        _execute(cursor, changes)
        for change in changes:
            _noted(evolve, change, applied=True)
        w.dbapi.commit()  # one transaction where DDL is transactional: a SQLite rebuild is whole
    except BaseException:
        w.dbapi.rollback()
        raise
    return []


def rehearse(w: SqlWriter, changes: list[SchemaChange]) -> None:
    """A dry run's changes: run inside its transaction (rolled back with it) where DDL is
    transactional, so that it counts what a real run would write; MariaDB would commit them,
    so there the task stops after saying what it would run."""
    evolve = w.evolution
    if evolve is None or not changes:
        return
    for change in changes:
        _noted(evolve, change, applied=False)
    if not w.c.transactional_ddl:
        ddl = "; ".join(dict.fromkeys(s for change in changes for s in change.ddl))
        raise TerminalError(
            f"dry run: the target table {w.table} would first be altered ({ddl}); {w.c.dialect} commits "
            "DDL at once, so the rows are not counted in a dry run"
        )
    _execute(w.cursor, changes)
    w.target_types = {
        name: w.c.parse_type(declared)
        for name, declared in w.c.declared_columns(w.cursor, ReadSpec(table=w.table))
    }


def _noted(evolve: TableEvolution, change: SchemaChange, applied: bool) -> None:
    evolve.changes.append(change.record(applied))
    doing = "altered" if applied else "dry run: would alter"
    evolve.note(
        "info",
        f"schema change: {doing} the target table, {change.change} column {change.column!r}",
        column=change.column,
        change=change.change,
        before=change.before,
        after=change.after,
        ddl="; ".join(change.ddl),
    )


def truncating(w: SqlWriter) -> None:
    """With `truncate_strings`: cut each string longer than its target column (varchar(n),
    char(n)) to n characters before it is encoded, counting the cuts per column; the copies
    inside the databases are then not used (SQLite's would keep the whole string)."""
    evolve = w.evolution
    if evolve is None or not evolve.settings.truncate_strings:
        return
    cuts = []
    for i, col in enumerate(w.columns):
        limit = w.target_types.get(col.name)
        if limit is not None and limit.kind in ("varchar", "char") and limit.length:
            cuts.append(
                (i, col.name, limit.length)
            )  # even from a source of the same length: SQLite's hold more
    if not cuts:
        return
    w.fast = None
    w.encode = _cutting(w.encode, cuts, evolve)


def _cutting(
    encode: Callable[[Batch], Batch], cuts: list[tuple[int, str, int]], evolve: TableEvolution
) -> Callable[[Batch], Batch]:
    counts = evolve.truncated

    def cut(batch: Batch) -> Batch:
        rows = None
        for r, row in enumerate(batch):
            for i, name, length in cuts:
                value = row[i]
                if isinstance(value, str) and len(value) > length:
                    if rows is None:
                        rows = list(batch)
                    if name not in counts:
                        evolve.note(
                            "warning",
                            f"strings longer than the target column are cut to {length} characters",
                            column=name,
                        )
                    counts[name] = counts.get(name, 0) + 1
                    row = rows[r] = (*row[:i], value[:length], *row[i + 1 :])
        return encode(rows if rows is not None else batch)

    return cut

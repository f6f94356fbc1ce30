"""Conditions on an integer key column, bounded in bound parameters: what the key bucket
queries and the writer's deletes by key share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

IN_LIST = 5_000  # values bound in one IN (…) list: within every driver's parameter limit


def key_conditions(
    column: str,
    mark: str,
    values: Sequence[int] = (),
    ranges: Sequence[tuple[int, int]] = (),
    any_of: Callable[[str, list[int]], str] | None = None,
) -> Iterator[tuple[str, tuple]]:
    """Conditions on an integer key column for these values (an IN list; `any_of`: the
    dialect's `any_of_sql`, the values written in the statement) or inclusive ranges
    (BETWEENs, which each use the key's index), at most `IN_LIST` values or bound parameters
    each."""
    for i in range(0, len(values), IN_LIST):
        chunk = tuple(values[i : i + IN_LIST])
        if any_of is not None:
            yield any_of(column, [int(v) for v in chunk]), ()
        else:
            yield f"{column} IN ({', '.join([mark] * len(chunk))})", chunk
    step = IN_LIST // 2
    for i in range(0, len(ranges), step):
        part = ranges[i : i + step]
        yield (
            " OR ".join([f"{column} BETWEEN {mark} AND {mark}"] * len(part)),
            tuple(x for r in part for x in r),
        )

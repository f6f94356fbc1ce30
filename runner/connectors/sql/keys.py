"""Conditions on an integer key column, bounded in size: what the key bucket queries, the
writer's deletes by key and verify's key ranges share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

IN_LIST = 5_000  # values in one condition, ranges' bounds bound in one: within every driver's limit


def key_conditions(
    column: str,
    mark: str,
    any_of: Callable[[str, list[int]], str],
    values: Sequence[int] = (),
    ranges: Sequence[tuple[int, int]] = (),
) -> Iterator[tuple[str, tuple]]:
    """Conditions on an integer key column for these values (`any_of`: the dialect's
    `any_of_sql`, the values written in the statement as integers) or inclusive ranges
    (BETWEENs, which each use the key's index, their bounds bound), at most `IN_LIST` values
    or bound parameters each."""
    for i in range(0, len(values), IN_LIST):
        yield any_of(column, [int(v) for v in values[i : i + IN_LIST]]), ()
    step = IN_LIST // 2
    for i in range(0, len(ranges), step):
        part = ranges[i : i + step]
        yield (
            " OR ".join([f"{column} BETWEEN {mark} AND {mark}"] * len(part)),
            tuple(x for r in part for x in r),
        )

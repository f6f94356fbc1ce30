"""Timestamps without a zone read as times of a stated zone and written as UTC (`read.timezone`).

A task with a zone reads its source through `ZonedSource`: every column the source gives as a
timestamp without a zone is handed on as a timestamp with one (so a target creates it as
`timestamptz`, MariaDB's DATETIME(6) in UTC, SQLite's TIMESTAMPTZ text in UTC), each value
read as a wall-clock time of the zone and converted to UTC. Nothing else changes: the
watermark pointer and the source's highest value are taken from the values as the source's
driver gives them, before the conversion, so a pointer is always compared with the column in
the source's own terms; digests are computed in the source, over its own values.

The conversion is done in Python, so nothing may pass it by: a task with a zone makes no copy
inside the databases (no COPY pass-through, no `INSERT … SELECT`, no `LOAD DATA` from the
source) and no comparison of rows inside the target.

Clocks that change: a wall-clock time that happens twice (the autumn hour, 02:30 on
2024-10-27 in Berlin) is read as its first occurrence, in summer time (+02:00; Python's
`fold=0`); one that never happens (02:30 on 2024-03-31, skipped in spring) is read with the
offset in force before the change (+01:00), i.e. as 01:30 UTC, the instant 03:30 summer time
names.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from runner.connectors.base import Capabilities, ReadStream, Source, Watermark
from runner.definitions.tasks import ReadSpec
from runner.streams.types import Batch, Column, ColumnType

AWARE = ColumnType("timestamptz")


class ZonedSource:
    """A source whose timestamps without a zone are read in `zone` and given as UTC; every
    other method is the source's own. Which columns those are is learnt from each read (the
    strategies read a table's columns before they ask for rows by key or digests)."""

    def __init__(self, inner: Source, zone: str):
        self.inner = inner
        self.zone = zoneinfo.ZoneInfo(zone)
        self.zoned: dict[str, ColumnType] = {}  # column -> its type in the source
        # rows compared inside the target would meet the source's own values there
        self.capabilities: Capabilities = replace(inner.capabilities, in_database_compare=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def to_utc(self, value: Any) -> Any:
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=self.zone).astimezone(dt.UTC)
        return value  # NULL, or a date the source's type cannot hold (`OutOfRange` text)

    def learn(self, columns: list[Column]) -> None:
        """Note which of a read's columns are timestamps without a zone (what is converted)."""
        self.zoned.update({c.name: c.type for c in columns if c.type.kind == "timestamp" and not c.unmapped})

    def converter(self, columns: list[Column], offset: int = 0) -> Callable[[Batch], Batch] | None:
        """Rows of `columns` (from `offset` in each row) -> their zoned timestamps in UTC; None
        when none of them is zoned."""
        at = [offset + i for i, c in enumerate(columns) if c.name in self.zoned]
        if not at:
            return None
        to_utc = self.to_utc

        def convert(batch: Batch) -> Batch:
            out = []
            for row in batch:
                values = list(row)
                for i in at:
                    values[i] = to_utc(values[i])
                out.append(tuple(values))
            return out

        return convert

    def _own(self, columns: list[Column]) -> list[Column]:
        """Columns as the source has them (the zoned ones without a zone)."""
        return [replace(c, type=self.zoned[c.name]) if c.name in self.zoned else c for c in columns]

    def read(
        self,
        spec: ReadSpec,
        batch_size: int,
        watermark: Watermark | None = None,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> ReadStream:
        stream = self.inner.read(spec, batch_size, watermark, select, limit)
        self.learn(stream.columns)
        convert = self.converter(stream.columns)
        if convert is None:
            return stream
        stream.columns = [replace(c, type=AWARE) if c.name in self.zoned else c for c in stream.columns]
        stream.batches = _converted(stream.batches, convert)
        return stream

    def read_by_keys(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], values: list[tuple]
    ) -> Batch:
        rows = self.inner.read_by_keys(spec, self._own(columns), keys, values)  # type: ignore[attr-defined]
        convert = self.converter(columns)
        return convert(rows) if convert else rows

    def read_digests(
        self, spec: ReadSpec, columns: list[Column], keys: list[str], batch_size: int, with_rows: bool
    ) -> Iterator[Batch]:
        batches = self.inner.read_digests(spec, self._own(columns), keys, batch_size, with_rows)  # type: ignore[attr-defined]
        convert = self.converter(columns, 2 + len(keys)) if with_rows else None
        return _converted(batches, convert) if convert else batches

    def batch_decoder(self, columns: list[Column]) -> Callable[[Batch], Batch]:
        decode = self.inner.batch_decoder(self._own(columns))  # type: ignore[attr-defined]
        convert = self.converter(columns)
        if convert is None:
            return decode
        return lambda batch: convert(decode(batch))


def unzoned(source: Source) -> Source:
    """The source a `ZonedSource` reads through (a source without a zone as it is)."""
    return source.inner if isinstance(source, ZonedSource) else source


def _converted(batches: Iterator[Batch], convert: Callable[[Batch], Batch]) -> Iterator[Batch]:
    """`batches` converted; closing this closes them (and frees the source's connection)."""
    try:
        for batch in batches:
            yield convert(batch)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()

"""What one sync reads: the scope (whole table or a contiguous run of partition keys), each partition's time
window and high-water mark, and the Delta version every read of the run uses.

Windows are wall-clock `[start, end)` in the partitions' time zone; `bounds` turns them into the values bound
against the partition field (UTC instants for TIMESTAMP, wall-clock for TIMESTAMP_NTZ, dates for DATE).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zenskar_pipeline.config import ResolvedStream, TableName
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.sync.calendar import PartitionCalendar, Window


@dataclass(frozen=True)
class Scope:
    """The whole table (`partition_keys` None: unpartitioned streams), or Dagster partition keys."""

    partition_keys: tuple[str, ...] | None = None

    @classmethod
    def whole_table(cls) -> Scope:
        return cls(None)

    @classmethod
    def partitions(cls, keys: Sequence[str]) -> Scope:
        if not keys:
            raise ValueError("a partition scope needs at least one partition key")
        return cls(tuple(keys))


@dataclass(frozen=True)
class SyncPlan:
    """Everything the reader needs for one read: the table, the version, the windows and their marks."""

    stream: str
    by_cursor: bool  # reads from each window's mark on, and skips rows whose cursor is NULL
    table: TableName
    version: int  # the source Delta version every read uses
    columns: tuple[str, ...]  # selected source columns, source spelling
    cursor_field: str | None
    partition_field: str | None
    calendar: PartitionCalendar | None  # None: unpartitioned
    windows: tuple[Window, ...]  # () when unpartitioned
    # Lower cursor bound per partition (None key when unpartitioned): mark minus lag; None reads every row.
    cursor_from: Mapping[str | None, Any]
    reads_before_first: bool  # the scope holds the definition's first window: count rows before it
    reads_after_last: bool  # the scope holds the latest window: count rows after it and NULL fields
    cursor_type: str | None = (
        None  # the cursor's Databricks type (`bigint`, `timestamp`): marks are cast to it
    )

    @property
    def partition_keys(self) -> list[str] | None:
        return None if self.calendar is None else [w.key for w in self.windows]


def column_name(stream: ResolvedStream, table: DiscoveredTable, name: str, setting: str) -> str:
    """`name` as the source spells it; a clear error when the table or the column selection lacks it."""
    column = table.column(name)
    if column is None:
        raise ValueError(f"stream {stream.name}: {setting} {name!r} is not a column of {table.name}")
    if not stream.settings.columns.keeps(column.name):
        raise ValueError(
            f"stream {stream.name}: {setting} {name!r} is excluded by `columns`; the sync needs it, so "
            "include it"
        )
    return column.name


def stream_calendar(
    stream: ResolvedStream, table: DiscoveredTable, now: dt.datetime
) -> tuple[str, PartitionCalendar] | None:
    """The stream's partition field (as the source spells it) and the calendar of its windows up to `now`;
    None when the stream is unpartitioned. Errors name the stream."""
    spec = stream.settings.partitions
    if spec is None:
        return None
    field = column_name(stream, table, spec.field or str(stream.settings.cursor_field), "partitions.field")
    column = table.column(field)
    assert column is not None  # column_name found it
    try:
        return field, PartitionCalendar(spec, column.family, now)
    except ValueError as error:
        raise ValueError(f"stream {stream.name}: {error}") from None


def scope_windows(
    stream: ResolvedStream, calendar: PartitionCalendar | None, scope: Scope
) -> tuple[Window, ...]:
    """The windows of `scope` (none for an unpartitioned stream); an error naming the stream when the scope
    does not fit its partitions."""
    if calendar is None:
        if scope.partition_keys is not None:
            raise ValueError(f"stream {stream.name} is unpartitioned; sync it whole (Scope.whole_table())")
        return ()
    if scope.partition_keys is None:
        raise ValueError(f"stream {stream.name} is partitioned; give partition keys (Scope.partitions)")
    try:
        return calendar.windows(scope.partition_keys)
    except ValueError as error:
        raise ValueError(f"stream {stream.name}: {error}") from None


def lower_cursor_bound(mark: Any, lag: dt.timedelta, stream: str) -> Any:
    """The inclusive lower bound of a partition's read: its high-water mark minus `cursor_lag`."""
    if mark is None or not lag:
        return mark
    if isinstance(mark, dt.datetime | dt.date):
        return mark - lag
    raise ValueError(f"stream {stream}: cursor_lag needs a time cursor, but the cursor holds {mark!r}")

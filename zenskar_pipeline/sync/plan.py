"""What one sync reads: the scope (whole table or a contiguous run of partition keys), each partition's time
window and high-water mark, and the Delta version every read of the run uses.

Windows are wall-clock `[start, end)` in the partitions' time zone; `bounds` turns them into the values bound
against the partition field (UTC instants for TIMESTAMP, wall-clock for TIMESTAMP_NTZ, dates for DATE).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from zenskar_pipeline.config import Granularity, PartitionSpec, ResolvedStream, TableName
from zenskar_pipeline.databricks.discovery import DiscoveredTable, TypeFamily
from zenskar_pipeline.databricks.sql_text import ParameterValue


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
class Window:
    """One partition: its Dagster key and wall-clock `[start, end)` in the partitions' time zone."""

    key: str
    start: dt.datetime
    end: dt.datetime


class PartitionCalendar:
    """The windows of one stream's partitions definition, as Dagster cuts them, up to `now`."""

    def __init__(self, spec: PartitionSpec, family: TypeFamily, now: dt.datetime) -> None:
        if not family.is_time:
            raise ValueError(
                f"partitions.field must be a TIMESTAMP, TIMESTAMP_NTZ or DATE column, not {family}"
            )
        if family is TypeFamily.DATE and spec.granularity is Granularity.HOURLY:
            raise ValueError("hourly partitions need a TIMESTAMP or TIMESTAMP_NTZ partitions.field, not DATE")
        self.spec = spec
        self.family = family
        self.zone = ZoneInfo(spec.timezone)
        current = self.floor(now.astimezone(self.zone).replace(tzinfo=None))
        self.first_start = self.floor(spec.start)
        if self.first_start < spec.start:
            self.first_start = self.next_start(self.first_start)
        self.end = self.next_start(current) if spec.include_current else current  # exclusive

    def floor(self, wall: dt.datetime) -> dt.datetime:
        """The start of the window holding wall-clock time `wall` (weeks start on Sunday, as in Dagster)."""
        granularity = self.spec.granularity
        if granularity is Granularity.HOURLY:
            return wall.replace(minute=0, second=0, microsecond=0)
        day = wall.replace(hour=0, minute=0, second=0, microsecond=0)
        if granularity is Granularity.DAILY:
            return day
        if granularity is Granularity.WEEKLY:
            return day - dt.timedelta(days=(day.weekday() + 1) % 7)
        return day.replace(day=1)

    def next_start(self, start: dt.datetime) -> dt.datetime:
        granularity = self.spec.granularity
        if granularity is Granularity.HOURLY:
            return start + dt.timedelta(hours=1)
        if granularity is Granularity.DAILY:
            return start + dt.timedelta(days=1)
        if granularity is Granularity.WEEKLY:
            return start + dt.timedelta(days=7)
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

    def key(self, start: dt.datetime) -> str:
        return start.strftime(self.spec.granularity.key_format)

    @property
    def first_key(self) -> str:
        return self.key(self.first_start)

    @property
    def last_key(self) -> str:
        last = self.first_start
        while self.next_start(last) < self.end:
            last = self.next_start(last)
        return self.key(last)

    def all_windows(self) -> tuple[Window, ...]:
        """Every window of the definition, oldest first."""
        windows = []
        start = self.first_start
        while start < self.end:
            windows.append(Window(self.key(start), start, self.next_start(start)))
            start = self.next_start(start)
        return tuple(windows)

    def window(self, key: str) -> Window:
        """The window of a Dagster key; ValueError when the key is not one of this definition's."""
        try:
            start = dt.datetime.strptime(key, self.spec.granularity.key_format)
        except ValueError:
            raise ValueError(
                f"partition key {key!r} is not a {self.spec.granularity} key "
                f"({self.spec.granularity.key_format})"
            ) from None
        if self.floor(start) != start or start < self.first_start or self.next_start(start) > self.end:
            raise ValueError(
                f"partition key {key!r} is not a partition of this stream (from {self.first_key}, "
                f"{self.spec.granularity}, up to the window ending {self.end:%Y-%m-%d %H:%M})"
            )
        return Window(key, start, self.next_start(start))

    def windows(self, keys: Sequence[str]) -> tuple[Window, ...]:
        """The windows of `keys`, which must be one contiguous run in order."""
        windows = tuple(self.window(key) for key in keys)
        for before, after in itertools.pairwise(windows):
            if after.start != before.end:
                raise ValueError(
                    f"partition keys must be one contiguous range in order: {before.key} then {after.key}"
                )
        return windows

    def bound(self, wall: dt.datetime) -> ParameterValue:
        """A wall-clock window bound as the value to compare with the partition field."""
        if self.family is TypeFamily.TIMESTAMP:
            return wall.replace(tzinfo=self.zone).astimezone(dt.UTC)  # aware: binds as TIMESTAMP
        if self.family is TypeFamily.TIMESTAMP_NTZ:
            return wall  # naive: binds as TIMESTAMP_NTZ
        return wall.date()


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

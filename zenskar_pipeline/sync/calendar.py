"""The one calendar of a stream's partitions: which keys exist at `now`, what window each covers, and which
are the latest. It cuts windows exactly as `defs.assets.partitions_def` (Dagster's time-window partitions
definitions) does, without importing Dagster; `test_calendar.py` compares the two key for key.

What Dagster 1.13 does, observed, and what the calendar therefore does:
- Windows start at ticks of a cron schedule in the zone: daily, weekly (Sunday) and monthly at local midnight,
  hourly every real hour (Dagster steps one hour in UTC from a tick at minute 0).
- `start_date` (the spec's `start_key`) is read as wall-clock time with fold 0, and the first window opens at
  the first tick at or after it: an hourly start in a skipped hour, New York `2026-03-08-02:00`, opens at
  `2026-03-08-03:00`.
- end_offset 0 lists the windows that ended at or before `now`; end_offset 1 adds the window holding `now`.
  A naive `now` is wall-clock time in the partitions' zone (not the machine's).
- end_offset 1 also lists the first window one window early: once `now` is strictly inside the window
  before it. Daily from `2026-01-03`: no keys at `2026-01-02 00:00`, but `['2026-01-03']` at
  `2026-01-02 00:00:00.000001`.
- Spring forward, hourly: the skipped hour has no key, and the hour before it lasts until the clock resumes.
  New York 2026-03-08: `2026-03-08-01:00` is [01:00 EST, 03:00 EDT), then `2026-03-08-03:00`; there is no
  `2026-03-08-02:00`. London 2026-03-29: `2026-03-29-00:00` is [00:00 GMT, 02:00 BST), then
  `2026-03-29-02:00`. (Dagster's `has_partition_key` still accepts `2026-03-08-02:00` as an alias of the
  `03:00` window that `get_partition_keys` never lists; the calendar rejects it.)
- Fall back, hourly: the repeated hour is two partitions, and the second one's key carries its UTC offset.
  New York 2026-11-01: `2026-11-01-01:00` is [01:00 EDT, 01:00 EST) and `2026-11-01-01:00-0500` is
  [01:00 EST, 02:00 EST). London 2026-10-25: `2026-10-25-01:00` and `2026-10-25-01:00+0000`.
- Daily, weekly, monthly: keys do not change; a window holding a transition lasts 23 or 25 hours. Where
  midnight itself is skipped (America/Havana 2026-03-08) the window starts when the clock resumes; where it
  repeats (Havana 2026-11-01), at its first pass.
- A key is spelled as Dagster spells it: `2026-1-5` parses, but is not a key.
- Not covered: hourly windows where the offset changes by part of an hour (Australia/Lord_Howe). Dagster's
  keys drift to `:30` there (`2026-10-04-02:30`), and which minute it floors to depends on the date it runs.

Window bounds are naive wall-clock datetimes in the zone, with `fold=1` (PEP 495) on a time in the second pass
of a repeated hour: `2026-11-01-01:00-0500` starts at `datetime(2026, 11, 1, 1, 0, fold=1)`. Naive values keep
working wherever they are compared with wall-clock Arrow columns, and `fold` is enough for `bound` to name the
exact instant. Python ignores `fold` when it compares naive datetimes, so the calendar orders and joins
windows by `instant`, never by `start`.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.config import Granularity, PartitionSpec
from zenskar_pipeline.databricks.discovery import TypeFamily
from zenskar_pipeline.databricks.sql_text import ParameterValue

_HOUR = dt.timedelta(hours=1)
_EPOCH = dt.datetime(1970, 1, 1)
_DAY_MICROS = 86_400_000_000


@dataclass(frozen=True)
class Located:
    """Where partition-field values fall: per value its window's key (the nearest window's when outside),
    whether it is NULL or outside every window, and whether it is before the first window."""

    keys: pa.Array
    outside: pa.Array
    before_first: pa.Array


@dataclass(frozen=True)
class Window:
    """One partition: its Dagster key and `[start, end)` as wall-clock times in the partitions' time zone
    (`fold=1` on a time in the second pass of a repeated hour)."""

    key: str
    start: dt.datetime
    end: dt.datetime


class PartitionCalendar:
    """The windows of one stream's partitions definition, as Dagster cuts them, up to `now`.

    `first_start` opens the first window; `end` (exclusive) closes the latest one. Both are wall-clock times,
    like a window's bounds; there are no windows when `end` is not after `first_start`.
    """

    def __init__(self, spec: PartitionSpec, family: TypeFamily | None, now: dt.datetime) -> None:
        """`family` is the partition field's type (None: keys and windows only, no `bound`); `now` an aware
        instant, or wall-clock time in the zone.

        Raises ValueError when the field cannot hold a window bound (not a time, or DATE for hourly windows).
        """
        if family is not None and not family.is_time:
            raise ValueError(
                f"partitions.field must be a TIMESTAMP, TIMESTAMP_NTZ or DATE column, not {family}"
            )
        if family is TypeFamily.DATE and spec.granularity is Granularity.HOURLY:
            raise ValueError("hourly partitions need a TIMESTAMP or TIMESTAMP_NTZ partitions.field, not DATE")
        self.spec = spec
        self.family = family
        self.zone = ZoneInfo(spec.timezone)
        # Dagster is given `start_key`, not `start`: parse it as Dagster does, then round up to a tick.
        start = dt.datetime.strptime(spec.start_key, spec.granularity.key_format)
        floor = self.floor(start)
        self.first_start = floor if self.instant(floor) == self.instant(start) else self.next_start(floor)
        if now.tzinfo is None:
            now = now.replace(tzinfo=self.zone)  # as Dagster reads a naive effective time
        current = self.floor(now.astimezone(self.zone).replace(tzinfo=None))
        self.end = self.next_start(current) if spec.include_current else current
        first = self.instant(self.first_start)
        if spec.include_current and self.instant(self.end) == first and self.instant(current) != now:
            # Dagster lists the first window one window early (see the module's notes): match it.
            self.end = self.next_start(self.first_start)

    def instant(self, wall: dt.datetime) -> dt.datetime:
        """The UTC instant of wall-clock time `wall` (its `fold` picks the pass of a repeated hour; a time
        skipped by a spring-forward gap reads with the offset before it, as Dagster reads it)."""
        return wall.replace(tzinfo=self.zone).astimezone(dt.UTC)

    def _wall(self, instant: dt.datetime) -> dt.datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None)  # keeps fold

    def floor(self, wall: dt.datetime) -> dt.datetime:
        """The start of the window holding wall-clock time `wall` (weeks start on Sunday, as in Dagster)."""
        instant = self.instant(wall)
        local = instant.astimezone(self.zone)
        granularity = self.spec.granularity
        if granularity is Granularity.HOURLY:
            # Back to the last minute 0 in real time: a wall-clock floor would land in a skipped hour.
            past = dt.timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
            return self._wall(instant - past)
        day = dt.datetime.combine(local.date(), dt.time())
        if granularity is Granularity.DAILY:
            return day
        if granularity is Granularity.WEEKLY:
            return day - dt.timedelta(days=(day.weekday() + 1) % 7)
        return day.replace(day=1)

    def next_start(self, start: dt.datetime) -> dt.datetime:
        """The start of the window after the one starting at `start`."""
        granularity = self.spec.granularity
        if granularity is Granularity.HOURLY:
            return self._wall(self.instant(start) + _HOUR)
        if granularity is Granularity.DAILY:
            return start + dt.timedelta(days=1)
        if granularity is Granularity.WEEKLY:
            return start + dt.timedelta(days=7)
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)

    def _previous_start(self, start: dt.datetime) -> dt.datetime:
        granularity = self.spec.granularity
        if granularity is Granularity.HOURLY:
            return self._wall(self.instant(start) - _HOUR)
        if granularity is Granularity.DAILY:
            return start - dt.timedelta(days=1)
        if granularity is Granularity.WEEKLY:
            return start - dt.timedelta(days=7)
        return (start - dt.timedelta(days=1)).replace(day=1)

    def key(self, start: dt.datetime) -> str:
        """The Dagster key of the window starting at `start`: the second pass of a repeated hour carries its
        UTC offset (`2026-11-01-01:00-0500`)."""
        text = start.strftime(self.spec.granularity.key_format)
        if self.spec.granularity is Granularity.HOURLY and self._fallen_back(start):
            text += start.replace(tzinfo=self.zone).strftime("%z")
        return text

    def _fallen_back(self, wall: dt.datetime) -> dt.timedelta:
        """How far the clock fell back, when `wall` is in the second pass of a repeated hour (Dagster's
        `is_second_ambiguous_time`); zero otherwise."""
        if not wall.fold:
            return dt.timedelta(0)
        before = self.zone.utcoffset(wall.replace(fold=0)) or dt.timedelta(0)
        after = self.zone.utcoffset(wall) or dt.timedelta(0)
        return max(before - after, dt.timedelta(0))

    @property
    def first_key(self) -> str:
        return self.key(self.first_start)

    @property
    def last_key(self) -> str:
        """The latest window's key (the first window's, when there is none yet)."""
        last = self._previous_start(self.end)
        return self.key(last if self.instant(last) >= self.instant(self.first_start) else self.first_start)

    def all_windows(self) -> tuple[Window, ...]:
        """Every window of the definition, oldest first."""
        windows = []
        end = self.instant(self.end)
        start = self.first_start
        while self.instant(start) < end:
            following = self.next_start(start)
            windows.append(Window(self.key(start), start, following))
            start = following
        return tuple(windows)

    def keys(self) -> tuple[str, ...]:
        """Every key of the definition, oldest first: Dagster's `get_partition_keys()` at `now`."""
        return tuple(window.key for window in self.all_windows())

    def has_key(self, key: str) -> bool:
        """Whether `key` is one of the definition's keys."""
        try:
            self.window(key)
        except ValueError:
            return False
        return True

    def latest_keys(self, count: int) -> list[str]:
        """The latest partition and up to `count - 1` before it, oldest first (none before the first): the
        last `count` of Dagster's keys. (Not a Dagster key range over the last windows: Dagster caches keys by
        time window, and windows of a repeated hour compare equal, so a range can lose `2026-11-01-01:00`.)"""
        keys: list[str] = []
        first = self.instant(self.first_start)
        start = self._previous_start(self.end)
        while len(keys) < count and self.instant(start) >= first:
            keys.append(self.key(start))
            start = self._previous_start(start)
        return keys[::-1]

    def window(self, key: str) -> Window:
        """The window of a Dagster key; ValueError when the key is not one of this definition's."""
        parsed = self._parse(key)
        start = self.floor(parsed)
        if (
            self.instant(start) != self.instant(parsed)
            or self.key(start) != key  # a spelling Dagster never writes, or a skipped hour
            or self.instant(start) < self.instant(self.first_start)
            or self.instant(self.next_start(start)) > self.instant(self.end)
        ):
            raise ValueError(
                f"partition key {key!r} is not a partition of this stream (from {self.first_key}, "
                f"{self.spec.granularity}, up to the window ending {self.end:%Y-%m-%d %H:%M})"
            )
        return Window(key, start, self.next_start(start))

    def _parse(self, key: str) -> dt.datetime:
        """`key` as wall-clock time, read as Dagster's `dst_safe_strptime` reads it (an offset, if any,
        picks the pass of a repeated hour)."""
        key_format = self.spec.granularity.key_format
        try:
            return dt.datetime.strptime(key, key_format)
        except ValueError:
            pass
        try:
            return self._wall(dt.datetime.strptime(key, key_format + "%z"))
        except ValueError:
            raise ValueError(
                f"partition key {key!r} is not a {self.spec.granularity} key ({key_format})"
            ) from None

    def windows(self, keys: Sequence[str]) -> tuple[Window, ...]:
        """The windows of `keys`, which must be one contiguous run in order."""
        windows = tuple(self.window(key) for key in keys)
        for before, after in itertools.pairwise(windows):
            if self.instant(after.start) != self.instant(before.end):
                raise ValueError(
                    f"partition keys must be one contiguous range in order: {before.key} then {after.key}"
                )
        return windows

    def contiguous_ranges(self, keys: Iterable[str]) -> tuple[tuple[str, ...], ...]:
        """`keys` (all of them the definition's) in order, cut where a window does not follow the one before;
        ValueError for a key that is not the definition's."""
        ranges: list[list[str]] = []
        end = None
        for window in sorted((self.window(key) for key in set(keys)), key=lambda w: self.instant(w.start)):
            start = self.instant(window.start)
            if ranges and start == end:
                ranges[-1].append(window.key)
            else:
                ranges.append([window.key])
            end = self.instant(window.end)
        return tuple(tuple(run) for run in ranges)

    def locate(self, values: pa.Array | pa.ChunkedArray) -> Located:
        """The window of each partition-field value, placed by the same `bound`s the statements compare
        with (`[bound(start), bound(end))`), so that the rows a read returns for a window are the rows it
        assigns to that window; vectorized (a binary search over the windows' starts)."""
        column = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        starts, end, keys = self._located_windows
        ticks = _ticks(column)
        known = pc.is_valid(column).to_numpy(zero_copy_only=False)
        if len(starts) == 0:
            nowhere = pa.array(np.ones(len(column), dtype=bool))
            return Located(pa.nulls(len(column), pa.string()), nowhere, pa.array(np.zeros(len(column), bool)))
        index = np.clip(np.searchsorted(starts, ticks, side="right") - 1, 0, len(starts) - 1)
        before = known & (ticks < starts[0])
        outside = ~known | before | (ticks >= end)
        return Located(keys.take(pa.array(index)), pa.array(outside), pa.array(before))

    @functools.cached_property
    def _located_windows(self) -> tuple[np.ndarray, int, pa.Array]:
        """The windows' start bounds, the end bound and the keys, computed once per calendar."""
        windows = self.all_windows()
        starts = np.array([_bound_ticks(self.bound(w.start)) for w in windows], dtype=np.int64)
        end = _bound_ticks(self.bound(self.end)) if windows else 0
        return starts, end, pa.array([w.key for w in windows], pa.string())

    def bound(self, wall: dt.datetime) -> ParameterValue:
        """A window bound as the value to compare with the partition field: the UTC instant for TIMESTAMP,
        wall-clock time for TIMESTAMP_NTZ, the date for DATE.

        TIMESTAMP_NTZ cannot tell the two passes of a repeated hour apart, so a bound in the second pass reads
        the clock as it ran before falling back: `2026-11-01-01:00` is [01:00, 02:00) and
        `2026-11-01-01:00-0500` is [02:00, 02:00), empty. Wall-clock 01:30 belongs to the key spelled
        `2026-11-01-01:00`, the key its wall clock formats to.
        """
        if self.family is TypeFamily.TIMESTAMP:
            return self.instant(wall)  # aware: binds as TIMESTAMP
        if self.family is TypeFamily.TIMESTAMP_NTZ:
            return (wall + self._fallen_back(wall)).replace(fold=0)  # naive: binds as TIMESTAMP_NTZ
        if self.family is None:
            raise ValueError("a calendar built without the partition field's type has no bounds")
        return wall.date()


def _bound_ticks(bound: ParameterValue) -> int:
    """A window bound as microseconds: since the epoch in UTC for an instant, of the naive value for wall
    time, of midnight for a date (the units `_ticks` reads a column in)."""
    if isinstance(bound, dt.datetime):
        naive = bound.astimezone(dt.UTC).replace(tzinfo=None) if bound.tzinfo is not None else bound
        return (naive - _EPOCH) // dt.timedelta(microseconds=1)
    if isinstance(bound, dt.date):
        return (bound - _EPOCH.date()).days * _DAY_MICROS
    raise TypeError(f"not a window bound: {bound!r}")


def _ticks(column: pa.Array) -> np.ndarray:
    """A partition-field column as int64 microseconds, in `_bound_ticks`' units (NULLs as 0)."""
    kind = column.type
    if pa.types.is_date(kind):
        days = pc.cast(pc.cast(column, pa.date32()), pa.int32())
        micros = pc.multiply(pc.cast(days, pa.int64()), _DAY_MICROS)
    elif pa.types.is_timestamp(kind):
        unit = pa.timestamp("us", tz="UTC") if kind.tz is not None else pa.timestamp("us")
        micros = pc.cast(pc.cast(column, unit), pa.int64())
    else:
        raise ValueError(f"partition field has type {kind}, not a timestamp or date")
    return pc.fill_null(micros, 0).to_numpy(zero_copy_only=False)

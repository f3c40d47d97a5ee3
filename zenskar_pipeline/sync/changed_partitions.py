"""What a new Delta version of a source table asks to sync: the partitions whose rows changed (from the change
data feed) or that hold rows newer than the copy's high-water mark, as contiguous ranges of Dagster keys.

Each answer costs at most one grouped statement whose result is a few rows per window (day, hour or minute
buckets of the partition field), mapped to keys with the same calendar the reader uses.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from databricks.sql.exc import ServerOperationError

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable, TypeFamily
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.databricks.sql_text import ParameterValue, quote_identifier, quote_table
from zenskar_pipeline.destinations import DeltaDestination
from zenskar_pipeline.sync.change_feed import app_id
from zenskar_pipeline.sync.plan import PartitionCalendar, column_name, lower_cursor_bound, stream_calendar
from zenskar_pipeline.sync.reader import window_keys

log = logging.getLogger(__name__)

_TICK = dt.timedelta(microseconds=1)  # steps from a window's start into the window before it


@dataclass(frozen=True)
class Requested:
    """What one new version of a stream's table asks to run: nothing, the whole table, or ranges of keys."""

    ranges: tuple[tuple[str, ...], ...] = ()  # contiguous runs of partition keys, oldest first
    whole: bool = False  # an unpartitioned stream: the whole table
    reason: str = ""  # where the request comes from, for logs

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(itertools.chain.from_iterable(self.ranges))

    @property
    def empty(self) -> bool:
        return not self.whole and not self.ranges


def changed_partitions(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: DeltaDestination,
    since: int | None,
    version: int,
    *,
    now: dt.datetime,
) -> Requested:
    """What `version` of the stream's table asks to sync; `since` is the version seen before (None: the
    table's first sight, or a table that went back in time).

    - Unpartitioned: the whole table.
    - Change feed: the windows of every change of `(since, version]`, pre-images too (a row that moved asks
      for the window it left as well). First sight starts from the copy's synced-through version; a copy
      never synced, or a feed that cannot be read, asks for the latest partition (the run snapshots, or
      reports the missing history).
    - Cursor: the windows holding rows whose cursor is >= the copy's high-water mark minus `cursor_lag`
      at `version`, plus the latest partition and `lookback` earlier ones; without a copy only the latter
      (the history is a backfill's job, not a sensor's).
    - Full refresh: the latest partition and `lookback` earlier ones.

    Keys outside the partitions definition are dropped.
    """
    settings = stream.settings
    found = stream_calendar(stream, table, now)
    if found is None:
        return Requested(whole=True, reason="unpartitioned: the whole table")
    field, calendar = found
    bucket = bucket_expression(quote_identifier(field), calendar.family, calendar)
    table_sql = quote_table(*table.name.parts)
    if settings.change_feed:
        return _from_change_feed(session, stream, destination, calendar, bucket, table_sql, since, version)
    latest = latest_keys(calendar, settings.lookback + 1)
    if settings.sync_mode is SyncMode.FULL_REFRESH or settings.cursor_field is None:
        return Requested(contiguous_ranges(calendar, latest), reason="full refresh: the latest partitions")
    cursor = column_name(stream, table, settings.cursor_field, "cursor_field")
    marks = [m for m in destination.high_water_marks(cursor).values() if m is not None]
    if not marks:
        return Requested(contiguous_ranges(calendar, latest), reason="no copy yet: the latest partitions")
    mark = lower_cursor_bound(max(marks), settings.cursor_lag, stream.name)
    statement = (
        f"SELECT {bucket} AS bucket, count(*) AS n FROM {table_sql} VERSION AS OF {int(version)} "
        f"WHERE {quote_identifier(cursor)} >= :mark GROUP BY 1"
    )
    newer = _bucket_keys(session, calendar, statement, {"mark": mark})
    reason = f"rows with {cursor} >= {_text(mark)} at version {version}, and the latest partitions"
    return Requested(contiguous_ranges(calendar, newer | set(latest)), reason=reason)


def _from_change_feed(
    session: DatabricksSession,
    stream: ResolvedStream,
    destination: DeltaDestination,
    calendar: PartitionCalendar,
    bucket: str,
    table_sql: str,
    since: int | None,
    version: int,
) -> Requested:
    latest = contiguous_ranges(calendar, latest_keys(calendar, 1))
    if since is None:
        since = destination.transaction_version(app_id(stream.name))
        if since is None:
            return Requested(latest, reason="change feed, never synced: the first run snapshots the table")
        if since > version:
            return Requested(latest, reason=f"the copy is synced through {since}, after the latest {version}")
    if since >= version:
        return Requested(reason=f"the copy is synced through version {since}")
    # Names are validated identifiers and versions ints: written as literals, as table_changes takes them.
    changes = f"table_changes('{table_sql}', {int(since) + 1}, {int(version)})"
    statement = f"SELECT {bucket} AS bucket, count(*) AS n FROM {changes} GROUP BY 1"
    try:
        changed = _bucket_keys(session, calendar, statement, {})
    except ServerOperationError as error:
        # Feed off, vacuumed, or history expired: the run decides (on_missing_history) and says why.
        reason = (
            f"change feed unreadable from version {since + 1} ({_first_line(error)}): the latest partition"
        )
        log.warning("stream %s: %s", stream.name, reason)
        return Requested(latest, reason=reason)
    return Requested(contiguous_ranges(calendar, changed), reason=f"changes {since + 1}..{version}")


def bucket_expression(field_sql: str, family: TypeFamily, calendar: PartitionCalendar) -> str:
    """The partition field grouped as finely as a window boundary can fall: DATE as it is, TIMESTAMP_NTZ by
    wall-clock hour, TIMESTAMP by UTC hour when the zone's offsets are whole hours, else by minute."""
    if family is TypeFamily.DATE:
        return field_sql
    if family is TypeFamily.TIMESTAMP_NTZ:
        # Databricks' date_trunc takes and returns TIMESTAMP (an NTZ argument is read in the session's UTC):
        # cast back, so that the bucket is wall-clock time again, as the calendar compares it.
        return f"CAST(date_trunc('HOUR', {field_sql}) AS TIMESTAMP_NTZ)"
    if whole_hour_offsets(calendar):
        return f"date_trunc('HOUR', {field_sql})"
    return f"date_trunc('MINUTE', {field_sql})"


def whole_hour_offsets(calendar: PartitionCalendar) -> bool:
    """Whether the partitions' time zone is a whole number of hours from UTC throughout the definition
    (sampled on the first of every month), so that every window starts on a UTC hour."""
    zone = calendar.zone
    for year in range(calendar.first_start.year, calendar.end.year + 1):
        for month in range(1, 13):
            offset = dt.datetime(year, month, 1, tzinfo=zone).utcoffset() or dt.timedelta(0)
            if offset % dt.timedelta(hours=1):
                return False
    return True


def latest_keys(calendar: PartitionCalendar, count: int) -> list[str]:
    """The latest partition and up to `count - 1` before it, oldest first (none before `start`)."""
    keys: list[str] = []
    start = calendar.floor(calendar.end - _TICK)
    while len(keys) < count and start >= calendar.first_start:
        keys.append(calendar.key(start))
        start = calendar.floor(start - _TICK)
    return keys[::-1]


def contiguous_ranges(calendar: PartitionCalendar, keys: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """`keys` (all of them the calendar's) sorted and cut where a window does not follow the one before."""
    ranges: list[list[str]] = []
    end = None
    for window in sorted((calendar.window(key) for key in set(keys)), key=lambda w: w.start):
        if ranges and window.start == end:
            ranges[-1].append(window.key)
        else:
            ranges.append([window.key])
        end = window.end
    return tuple(tuple(keys) for keys in ranges)


def _bucket_keys(
    session: DatabricksSession,
    calendar: PartitionCalendar,
    statement: str,
    parameters: dict[str, ParameterValue],
) -> set[str]:
    buckets = session.query_table(statement, parameters)
    return window_keys(calendar, buckets.column("bucket"))


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else str(value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

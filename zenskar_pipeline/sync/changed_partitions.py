"""What a new Delta version of a source table asks to sync, as contiguous ranges of Dagster keys: the pieces
each sync mode's `requested` is made of (the latest partitions, the windows above the copy's high-water
mark, the windows the change data feed touched).

Each answer costs at most one grouped statement whose result is a few rows per window (day, hour or minute
buckets of the partition field), mapped to keys with the same calendar the reader uses.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from dataclasses import dataclass
from typing import Any

from databricks.sql.exc import ServerOperationError

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks import statements
from zenskar_pipeline.databricks.discovery import DiscoveredTable, TypeFamily
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.databricks.sql_text import quote_identifier
from zenskar_pipeline.destinations import Destination
from zenskar_pipeline.errors import first_line
from zenskar_pipeline.sync.calendar import PartitionCalendar
from zenskar_pipeline.sync.plan import lower_cursor_bound
from zenskar_pipeline.sync.reader import window_keys

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Look:
    """A new version of a partitioned stream's table, as the sensor saw it: what a strategy's `requested`
    works out what to sync from. `since` is the version seen before (None: first sight, or the table went
    back in time)."""

    session: DatabricksSession
    stream: ResolvedStream
    table: DiscoveredTable
    destination: Destination
    calendar: PartitionCalendar
    field: str  # the partition field, as the source spells it
    since: int | None
    version: int

    @property
    def bucket(self) -> str:
        column = self.table.column(self.field)
        assert column is not None  # stream_calendar found the field
        return bucket_expression(quote_identifier(self.field), column.family, self.calendar)


def latest_partitions(look: Look, reason: str) -> Requested:
    """The latest partition and `lookback` earlier ones."""
    keys = look.calendar.latest_keys(look.stream.settings.lookback + 1)
    return Requested(look.calendar.contiguous_ranges(keys), reason=reason)


def above_high_water_mark(look: Look, cursor: str) -> Requested:
    """The windows holding rows whose cursor is >= the copy's high-water mark minus `cursor_lag` at the new
    version (one grouped statement), plus the latest partition and `lookback` earlier ones; without a copy
    only the latter (the history is a backfill's job, not a sensor's)."""
    settings = look.stream.settings
    latest = look.calendar.latest_keys(settings.lookback + 1)
    marks = [m for m in look.destination.high_water_marks(cursor).values() if m is not None]
    if not marks:
        return Requested(look.calendar.contiguous_ranges(latest), reason="no copy yet: the latest partitions")
    mark = lower_cursor_bound(max(marks), settings.cursor_lag, look.stream.name)
    statement = statements.buckets_from_cursor(look.stream.table, look.version, look.bucket, cursor, mark)
    newer = _bucket_keys(look.session, look.calendar, statement)
    reason = f"rows with {cursor} >= {_text(mark)} at version {look.version}, and the latest partitions"
    return Requested(look.calendar.contiguous_ranges(newer | set(latest)), reason=reason)


def in_changes(look: Look, synced_through: int | None) -> Requested:
    """The windows of every change of `(since, version]`, pre-images too (a row that moved asks for the
    window it left as well). First sight starts from the copy's synced-through version (`synced_through`);
    a copy never synced, or a feed that cannot be read, asks for the latest partition (the run snapshots,
    or reports the missing history)."""
    calendar, since, version = look.calendar, look.since, look.version
    latest = calendar.contiguous_ranges(calendar.latest_keys(1))
    if since is None:
        since = synced_through
        if since is None:
            return Requested(latest, reason="change feed, never synced: the first run snapshots the table")
        if since > version:
            return Requested(latest, reason=f"the copy is synced through {since}, after the latest {version}")
    if since >= version:
        return Requested(reason=f"the copy is synced through version {since}")
    statement = statements.buckets_of_changes(look.stream.table, since + 1, version, look.bucket)
    try:
        changed = _bucket_keys(look.session, calendar, statement)
    except ServerOperationError as error:
        # Feed off, vacuumed, or history expired: the run decides (on_missing_history) and says why.
        reason = (
            f"change feed unreadable from version {since + 1} ({first_line(error)}): the latest partition"
        )
        log.warning("stream %s: %s", look.stream.name, reason)
        return Requested(latest, reason=reason)
    return Requested(calendar.contiguous_ranges(changed), reason=f"changes {since + 1}..{version}")


def bucket_expression(field_sql: str, family: TypeFamily, calendar: PartitionCalendar) -> str:
    """The partition field grouped as finely as a window boundary of `calendar` can fall."""
    return statements.bucket_expression(
        field_sql,
        wall_clock=family is TypeFamily.TIMESTAMP_NTZ,
        whole_hours=family is TypeFamily.TIMESTAMP and whole_hour_offsets(calendar),
        date=family is TypeFamily.DATE,
    )


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


def _bucket_keys(
    session: DatabricksSession, calendar: PartitionCalendar, statement: statements.Statement
) -> set[str]:
    buckets = session.query_table(statement)
    return window_keys(calendar, buckets.column("bucket"))


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else str(value)

"""After a sync: figures that check the copy against the source (row counts) and against itself (keys).

- Row counts, for full-refresh streams (the run's windows at the version read) and change-feed deduped
  streams (every window at the synced-through version): one `COUNT(*)` of the source at that version
  against the copy's count from its Delta log (soft-deleted rows left out).
- Duplicate keys, for deduped copies: key values held by more than one row of the whole copy.
Every run is checked, also one that found nothing new: Dagster expects each declared check to be answered,
so such a run costs the `COUNT(*)` too (the sync itself still reads nothing).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.databricks.sql_text import ParameterValue, quote_identifier, quote_table
from zenskar_pipeline.destinations import DeltaDestination
from zenskar_pipeline.sync.plan import column_name, stream_calendar
from zenskar_pipeline.sync.report import PartitionReport


@dataclass(frozen=True)
class RowCountCheck:
    source_rows: int
    copy_rows: int
    source_version: int
    partitions: tuple[str, ...] | None  # the windows compared (None: the whole table)

    @property
    def passed(self) -> bool:
        return self.source_rows == self.copy_rows


@dataclass(frozen=True)
class Verification:
    row_count: RowCountCheck | None  # None: not a stream this check applies to
    duplicate_keys: int | None  # None: not a deduped stream
    primary_key: tuple[str, ...] = ()


def counts_rows(stream: ResolvedStream) -> bool:
    """Whether the stream's copy should hold exactly the source's rows (the row count check applies)."""
    settings = stream.settings
    return settings.sync_mode is SyncMode.FULL_REFRESH or (
        settings.change_feed and settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED
    )


def verify(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: DeltaDestination,
    reports: Sequence[PartitionReport],
    *,
    now: dt.datetime | None = None,
) -> Verification:
    """The check figures for a finished run (see the module docstring)."""
    if not reports:
        return Verification(None, None)
    settings = stream.settings
    row_count = None
    if counts_rows(stream):
        if settings.change_feed:
            version = int(reports[0].cursor_after)  # the synced-through version
            partitions = None  # changes land in any window: compare every window
        else:
            version = reports[0].source_version
            partitions = None if settings.partitions is None else [str(r.partition) for r in reports]
        source = _source_rows(session, stream, table, version, partitions, now or dt.datetime.now(dt.UTC))
        if settings.change_feed:
            copy = destination.live_row_count()
        else:
            copy = sum(destination.row_counts(partitions).values())
        row_count = RowCountCheck(source, copy, version, None if partitions is None else tuple(partitions))
    duplicates = None
    key: tuple[str, ...] = ()
    if settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED:
        declared = settings.primary_key or table.primary_key or ()
        key = tuple(column_name(stream, table, name, "primary_key") for name in declared)
        duplicates = destination.duplicate_keys(key) if key else None
    return Verification(row_count, duplicates, key)


def _source_rows(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    version: int,
    partitions: list[str] | None,
    now: dt.datetime,
) -> int:
    """The source's rows at `version` inside the given windows (None: every window; the whole table when
    the stream is unpartitioned)."""
    sql = f"SELECT COUNT(*) AS n FROM {quote_table(*table.name.parts)} VERSION AS OF {int(version)}"
    parameters: dict[str, ParameterValue] = {}
    found = stream_calendar(stream, table, now)
    if found is not None:
        field, calendar = found
        windows = calendar.windows(partitions) if partitions is not None else calendar.all_windows()
        if not windows:
            return 0
        parameters = {"start": calendar.bound(windows[0].start), "end": calendar.bound(windows[-1].end)}
        quoted = quote_identifier(field)
        sql += f" WHERE {quoted} >= :start AND {quoted} < :end"
    row = session.query_one(sql, parameters)
    return int(row["n"]) if row is not None else 0

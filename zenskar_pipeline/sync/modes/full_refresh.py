"""`full_refresh`: each run makes the scope (its windows, or the whole table) exactly the source's rows at
the version read, in one overwrite commit; nothing is committed when the copy already holds that version.

Checks: the source's and the copy's row counts in each of the run's windows. The sensor asks for the latest
partition and `lookback` earlier ones. No change-feed variant: a full read replaces what a feed would
patch.
"""

from __future__ import annotations

from collections.abc import Sequence

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.sql_text import quote_identifier
from zenskar_pipeline.destinations import Destination, WriteResult
from zenskar_pipeline.destinations.landing import SOURCE_VERSION
from zenskar_pipeline.sync import checks, cursor
from zenskar_pipeline.sync.changed_partitions import Look, Requested, bucket_expression, latest_partitions
from zenskar_pipeline.sync.checks import CheckOutcome, CheckSpec
from zenskar_pipeline.sync.modes.base import FEED_ONLY_SETTINGS, EventRows, SyncRun, SyncStrategy
from zenskar_pipeline.sync.plan import stream_calendar
from zenskar_pipeline.sync.report import PartitionReport


class FullRefresh(SyncStrategy):
    mode = SyncMode.FULL_REFRESH
    unused_settings = FEED_ONLY_SETTINGS
    refuses_change_feed = (
        "full_refresh copies the whole scope each run and cannot apply the change feed",
        "set change_feed: false, or sync_mode: incremental_append_deduped to apply the change feed",
    )

    def sync(self, run: SyncRun) -> list[PartitionReport]:
        read = cursor.plan_read(run, self.cursor(run.stream, run.table), by_cursor=False)
        destination, keys = run.destination, read.partition_keys
        if destination.holds_version(keys, read.version):
            return cursor.reports(read, {}, {}, None)  # the copy already holds this version's rows
        deleted = destination.row_counts(keys) if destination.exists() else {}
        rows = cursor.landable_rows(run, read)
        result: WriteResult = destination.replace(rows, keys, source_version=read.version)
        written = cursor.written_by_partition(result, keys is not None)
        return cursor.reports(read, written, deleted, result.version)

    def checks(self, stream: ResolvedStream) -> list[CheckSpec]:
        return [*super().checks(stream), checks.ROW_COUNT]

    def verify(self, run: SyncRun, reports: Sequence[PartitionReport]) -> list[CheckOutcome]:
        """The row count of the run's windows at the version read."""
        outcomes = super().verify(run, reports)
        version = reports[0].source_version
        found = stream_calendar(run.stream, run.table, run.now)
        if found is None:
            copy_rows = sum(run.destination.row_counts(None).values())
            outcomes.append(checks.row_count(run.session, run.table.name, version, copy_rows))
            return outcomes
        field, calendar = found
        keys = [str(report.partition) for report in reports]
        column = run.table.column(field)
        assert column is not None  # stream_calendar found the field
        field_sql = quote_identifier(field)
        outcomes.append(
            checks.row_count_by_window(
                run.session,
                run.table.name,
                version,
                run.destination.row_counts(keys),
                field_sql=field_sql,
                bucket_sql=bucket_expression(field_sql, column.family, calendar),
                calendar=calendar,
                windows=calendar.windows(keys),
            )
        )
        return outcomes

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        """By key; a key the source holds twice is one event (the first by the delivery's own order)."""
        key = self.primary_key(stream, table)
        return EventRows(key, latest_by=(SOURCE_VERSION,)) if key else None

    def requested(self, look: Look) -> Requested:
        return latest_partitions(look, "full refresh: the latest partitions")

    def holds_whole_table(self, stream: ResolvedStream, destination: Destination, version: int) -> bool:
        """Every row of the copy was read at `version`: a run would write what is there."""
        return destination.holds_version(None, version)

"""`incremental_append`: a history of row versions. Each partition reads its rows whose cursor is at or
above its high-water mark minus `cursor_lag` (the greatest cursor landed there), and lands those not landed
yet: matched on (primary key, cursor), or without a key on whole-row content counted as a multiset (two
identical events stay two). A newer version of a row (a greater cursor) is appended.

A copy's first version is written in one commit whatever the read's size, its rows staged on local disk.
Later, keyed reads are written a million rows a commit, so memory stays bounded; key-less appends number
identical rows within one write, so they are written at once. The sensor asks for the windows holding rows
above the copy's high-water mark, and the latest partitions.
"""

from __future__ import annotations

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.destinations import AppendNew
from zenskar_pipeline.destinations.landing import ROW_ID, SOURCE_VERSION
from zenskar_pipeline.sync import cursor
from zenskar_pipeline.sync.changed_partitions import Look, Requested, above_high_water_mark
from zenskar_pipeline.sync.modes.base import FEED_ONLY_SETTINGS, EventRows, SyncRun, SyncStrategy
from zenskar_pipeline.sync.report import PartitionReport


class IncrementalAppend(SyncStrategy):
    mode = SyncMode.INCREMENTAL_APPEND
    reads_by_cursor = True
    unused_settings = FEED_ONLY_SETTINGS

    def sync(self, run: SyncRun) -> list[PartitionReport]:
        field = self.cursor(run.stream, run.table)
        key = self.primary_key(run.stream, run.table)
        first = cursor.creates_copy(run)
        read = cursor.plan_read(run, field, by_cursor=True)
        landing_key = (*key, str(field)) if key else None
        if first:
            return cursor.create_copy(run, read, AppendNew(landing_key))
        chunk_rows = cursor.MERGE_CHUNK_ROWS if key else None  # read now: tests lower it
        return cursor.land_chunks(
            run,
            read,
            chunk_rows,
            lambda rows: run.destination.append_new(rows, landing_key, source_version=read.version),
        )

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        """With a key, a key is one event and a newer version of it (a greater cursor) a correction, never
        a second event; without one, every row is an event (`_zenskar_row_id`: two identical rows stay
        two)."""
        key = self.primary_key(stream, table)
        if not key:
            return EventRows((ROW_ID,))
        cursor_field = self.cursor(stream, table)
        assert cursor_field is not None
        return EventRows(key, latest_by=(cursor_field, SOURCE_VERSION))

    def requested(self, look: Look) -> Requested:
        return above_high_water_mark(look, str(self.cursor(look.stream, look.table)))

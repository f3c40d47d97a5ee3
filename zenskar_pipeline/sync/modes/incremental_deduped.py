"""`incremental_append_deduped`: reads as `incremental_append` (each partition from its high-water mark
minus `cursor_lag` on), then merges on the primary key across the whole copy: one row per key, the greatest
by (cursor, source version, content); an unchanged row is not rewritten; a row whose partition field
changed moves to its new window and leaves nothing behind. Deletes at the source are not seen by a cursor.

A copy's first version is written in one commit whatever the read's size, its rows staged on local disk;
later reads are written a million rows a commit; the greatest version of a key wins whichever chunk brings it.
Checks: primary keys unique. The sensor asks as for `incremental_append`.
"""

from __future__ import annotations

from collections.abc import Sequence

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.destinations import MergeDeduped
from zenskar_pipeline.sync import checks, cursor
from zenskar_pipeline.sync.changed_partitions import Look, Requested, above_high_water_mark
from zenskar_pipeline.sync.checks import CheckOutcome, CheckSpec
from zenskar_pipeline.sync.modes.base import FEED_ONLY_SETTINGS, SyncRun, SyncStrategy
from zenskar_pipeline.sync.report import PartitionReport


class IncrementalDeduped(SyncStrategy):
    mode = SyncMode.INCREMENTAL_APPEND_DEDUPED
    reads_by_cursor = True
    needs_primary_key = "keeps one row per key"
    unused_settings = FEED_ONLY_SETTINGS

    def sync(self, run: SyncRun) -> list[PartitionReport]:
        field = self.cursor(run.stream, run.table)
        key = self.primary_key(run.stream, run.table)
        first = cursor.creates_copy(run)
        read = cursor.plan_read(run, field, by_cursor=True)
        if first:
            return cursor.create_copy(run, read, MergeDeduped(key, field))
        return cursor.land_chunks(
            run,
            read,
            cursor.MERGE_CHUNK_ROWS,
            lambda rows: run.destination.merge_deduped(rows, key, field, source_version=read.version),
        )

    def checks(self, stream: ResolvedStream) -> list[CheckSpec]:
        return [*super().checks(stream), checks.UNIQUE_KEY]

    def verify(self, run: SyncRun, reports: Sequence[PartitionReport]) -> list[CheckOutcome]:
        key = self.primary_key(run.stream, run.table)
        earlier = run.earlier_checks.get(checks.UNIQUE_KEY.name)
        return [*super().verify(run, reports), checks.unique_key(run.destination, key, earlier)]

    def requested(self, look: Look) -> Requested:
        return above_high_water_mark(look, str(self.cursor(look.stream, look.table)))

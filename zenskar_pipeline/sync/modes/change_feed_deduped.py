"""`incremental_append_deduped` with `change_feed: true`: the copy holds one row per primary key, as the
source's change data feed leaves it. Per key the last change wins (commit-version order; within one commit
an insert over a delete); inserts and updates replace the row (moving it if its window changed); deletes
remove it, or with `deletes: soft` keep it with `_zenskar_deleted = true` (a key inserted again comes back
to life). A row that moved outside every window leaves the copy.

Checks: the source's rows at the synced-through version in every window against the copy's live rows, and
unique keys. The feed's flow is `sync.feed`'s; the sensor asks for the windows the changes touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.config import Deletes, ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.destinations import ChangeAction, WriteResult
from zenskar_pipeline.destinations.landing import DELETED, constant, set_column
from zenskar_pipeline.sync import checks
from zenskar_pipeline.sync.checks import CheckOutcome, CheckSpec
from zenskar_pipeline.sync.feed import ChangeFeedStrategy, Changes, Feed
from zenskar_pipeline.sync.modes.base import EventRows, SyncRun
from zenskar_pipeline.sync.plan import stream_calendar
from zenskar_pipeline.sync.report import PartitionReport


def _soft(stream: ResolvedStream) -> bool:
    return stream.settings.deletes is Deletes.SOFT


class ChangeFeedDeduped(ChangeFeedStrategy):
    mode = SyncMode.INCREMENTAL_APPEND_DEDUPED
    needs_primary_key = "keeps one row per key"
    keeps_tombstones = True

    def snapshot_columns(self, run: SyncRun, rows: pa.Table) -> pa.Table:
        if not _soft(run.stream):
            return rows
        return set_column(rows, DELETED, constant(False, pa.bool_(), rows.num_rows))

    def land(self, feed: Feed, changes: Changes, version: int) -> WriteResult:
        run = feed.run
        soft = _soft(run.stream)
        delete = pc.equal(changes.change_type, "delete")
        actions = pc.if_else(
            delete,
            ChangeAction.DELETE.value,
            pc.if_else(changes.outside, ChangeAction.REMOVE.value, ChangeAction.UPSERT.value),
        )
        # A changed key's row can only be where its changes say it was: the partitions of its pre-images,
        # deletes and post-images. Not with soft deletes: a tombstone stays where its key was deleted, and
        # a later insert of the key must find it there.
        prune = feed.calendar is not None and not soft
        return run.destination.apply_changes(
            changes.rows,
            actions,
            self.primary_key(run.stream, run.table),
            soft_deletes=soft,
            app_transaction=feed.transaction(version),
            partitions=list(changes.windows) if prune else None,
        )

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        """By key; a row the source deleted (kept with `deletes: soft`) is no event."""
        key = self.primary_key(stream, table)
        soft = stream.settings.deletes is Deletes.SOFT
        return EventRows(key, where=f"{DELETED} IS NOT TRUE" if soft else None)

    def checks(self, stream: ResolvedStream) -> list[CheckSpec]:
        return [*super().checks(stream), checks.ROW_COUNT, checks.UNIQUE_KEY]

    def verify(self, run: SyncRun, reports: Sequence[PartitionReport]) -> list[CheckOutcome]:
        """Changes land in any window: every window is compared, at the synced-through version."""
        outcomes = super().verify(run, reports)
        version = int(reports[0].cursor_after)
        copy_rows = run.destination.live_row_count()
        found = stream_calendar(run.stream, run.table, run.now)
        field, calendar = found if found is not None else (None, None)
        outcomes.append(
            checks.row_count(
                run.session, run.table.name, version, copy_rows, partition_field=field, calendar=calendar
            )
        )
        key = self.primary_key(run.stream, run.table)
        outcomes.append(
            checks.unique_key(run.destination, key, run.earlier_checks.get(checks.UNIQUE_KEY.name))
        )
        return outcomes

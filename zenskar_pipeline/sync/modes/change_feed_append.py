"""`incremental_append` with `change_feed: true`: every change of the source's change data feed lands as a
row of its own, with its `_zenskar_change_type` (`insert`, `update_postimage`, `delete`; `snapshot` for the
rows of a snapshot) and its commit version as `_zenskar_source_version`; reading the same changes again
lands nothing (rows are told apart by content and version).

The feed's flow (snapshot, changes, rebuild, missing history) is `sync.feed`'s; the sensor asks for the
windows the changes touched.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.destinations import WriteResult
from zenskar_pipeline.destinations.landing import CHANGE_TYPE, SOURCE_VERSION, SYNCED_AT, constant, set_column
from zenskar_pipeline.sync.feed import SNAPSHOT, ChangeFeedStrategy, Changes, Feed
from zenskar_pipeline.sync.modes.base import EventRows, SyncRun


class ChangeFeedAppend(ChangeFeedStrategy):
    mode = SyncMode.INCREMENTAL_APPEND

    def snapshot_columns(self, run: SyncRun, rows: pa.Table) -> pa.Table:
        return set_column(rows, CHANGE_TYPE, constant(SNAPSHOT, pa.string(), rows.num_rows))

    def land(self, feed: Feed, changes: Changes, version: int) -> WriteResult:
        rows = changes.rows.append_column(CHANGE_TYPE, changes.change_type)
        return feed.run.destination.append_new(
            rows.filter(pc.invert(changes.outside)),
            None,
            app_transaction=feed.transaction(version),
            per_source_version=True,
        )

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        """By key, the key's latest change (an update is a correction of the event, a delete its removal);
        without a key an update could not be told from a new event, so there is none."""
        key = self.primary_key(stream, table)
        if not key:
            return None
        # An overwrite deletes and inserts a key in one commit version: the insert is what the key holds.
        not_deleted = f"{CHANGE_TYPE} <> 'delete'"
        return EventRows(key, latest_by=(SOURCE_VERSION, SYNCED_AT), keep=not_deleted, prefer=not_deleted)

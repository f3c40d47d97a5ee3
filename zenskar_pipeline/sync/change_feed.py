"""Change-feed syncs: the copy follows the source's Delta change data feed, version by version.

The copy records the source version it is synced through as a Delta application transaction
(`zenskar-pipeline:<stream>`), committed with the data, so a run that dies before its commit changes
nothing and the next one starts from the same version. A run:
- with no synced-through version (the first run of any kind): snapshots the whole table at the current
  version, one overwrite commit, and reports every partition it filled;
- with the copy already at the current version: one statement (`DESCRIBE HISTORY`), no commit;
- otherwise: reads `table_changes(table, synced + 1, current)` in one statement and applies it in one
  commit, whichever partitions the changes touch (deduped: replace or delete by key, last change wins;
  append: every change with its `_zenskar_change_type`);
- `rebuild` (a backfill of windows): rebuilds the scope's windows as of the synced-through version, so the
  copy stays consistent with one version; the next run brings it current.
History the feed cannot reach (feed off, vacuumed, table replaced) is an error naming table and versions,
or with `on_missing_history: resnapshot` a new snapshot that overwrites the copy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from databricks.sql.exc import ServerOperationError

from zenskar_pipeline.config import OnMissingHistory, ResolvedStream, SyncMode
from zenskar_pipeline.config.models import Deletes
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.databricks.sql_text import quote_identifier, quote_table
from zenskar_pipeline.destinations import PARTITION, SOURCE_VERSION, DeltaDestination
from zenskar_pipeline.destinations.change_merge import ACTION, DELETE, REMOVE, UPSERT, apply_deduped_changes
from zenskar_pipeline.destinations.delta import AppTransaction, WriteResult
from zenskar_pipeline.destinations.landing import CHANGE_TYPE, DELETED, constant, count_values, set_column
from zenskar_pipeline.sync.plan import (
    PartitionCalendar,
    Scope,
    SyncPlan,
    column_name,
    scope_windows,
    stream_calendar,
)
from zenskar_pipeline.sync.reader import classify, current_version, read_statement
from zenskar_pipeline.sync.report import PartitionReport

log = logging.getLogger(__name__)

APP_ID_PREFIX = "zenskar-pipeline:"
SNAPSHOT = "snapshot"  # the change type of rows a snapshot landed (append mode)
# Databricks' error classes for a change feed that cannot cover the asked-for versions.
MISSING_HISTORY = (
    "DELTA_MISSING_CHANGE_DATA",
    "DELTA_CHANGE_DATA_FILE_NOT_FOUND",
    "DELTA_VERSION_NOT_FOUND",
    "DELTA_CDC_START_VERSION_AFTER_LATEST",
)
_CHANGE, _VERSION = "_change_type", "_commit_version"


def app_id(stream_name: str) -> str:
    """The Delta application id under which a stream's copy records its synced-through source version."""
    return f"{APP_ID_PREFIX}{stream_name}"


class ChangeFeedHistoryError(ValueError):
    """The change feed cannot reach back to the copy's synced-through version."""


@dataclass
class _Counts:
    """Per partition (None: unpartitioned) counts of one run."""

    read: Counter[str | None]
    written: Counter[str | None]
    deleted: Counter[str | None]
    outside: Counter[str | None]
    touched: set[str | None]  # partitions a change entered or left

    @classmethod
    def empty(cls) -> _Counts:
        return cls(Counter(), Counter(), Counter(), Counter(), set())


def run_change_feed_sync(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: DeltaDestination,
    scope: Scope,
    *,
    now: dt.datetime,
    rebuild: bool = False,
) -> list[PartitionReport]:
    """Bring the copy to the source's current version through its change feed (see the module docs)."""
    started = time.monotonic()
    table_sql = quote_table(*table.name.parts)
    synced = destination.transaction_version(app_id(stream.name))
    version = current_version(session, table_sql)  # statement 1
    feed = _FeedPlan.make(stream, table, scope, version, now)
    counts = _Counts.empty()
    note = None
    if synced is None:
        result = _snapshot(session, feed, destination, counts)
    elif synced > version:
        # The table went back in time (replaced or restored): its feed cannot explain the copy.
        result, note = _missing_history(
            session,
            feed,
            destination,
            counts,
            synced,
            f"the copy is synced through version {synced}, "
            f"but the table's latest version is {version} (was it replaced or restored?)",
        )
    elif rebuild:
        result = _rebuild(session, feed, destination, counts, synced)
        version = synced
    elif synced == version:
        result = WriteResult(0, 0, None, {})
    else:
        try:
            changes = _read_changes(session, feed, synced + 1, version)
        except ServerOperationError as error:
            if not any(f"[{name}]" in str(error) for name in MISSING_HISTORY):
                raise
            result, note = _missing_history(
                session,
                feed,
                destination,
                counts,
                synced,
                f"the change data feed cannot be read from version {synced + 1} to {version}: "
                f"{_first_line(error)}",
            )
        else:
            result = _apply(feed, destination, changes, counts, synced, version)
    touched = counts.touched | set(counts.read) | set(counts.written) | set(counts.deleted)
    keys = _report_keys(feed, touched)
    seconds = time.monotonic() - started
    after = synced if result.version is None and note is None else version
    return [
        PartitionReport(
            partition=key,
            rows_read=counts.read[key],
            rows_written=counts.written[key],
            rows_deleted=counts.deleted[key],
            skipped_null_cursor=0,
            skipped_outside_windows=counts.outside[key],
            source_version=version,
            cursor_before=synced,
            cursor_after=after,
            seconds=seconds,
            destination_version=result.version,
            note=note,
        )
        for key in keys
    ]


@dataclass(frozen=True)
class _FeedPlan:
    """A change-feed run's view of the stream: every window of its definition (changes land anywhere)."""

    stream: ResolvedStream
    everywhere: SyncPlan  # all windows, at the current version: snapshots and change classification
    scope: Scope
    calendar: PartitionCalendar | None
    primary_key: tuple[str, ...]

    @classmethod
    def make(
        cls, stream: ResolvedStream, table: DiscoveredTable, scope: Scope, version: int, now: dt.datetime
    ) -> _FeedPlan:
        settings = stream.settings
        found = stream_calendar(stream, table, now)
        field, calendar = found if found is not None else (None, None)
        scope_windows(stream, calendar, scope)  # the asked-for keys must be this stream's
        declared = settings.primary_key or table.primary_key or ()
        key = tuple(column_name(stream, table, name, "primary_key") for name in declared)
        if settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED and not key:
            raise ValueError(
                f"stream {stream.name}: incremental_append_deduped with change_feed needs a primary_key "
                "(set primary_key, or declare a PRIMARY KEY constraint on the table)"
            )
        windows = calendar.all_windows() if calendar is not None else ()
        everywhere = SyncPlan(
            stream=stream.name,
            mode=SyncMode.FULL_REFRESH,  # no cursor: the version decides what is read
            table_sql=quote_table(*table.name.parts),
            version=version,
            columns=tuple(settings.columns.select(table.column_names)),
            cursor_field=None,
            partition_field=field,
            calendar=calendar,
            windows=windows,
            cursor_from={},
            reads_before_first=calendar is not None,
            reads_after_last=calendar is not None,
        )
        return cls(stream, everywhere, scope, calendar, key)

    @property
    def deduped(self) -> bool:
        return self.stream.settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED

    @property
    def soft_deletes(self) -> bool:
        return self.deduped and self.stream.settings.deletes is Deletes.SOFT

    def transaction(self, version: int) -> AppTransaction:
        return AppTransaction(app_id(self.stream.name), version)

    def whole(self, version: int) -> SyncPlan:
        """Every row of the table at `version` (a snapshot reads without a WHERE clause)."""
        return _with(self.everywhere, version=version, windows=self.everywhere.windows)

    def landing_columns(self, rows: pa.Table, change_type: str | None) -> pa.Table:
        """The system columns the mode's copy carries besides those the writer sets."""
        if self.soft_deletes:
            rows = set_column(rows, DELETED, constant(False, pa.bool_(), rows.num_rows))
        if not self.deduped:
            rows = set_column(rows, CHANGE_TYPE, constant(change_type, pa.string(), rows.num_rows))
        return rows


def _with(plan: SyncPlan, **changes: Any) -> SyncPlan:
    return dataclasses.replace(plan, **changes)


def _snapshot(
    session: DatabricksSession, feed: _FeedPlan, destination: DeltaDestination, counts: _Counts
) -> WriteResult:
    """The whole table at the current version becomes the copy, in one overwrite commit."""
    plan = feed.everywhere
    columns = ", ".join(quote_identifier(name) for name in plan.columns)
    statement = f"SELECT {columns} FROM {plan.table_sql} VERSION AS OF {int(plan.version)}"
    return _replace_with(session, feed, destination, counts, statement, {}, plan, None, rebuild=False)


def _rebuild(
    session: DatabricksSession, feed: _FeedPlan, destination: DeltaDestination, counts: _Counts, synced: int
) -> WriteResult:
    """The scope's windows as of the synced-through version (soft-deleted rows stay)."""
    everywhere = feed.everywhere
    if feed.calendar is None:
        plan = _with(everywhere, version=synced)
        statement = f"SELECT {', '.join(quote_identifier(c) for c in plan.columns)} FROM {plan.table_sql} "
        statement += f"VERSION AS OF {int(synced)}"
        return _replace_with(session, feed, destination, counts, statement, {}, plan, None, rebuild=True)
    keys = list(feed.scope.partition_keys or ())
    windows = feed.calendar.windows(keys)
    plan = _with(
        everywhere,
        version=synced,
        windows=windows,
        reads_before_first=False,  # rows outside the rebuilt windows belong to other partitions
        reads_after_last=False,
    )
    statement, parameters = read_statement(plan)
    return _replace_with(session, feed, destination, counts, statement, parameters, plan, keys, rebuild=True)


def _replace_with(
    session: DatabricksSession,
    feed: _FeedPlan,
    destination: DeltaDestination,
    counts: _Counts,
    statement: str,
    parameters: dict[str, Any],
    plan: SyncPlan,
    partitions: list[str] | None,
    *,
    rebuild: bool,
) -> WriteResult:
    """`plan`'s rows (read by `statement` at `plan.version`) replace `partitions` of the copy (None: all of
    it). A snapshot records its version as the synced-through one; a rebuild, as of that version already,
    keeps soft-deleted rows, which the source no longer has."""
    reader = session.query_reader(statement, parameters)
    schema = feed.landing_columns(classify(plan, reader.schema.empty_table()).rows, SNAPSHOT).schema

    def landable() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            classified = classify(plan, pa.Table.from_batches([batch], reader.schema))
            keys = classified.reported_under
            counts.read.update(count_values(keys.filter(classified.landable)))
            counts.outside.update(count_values(keys.filter(classified.outside)))
            yield from feed.landing_columns(classified.rows, SNAPSHOT).cast(schema).to_batches()

    rows = pa.RecordBatchReader.from_batches(schema, landable())
    result = destination.replace(
        rows,
        partitions,
        source_version=plan.version,
        app_transaction=None if rebuild else feed.transaction(plan.version),
        keep_tombstones=rebuild and feed.soft_deletes,
    )
    counts.written.update(result.rows_by_partition or {})
    return result


def _read_changes(session: DatabricksSession, feed: _FeedPlan, first: int, last: int) -> pa.Table:
    """Every change of versions `first..last` (inclusive), update pre-images too (they name the partition
    a moved row left), in commit-version order."""
    plan = feed.everywhere
    columns = ", ".join(quote_identifier(name) for name in (*plan.columns, _CHANGE, _VERSION))
    # Names are validated identifiers (no quotes can occur), versions are ints: both written as literals,
    # as Databricks takes them in table_changes.
    source = f"table_changes('{plan.table_sql}', {int(first)}, {int(last)})"
    changes = session.query_table(f"SELECT {columns} FROM {source}")
    order = pc.sort_indices(changes, sort_keys=[(_VERSION, "ascending")])
    return changes.take(order)


def _apply(
    feed: _FeedPlan,
    destination: DeltaDestination,
    changes: pa.Table,
    counts: _Counts,
    synced: int,
    version: int,
) -> WriteResult:
    """Land the changes of `(synced, version]` and record `version`, in one commit."""
    plan = feed.everywhere
    change_type = changes.column(_CHANGE).combine_chunks()
    commit_version = pc.cast(changes.column(_VERSION).combine_chunks(), pa.int64())
    classified = classify(plan, changes.select(list(plan.columns)))
    keys = classified.reported_under
    is_pre = pc.equal(change_type, "update_preimage")
    is_delete = pc.equal(change_type, "delete")
    inside = pc.invert(classified.outside)
    counts.outside.update(count_values(keys.filter(pc.and_(classified.outside, pc.invert(is_pre)))))
    # A pre-image's partition is touched: the row was there before its update (it may have moved).
    counts.touched.update(count_values(keys.filter(pc.and_(inside, is_pre))))
    landed = pc.and_(inside, pc.invert(is_pre))
    counts.read.update(count_values(keys.filter(landed)))
    counts.deleted.update(count_values(keys.filter(pc.and_(landed, is_delete))))
    counts.written.update(count_values(keys.filter(pc.and_(landed, pc.invert(is_delete)))))
    rows = changes.select(list(plan.columns))
    if feed.calendar is not None:
        partition = pc.if_else(classified.outside, pa.scalar(None, pa.string()), keys)
        rows = rows.append_column(PARTITION, partition)
    rows = rows.append_column(SOURCE_VERSION, commit_version)
    wanted = pc.invert(is_pre)
    if feed.deduped:
        action = pc.if_else(is_delete, DELETE, pc.if_else(classified.outside, REMOVE, UPSERT))
        rows = rows.append_column(ACTION, action).filter(wanted)
        # A changed key's row can only be where its changes say it was: the partitions of its pre-images,
        # deletes and post-images. Not with soft deletes: a tombstone stays where its key was deleted,
        # and a later insert of the key must find it there.
        prune = feed.calendar is not None and not feed.soft_deletes
        where = pc.unique(keys.filter(inside)).to_pylist()
        result = apply_deduped_changes(
            destination,
            rows,
            feed.primary_key,
            soft_deletes=feed.soft_deletes,
            app_transaction=feed.transaction(version),
            partitions=sorted(str(key) for key in where) if prune else None,
        )
    else:
        rows = rows.append_column(CHANGE_TYPE, change_type)
        landed = rows.filter(pc.and_(wanted, pc.invert(classified.outside)))
        result = destination.append_new(
            landed, None, app_transaction=feed.transaction(version), per_source_version=True
        )
    recorded = destination.transaction_version(app_id(feed.stream.name))
    if recorded is None or recorded < version:
        # The changes touched no row of the copy; the synced-through version still moves on.
        committed = destination.advance(feed.transaction(version))
        if result.version is None:
            result = WriteResult(0, 0, committed, {})
    return result


def _missing_history(
    session: DatabricksSession,
    feed: _FeedPlan,
    destination: DeltaDestination,
    counts: _Counts,
    synced: int,
    reason: str,
) -> tuple[WriteResult, str]:
    stream = feed.stream
    if stream.settings.on_missing_history is OnMissingHistory.RESNAPSHOT:
        at = feed.everywhere.version
        note = f"resnapshot: {reason}; the copy was overwritten with a snapshot at version {at}"
        log.warning("stream %s: %s", stream.name, note)
        return _snapshot(session, feed, destination, counts), note
    raise ChangeFeedHistoryError(
        f"stream {stream.name}: table {stream.table}: {reason}. Enable the change data feed and keep its "
        "history longer than the sync interval, or set on_missing_history: resnapshot to overwrite the "
        "copy with a new snapshot, or `zenskar-pipeline reset` the stream"
    )


def _report_keys(feed: _FeedPlan, touched: set[str | None]) -> list[str | None]:
    """The scope's partitions, then every other partition the run touched, in order."""
    if feed.calendar is None:
        return [None]
    keys = set(feed.scope.partition_keys or ()) | {key for key in touched if key is not None}
    ordered: list[str | None] = list(sorted(keys))
    return ordered


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__

"""Change-feed syncs: the copy follows the source's Delta change data feed, version by version. The flow is
here; how the changes land is each change-feed mode's own (`ChangeFeedStrategy.land`).

The copy records the source version it is synced through as a Delta application transaction
(`zenskar-pipeline:<stream>`), committed with the data, so a run that dies before its commit changes
nothing and the next one starts from the same version. A run:
- with no synced-through version (the first run of any kind): snapshots the whole table at the current
  version, one overwrite commit, and reports every partition it filled;
- with the copy already at the current version: one statement (`DESCRIBE HISTORY`), no commit;
- otherwise: reads `table_changes(table, synced + 1, current)` in one statement and lands it in one
  commit, whichever partitions the changes touch;
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
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import pyarrow as pa
import pyarrow.compute as pc
from databricks.sql.exc import ServerOperationError

from zenskar_pipeline.config import OnMissingHistory, ResolvedStream
from zenskar_pipeline.databricks import statements
from zenskar_pipeline.databricks.statements import CHANGE_TYPE, COMMIT_TIMESTAMP, COMMIT_VERSION
from zenskar_pipeline.destinations import PARTITION, SOURCE_VERSION, AppTransaction, Destination, WriteResult
from zenskar_pipeline.destinations.landing import count_values
from zenskar_pipeline.errors import first_line
from zenskar_pipeline.sync.calendar import PartitionCalendar
from zenskar_pipeline.sync.changed_partitions import Look, Requested, in_changes
from zenskar_pipeline.sync.modes.base import SyncRun, SyncStrategy
from zenskar_pipeline.sync.plan import SyncPlan, scope_windows, stream_calendar
from zenskar_pipeline.sync.reader import classify, latest_commit, read_statement
from zenskar_pipeline.sync.report import PartitionReport

log = logging.getLogger(__name__)

APP_ID_PREFIX = "zenskar-pipeline:"
SNAPSHOT = "snapshot"  # the change type of rows a snapshot landed
# Databricks' error classes for a change feed that cannot cover the asked-for versions.
MISSING_HISTORY = (
    "DELTA_MISSING_CHANGE_DATA",
    "DELTA_CHANGE_DATA_FILE_NOT_FOUND",
    "DELTA_VERSION_NOT_FOUND",
    "DELTA_CDC_START_VERSION_AFTER_LATEST",
)


def app_id(stream_name: str) -> str:
    """The Delta application id under which a stream's copy records its synced-through source version."""
    return f"{APP_ID_PREFIX}{stream_name}"


class ChangeFeedHistoryError(ValueError):
    """The change feed cannot reach back to the copy's synced-through version."""


@dataclass
class Counts:
    """Per partition (None: unpartitioned) counts of one run."""

    read: Counter[str | None] = field(default_factory=Counter)
    written: Counter[str | None] = field(default_factory=Counter)
    deleted: Counter[str | None] = field(default_factory=Counter)
    outside: Counter[str | None] = field(default_factory=Counter)
    touched: set[str | None] = field(default_factory=set)  # partitions a change entered or left


@dataclass(frozen=True)
class Feed:
    """A change-feed run's view of the stream: every window of its definition (changes land anywhere)."""

    run: SyncRun
    everywhere: SyncPlan  # all windows, at the current version: snapshots and change classification
    calendar: PartitionCalendar | None
    committed_at: dt.datetime | None = None  # when the current version was committed (UTC)

    @property
    def transaction_id(self) -> str:
        return app_id(self.run.stream.name)

    def transaction(self, version: int) -> AppTransaction:
        return AppTransaction(self.transaction_id, version)


@dataclass(frozen=True)
class Changes:
    """The changes of one run, pre-images left out: `rows` (source columns, `_zenskar_partition` when
    partitioned, NULL outside every window, and each change's commit version as `_zenskar_source_version`),
    with each row's `_change_type` and whether it fell outside every window. `windows`: the partitions the
    changed rows were in before or after (pre-images included)."""

    rows: pa.Table
    change_type: pa.Array
    outside: pa.Array
    windows: tuple[str, ...]
    committed_at: pa.Array | None = None  # per row, its commit's time (modes with `commit_timestamps`)


class ChangeFeedStrategy(SyncStrategy):
    """A mode that follows the change data feed; subclasses decide how changes and snapshots land."""

    change_feed = True
    catches_up = True
    keeps_tombstones: ClassVar[bool] = False  # a rebuilt window keeps rows marked deleted
    rebuilds: ClassVar[bool] = True  # a backfill rebuilds its windows (else it runs as any run)
    commit_timestamps: ClassVar[bool] = False  # changes carry their commit's time (`Changes.committed_at`)

    @abstractmethod
    def snapshot_columns(self, run: SyncRun, rows: pa.Table) -> pa.Table:
        """The system columns a snapshot's rows carry in this mode besides those the writer sets."""

    @abstractmethod
    def land(self, feed: Feed, changes: Changes, version: int) -> WriteResult:
        """Land `changes` and record `version` as synced through, in one commit."""

    def land_snapshot(self, feed: Feed, rows: pa.RecordBatchReader, version: int) -> WriteResult:
        """Land a snapshot (every row of the table at `version`, with `snapshot_columns`) and record
        `version` as synced through, in one commit: by default the copy becomes exactly those rows."""
        return feed.run.destination.replace(
            rows, None, source_version=version, app_transaction=feed.transaction(version)
        )

    def holds_whole_table(self, stream: ResolvedStream, destination: Destination, version: int) -> bool:
        """The copy is synced through `version` or later."""
        synced = destination.transaction_version(app_id(stream.name))
        return synced is not None and synced >= version

    def requested(self, look: Look) -> Requested:
        synced = None
        if look.since is None:
            synced = look.destination.transaction_version(app_id(look.stream.name))
        return in_changes(look, synced)

    def sync(self, run: SyncRun) -> list[PartitionReport]:
        """Bring the copy to the source's current version through its change feed (module docstring)."""
        started = time.monotonic()
        stream, destination = run.stream, run.destination
        self.primary_key(stream, run.table)  # a mode that needs a key says so before reading
        synced = destination.transaction_version(app_id(stream.name))
        version, committed_at = latest_commit(run.session, run.table.name)  # statement 1
        feed = _feed(run, version, committed_at)
        counts = Counts()
        note = None
        if synced is None:
            result = self._snapshot(feed, counts)
        elif synced > version:
            # The table went back in time (replaced or restored): its feed cannot explain the copy.
            reason = (
                f"the copy is synced through version {synced}, "
                f"but the table's latest version is {version} (was it replaced or restored?)"
            )
            result, note = self._missing_history(feed, counts, reason)
        elif run.rebuild and self.rebuilds:
            result = self._rebuild(feed, counts, synced)
            version = synced
        elif synced == version:
            result = WriteResult(0, 0, None, {})
        else:
            try:
                changes = run.session.query_table(
                    statements.read_changes(
                        run.table.name,
                        synced + 1,
                        version,
                        feed.everywhere.columns,
                        commit_timestamp=self.commit_timestamps,
                    )
                )
            except ServerOperationError as error:
                if not any(f"[{name}]" in str(error) for name in MISSING_HISTORY):
                    raise
                reason = (
                    f"the change data feed cannot be read from version {synced + 1} to {version}: "
                    f"{first_line(error)}"
                )
                result, note = self._missing_history(feed, counts, reason)
            else:
                result = self._apply(feed, changes, counts, version)
        touched = counts.touched | set(counts.read) | set(counts.written) | set(counts.deleted)
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
                synced_through=after,
            )
            for key in _report_keys(feed, touched)
        ]

    def _snapshot(self, feed: Feed, counts: Counts) -> WriteResult:
        """The whole table at the current version becomes the copy, in one overwrite commit."""
        plan = feed.everywhere
        statement = statements.read_at_version(plan.table, plan.version, plan.columns)
        return self._replace(feed, counts, statement, plan, None, rebuild=False)

    def _rebuild(self, feed: Feed, counts: Counts, synced: int) -> WriteResult:
        """The scope's windows as of the synced-through version (soft-deleted rows stay)."""
        everywhere = feed.everywhere
        if feed.calendar is None:
            plan = dataclasses.replace(everywhere, version=synced)
            statement = statements.read_at_version(plan.table, synced, plan.columns)
            return self._replace(feed, counts, statement, plan, None, rebuild=True)
        keys = list(feed.run.scope.partition_keys or ())
        plan = dataclasses.replace(
            everywhere,
            version=synced,
            windows=feed.calendar.windows(keys),
            reads_before_first=False,  # rows outside the rebuilt windows belong to other partitions
            reads_after_last=False,
        )
        return self._replace(feed, counts, read_statement(plan), plan, keys, rebuild=True)

    def _replace(
        self,
        feed: Feed,
        counts: Counts,
        statement: statements.Statement,
        plan: SyncPlan,
        partitions: list[str] | None,
        *,
        rebuild: bool,
    ) -> WriteResult:
        """`plan`'s rows (read by `statement` at `plan.version`) replace `partitions` of the copy (None: all
        of it). A snapshot records its version as the synced-through one; a rebuild, as of that version
        already, keeps what `keeps_tombstones` says (rows the source no longer has)."""
        run = feed.run
        reader = run.session.query_reader(statement)
        schema = self.snapshot_columns(run, classify(plan, reader.schema.empty_table()).rows).schema

        def landable() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                classified = classify(plan, pa.Table.from_batches([batch], reader.schema))
                keys = classified.reported_under
                counts.read.update(count_values(keys.filter(classified.landable)))
                counts.outside.update(count_values(keys.filter(classified.outside)))
                yield from self.snapshot_columns(run, classified.rows).cast(schema).to_batches()

        rows = pa.RecordBatchReader.from_batches(schema, landable())
        if rebuild:
            result = run.destination.replace(
                rows, partitions, source_version=plan.version, keep_tombstones=self.keeps_tombstones
            )
        else:
            result = self.land_snapshot(feed, rows, plan.version)
        counts.written.update(result.rows_by_partition or {})
        return result

    def _apply(self, feed: Feed, changes: pa.Table, counts: Counts, version: int) -> WriteResult:
        """Count the changes of `(synced, version]` per partition, land them, and make sure `version` is
        recorded even when they touched no row of the copy."""
        plan = feed.everywhere
        changes = changes.take(pc.sort_indices(changes, sort_keys=[(COMMIT_VERSION, "ascending")]))
        change_type = changes.column(CHANGE_TYPE).combine_chunks()
        commit_version = pc.cast(changes.column(COMMIT_VERSION).combine_chunks(), pa.int64())
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
            rows = rows.append_column(
                PARTITION, pc.if_else(classified.outside, pa.scalar(None, pa.string()), keys)
            )
        rows = rows.append_column(SOURCE_VERSION, commit_version)
        wanted = pc.invert(is_pre)
        windows = tuple(sorted(str(key) for key in pc.unique(keys.filter(inside)).to_pylist()))
        committed_at = None
        if self.commit_timestamps:
            committed_at = changes.column(COMMIT_TIMESTAMP).combine_chunks().filter(wanted)
        landed = Changes(
            rows.filter(wanted),
            change_type.filter(wanted),
            classified.outside.filter(wanted),
            windows,
            committed_at,
        )
        result = self.land(feed, landed, version)
        recorded = feed.run.destination.transaction_version(feed.transaction_id)
        if recorded is None or recorded < version:
            # The changes touched no row of the copy; the synced-through version still moves on.
            committed = feed.run.destination.advance(feed.transaction(version))
            if result.version is None:
                result = WriteResult(0, 0, committed, {})
        return result

    def _missing_history(self, feed: Feed, counts: Counts, reason: str) -> tuple[WriteResult, str]:
        stream = feed.run.stream
        if stream.settings.on_missing_history is OnMissingHistory.RESNAPSHOT:
            at = feed.everywhere.version
            note = f"resnapshot: {reason}; the copy was overwritten with a snapshot at version {at}"
            log.warning("stream %s: %s", stream.name, note)
            return self._snapshot(feed, counts), note
        raise ChangeFeedHistoryError(
            f"stream {stream.name}: table {stream.table}: {reason}. Enable the change data feed and keep its "
            "history longer than the sync interval, or set on_missing_history: resnapshot to overwrite the "
            "copy with a new snapshot, or `zenskar-pipeline reset` the stream"
        )


def _feed(run: SyncRun, version: int, committed_at: dt.datetime | None) -> Feed:
    stream, table = run.stream, run.table
    found = stream_calendar(stream, table, run.now)
    partition_field, calendar = found if found is not None else (None, None)
    scope_windows(stream, calendar, run.scope)  # the asked-for keys must be this stream's
    everywhere = SyncPlan(
        stream=stream.name,
        by_cursor=False,  # the version decides what is read
        table=table.name,
        version=version,
        columns=tuple(stream.settings.columns.select(table.column_names)),
        cursor_field=None,
        partition_field=partition_field,
        calendar=calendar,
        windows=calendar.all_windows() if calendar is not None else (),
        cursor_from={},
        reads_before_first=calendar is not None,
        reads_after_last=calendar is not None,
    )
    return Feed(run, everywhere, calendar, committed_at)


def _report_keys(feed: Feed, touched: set[str | None]) -> list[str | None]:
    """The scope's partitions, then every other partition the run touched, in order."""
    if feed.calendar is None:
        return [None]
    keys = set(feed.run.scope.partition_keys or ()) | {key for key in touched if key is not None}
    ordered: list[str | None] = list(sorted(keys))
    return ordered

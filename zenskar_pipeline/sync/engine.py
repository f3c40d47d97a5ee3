"""Running one sync: plan it against the source's current Delta version and the copy's high-water marks, read
the plan's rows in one statement, land them through the destination in one commit, report per partition."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.databricks.sql_text import quote_table
from zenskar_pipeline.destinations import PARTITION, SOURCE_VERSION, SYNCED_AT, DeltaDestination, WriteResult
from zenskar_pipeline.destinations.landing import count_values
from zenskar_pipeline.sync.change_feed import run_change_feed_sync
from zenskar_pipeline.sync.plan import (
    Scope,
    SyncPlan,
    column_name,
    lower_cursor_bound,
    scope_windows,
    stream_calendar,
)
from zenskar_pipeline.sync.reader import (
    Classified,
    as_utc,
    classify,
    current_version,
    read_statement,
)
from zenskar_pipeline.sync.report import PartitionReport

MERGE_CHUNK_ROWS = 1_000_000  # rows held for one keyed write; a larger read is written in several commits


@dataclass
class _Tally:
    read: Counter[str | None]
    null_cursor: Counter[str | None]
    outside: Counter[str | None]
    cursor_max: dict[str | None, Any]

    @classmethod
    def empty(cls) -> _Tally:
        return cls(Counter(), Counter(), Counter(), {})

    def add(self, plan: SyncPlan, classified: Classified) -> None:
        keys = classified.reported_under
        for counter, mask in (
            (self.read, classified.landable),
            (self.outside, classified.outside),
            (self.null_cursor, classified.null_cursor),
        ):
            counter.update(count_values(keys.filter(mask)))
        if plan.cursor_field is None or classified.rows.num_rows == 0:
            return
        rows = classified.rows
        groups = rows.column(PARTITION) if plan.calendar is not None else None
        for key in {None} if groups is None else set(groups.to_pylist()):
            values = rows.column(plan.cursor_field)
            if groups is not None:
                values = values.filter(pc.equal(groups, key))
            top = pc.max(values).as_py()
            if top is not None and (self.cursor_max.get(key) is None or top > self.cursor_max[key]):
                self.cursor_max[key] = top


def run_sync(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: DeltaDestination,
    scope: Scope,
    *,
    now: dt.datetime | None = None,
    rebuild: bool = False,
) -> list[PartitionReport]:
    """Sync `scope` of `stream` from the source's current Delta version into `destination`.

    Change-feed streams go through `change_feed.run_change_feed_sync`; `rebuild` (a backfill) makes such a
    run rebuild the scope's windows as of the copy's synced-through version. Cursor streams ignore it.
    """
    destination.check_writable()
    if stream.settings.change_feed:
        return run_change_feed_sync(
            session, stream, table, destination, scope, now=now or dt.datetime.now(dt.UTC), rebuild=rebuild
        )
    started = time.monotonic()
    settings = stream.settings
    table_sql = quote_table(*table.name.parts)
    version = current_version(session, table_sql)  # statement 1
    plan = _plan(stream, table, scope, version, destination, now or dt.datetime.now(dt.UTC))
    keys: list[str | None] = [None] if plan.partition_keys is None else list(plan.partition_keys)
    marks = plan.cursor_before  # all None for full refresh
    tally = _Tally.empty()
    deleted: dict[str | None, int] = {}
    if settings.sync_mode is SyncMode.FULL_REFRESH:
        if _scope_read_at(destination, plan.partition_keys, version):
            result = WriteResult(0, 0, None, {})  # the copy already holds this version's rows: nothing new
        else:
            deleted = _landed_rows(destination, plan.partition_keys)
            result = _replace(session, plan.sync, destination, tally)
    else:
        result = _merge(session, plan.sync, stream, table, destination, tally)
    written = _written_by_partition(destination, plan.sync, result)
    seconds = time.monotonic() - started
    return [
        PartitionReport(
            partition=key,
            rows_read=tally.read[key],
            rows_written=written.get(key, 0),
            rows_deleted=deleted.get(key, 0),
            skipped_null_cursor=tally.null_cursor[key],
            skipped_outside_windows=tally.outside[key],
            source_version=version,
            cursor_before=as_utc(marks.get(key)),
            cursor_after=as_utc(_greatest(marks.get(key), tally.cursor_max.get(key))),
            seconds=seconds,
            destination_version=result.version,
        )
        for key in keys
    ]


@dataclass(frozen=True)
class _Planned:
    sync: SyncPlan
    cursor_before: dict[str | None, Any]

    @property
    def partition_keys(self) -> list[str] | None:
        return self.sync.partition_keys


def _plan(
    stream: ResolvedStream,
    table: DiscoveredTable,
    scope: Scope,
    version: int,
    destination: DeltaDestination,
    now: dt.datetime,
) -> _Planned:
    settings = stream.settings
    mode = settings.sync_mode
    cursor = None
    if settings.cursor_field is not None:
        cursor = column_name(stream, table, settings.cursor_field, "cursor_field")
    if mode.is_incremental and cursor is None:
        raise ValueError(f"stream {stream.name}: {mode} needs a cursor_field")
    spec = settings.partitions
    found = stream_calendar(stream, table, now)
    field, calendar = found if found is not None else (None, None)
    windows = scope_windows(stream, calendar, scope)
    keys: list[str | None] = [w.key for w in windows] if spec is not None else [None]
    marks: dict[str | None, Any] = dict.fromkeys(keys)
    if mode.is_incremental and cursor is not None:
        landed = destination.high_water_marks(cursor, None if spec is None else [str(k) for k in keys])
        marks = {key: landed.get(key) for key in keys}
    plan = SyncPlan(
        stream=stream.name,
        mode=mode,
        table_sql=quote_table(*table.name.parts),
        version=version,
        columns=tuple(settings.columns.select(table.column_names)),
        cursor_field=cursor,
        partition_field=field,
        calendar=calendar,
        windows=windows,
        cursor_from={k: lower_cursor_bound(m, settings.cursor_lag, stream.name) for k, m in marks.items()},
        reads_before_first=calendar is not None and windows[0].key == calendar.first_key,
        reads_after_last=calendar is not None and windows[-1].key == calendar.last_key,
    )
    return _Planned(plan, marks)


def _replace(
    session: DatabricksSession, plan: SyncPlan, destination: DeltaDestination, tally: _Tally
) -> WriteResult:
    statement, parameters = read_statement(plan)
    reader = session.query_reader(statement, parameters)
    schema = classify(plan, reader.schema.empty_table()).rows.schema

    def landable() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            classified = classify(plan, pa.Table.from_batches([batch], reader.schema))
            tally.add(plan, classified)
            yield from classified.rows.cast(schema).to_batches()

    rows = pa.RecordBatchReader.from_batches(schema, landable())
    return destination.replace(rows, plan.partition_keys, source_version=plan.version)


def _merge(
    session: DatabricksSession,
    plan: SyncPlan,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: DeltaDestination,
    tally: _Tally,
) -> WriteResult:
    """Land the plan's rows by key. A large read (a first sync, a long backfill) is written in chunks of
    `MERGE_CHUNK_ROWS`, one commit each, so memory stays bounded: each merge lands what a single one would
    (deduped: the greatest version of a key wins whichever chunk brings it; append: a row already landed,
    by an earlier chunk too, is not landed again). Key-less appends number identical rows within one write,
    so they are written at once."""
    declared = stream.settings.primary_key or table.primary_key or None
    key = None if declared is None else [column_name(stream, table, k, "primary_key") for k in declared]
    if plan.mode is SyncMode.INCREMENTAL_APPEND_DEDUPED and key is None:
        raise ValueError(f"stream {stream.name}: incremental_append_deduped needs a primary_key")

    def write(rows: pa.Table) -> WriteResult:
        if plan.mode is SyncMode.INCREMENTAL_APPEND:
            landing_key = None if key is None else [*key, str(plan.cursor_field)]
            return destination.append_new(rows, landing_key, source_version=plan.version)
        assert key is not None
        return destination.merge_deduped(rows, key, plan.cursor_field, source_version=plan.version)

    statement, parameters = read_statement(plan)
    reader = session.query_reader(statement, parameters)
    chunk_rows = MERGE_CHUNK_ROWS if key is not None else None  # read now: tests lower it
    written: Counter[str | None] = Counter()
    total = WriteResult(0, 0, None, {})
    pending: list[pa.Table] = []

    def flush() -> None:
        nonlocal total
        rows = pa.concat_tables(pending)
        pending.clear()
        size = chunk_rows or rows.num_rows
        for start in range(0, rows.num_rows, size):
            result = write(rows.slice(start, size))
            if result.version is not None:
                written.update(_written_by_partition(destination, plan, result))
                total = WriteResult(total.rows_written + result.rows_written, 0, result.version, written)

    for batch in reader:
        classified = classify(plan, pa.Table.from_batches([batch], reader.schema))
        tally.add(plan, classified)
        pending.append(classified.rows)
        if chunk_rows is not None and sum(t.num_rows for t in pending) >= chunk_rows:
            flush()
    if pending:
        flush()
    return total


def _written_by_partition(
    destination: DeltaDestination, plan: SyncPlan, result: WriteResult
) -> dict[str | None, int]:
    if result.version is None:
        return {}
    if plan.calendar is None:
        return {None: result.rows_written}
    if result.rows_by_partition is not None:
        return dict(result.rows_by_partition)
    # A deduped merge rewrites whole files; the rows it wrote are those stamped with its (newest) synced_at.
    copy = _copy(destination, result.version)
    scope = pc.field(PARTITION).isin(plan.partition_keys or [])
    stamped = copy.to_pyarrow_dataset().to_table(columns=[PARTITION, SYNCED_AT], filter=scope)
    if stamped.num_rows == 0:
        return {}
    newest = pc.max(stamped.column(SYNCED_AT))
    mine = stamped.filter(pc.equal(stamped.column(SYNCED_AT), newest)).column(PARTITION)
    return count_values(mine)


def _scope_read_at(destination: DeltaDestination, partitions: list[str] | None, version: int) -> bool:
    """Whether a full refresh of the scope at `version` would write what is there: every partition of the
    scope holds rows, all read at `version` (an empty partition proves nothing, so it is read again)."""
    if not destination.exists():
        return False
    scope = None if partitions is None else pc.field(PARTITION).isin(partitions)
    columns = [SOURCE_VERSION] + ([] if partitions is None else [PARTITION])
    landed = _copy(destination).to_pyarrow_dataset().to_table(columns=columns, filter=scope)
    if landed.num_rows == 0 or pc.any(pc.not_equal(landed.column(SOURCE_VERSION), version)).as_py():
        return False
    return partitions is None or set(landed.column(PARTITION).to_pylist()) == set(partitions)


def _landed_rows(destination: DeltaDestination, partitions: list[str] | None) -> dict[str | None, int]:
    """Rows the copy holds per partition of the scope, from the Delta log (what a replace removes)."""
    if not destination.exists():
        return {}
    files = pa.table(_copy(destination).get_add_actions(flatten=True))
    if partitions is None:
        return {None: int(pc.sum(files.column("num_records")).as_py() or 0)}
    counts: Counter[str | None] = Counter()
    for key, records in zip(
        files.column(f"partition.{PARTITION}").to_pylist(),
        files.column("num_records").to_pylist(),
        strict=True,
    ):
        if key in partitions:
            counts[key] += records
    return dict(counts)


def _copy(destination: DeltaDestination, version: int | None = None) -> DeltaTable:
    return DeltaTable(destination.table_uri, version=version, storage_options=destination.storage_options)


def _greatest(before: Any, read: Any) -> Any:
    if before is None:
        return read
    if read is None:
        return before
    return max(before, read)

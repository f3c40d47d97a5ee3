"""Syncs that read the source by partition windows and high-water marks (full refresh and the cursor modes):
the plan against the source's current version and the copy's marks, the streamed read of the rows that
land with a tally of what was read and skipped, and one report per partition.

The strategies in `sync/modes/` decide whether marks apply and how the rows land; this module reads.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.destinations import PARTITION, Landing, WriteResult
from zenskar_pipeline.destinations.landing import count_values
from zenskar_pipeline.sync.modes.base import SyncRun
from zenskar_pipeline.sync.plan import SyncPlan, lower_cursor_bound, scope_windows, stream_calendar
from zenskar_pipeline.sync.reader import Classified, as_utc, classify, current_version, read_statement
from zenskar_pipeline.sync.report import PartitionReport

MERGE_CHUNK_ROWS = 1_000_000  # rows held for one keyed write; a larger read is written in several commits
# A copy that does not exist yet gets its first version in one commit, staged on disk (`create_copy`). False:
# through the merges, chunk by chunk, as before; read at each run, so tests and a benchmark compare the two.
FIRST_VERSION_STAGED = True


@dataclass
class Tally:
    """Per partition (None: unpartitioned): rows read that could land, rows skipped, greatest cursor."""

    read: Counter[str | None] = field(default_factory=Counter)
    null_cursor: Counter[str | None] = field(default_factory=Counter)
    outside: Counter[str | None] = field(default_factory=Counter)
    cursor_max: dict[str | None, Any] = field(default_factory=dict)

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


@dataclass
class CursorRead:
    """One run's read: the plan, each partition's high-water mark before the run, and what was read."""

    plan: SyncPlan
    cursor_before: Mapping[str | None, Any]
    started: float
    tally: Tally = field(default_factory=Tally)

    @property
    def partition_keys(self) -> list[str] | None:
        return self.plan.partition_keys

    @property
    def version(self) -> int:
        return self.plan.version


def plan_read(run: SyncRun, cursor: str | None, *, by_cursor: bool) -> CursorRead:
    """The run's plan at the source's current version (statement 1). `by_cursor`: each window reads from
    its high-water mark minus `cursor_lag` on (the copy's marks, one scan), and NULL cursors are skipped."""
    started = time.monotonic()
    stream, table, settings = run.stream, run.table, run.stream.settings
    version = current_version(run.session, table.name)
    found = stream_calendar(stream, table, run.now)
    partition_field, calendar = found if found is not None else (None, None)
    windows = scope_windows(stream, calendar, run.scope)
    keys: list[str | None] = [w.key for w in windows] if calendar is not None else [None]
    marks: dict[str | None, Any] = dict.fromkeys(keys)
    if by_cursor and cursor is not None:
        landed = run.destination.high_water_marks(
            cursor, None if calendar is None else [str(k) for k in keys]
        )
        marks = {key: landed.get(key) for key in keys}
    plan = SyncPlan(
        stream=stream.name,
        by_cursor=by_cursor,
        table=table.name,
        version=version,
        columns=tuple(settings.columns.select(table.column_names)),
        cursor_field=cursor,
        partition_field=partition_field,
        calendar=calendar,
        windows=windows,
        cursor_from={k: lower_cursor_bound(m, settings.cursor_lag, stream.name) for k, m in marks.items()},
        reads_before_first=calendar is not None and windows[0].key == calendar.first_key,
        reads_after_last=calendar is not None and windows[-1].key == calendar.last_key,
        cursor_type=None if cursor is None else _type_of(table, cursor),
    )
    return CursorRead(plan, marks, started)


def _type_of(table: DiscoveredTable, column: str) -> str:
    found = table.column(column)
    assert found is not None  # the strategy checked the cursor is a column of the table
    return found.full_data_type


def landable_rows(run: SyncRun, read: CursorRead) -> pa.RecordBatchReader:
    """The rows that land, streamed as they are read; the tally fills as the reader is consumed."""
    plan = read.plan
    reader = run.session.query_reader(read_statement(plan))
    schema = classify(plan, reader.schema.empty_table()).rows.schema

    def landable() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            classified = classify(plan, pa.Table.from_batches([batch], reader.schema))
            read.tally.add(plan, classified)
            yield from classified.rows.cast(schema).to_batches()

    return pa.RecordBatchReader.from_batches(schema, landable())


def landable_chunks(run: SyncRun, read: CursorRead, chunk_rows: int | None) -> Iterator[pa.Table]:
    """The rows that land, in tables of at most `chunk_rows` rows (None: one table of everything read), so
    that a keyed write holds a bounded number of rows; the tally fills as the chunks are taken."""
    plan = read.plan
    reader = run.session.query_reader(read_statement(plan))
    pending: list[pa.Table] = []

    def flush() -> Iterator[pa.Table]:
        rows = pa.concat_tables(pending)
        pending.clear()
        size = chunk_rows or rows.num_rows
        for start in range(0, rows.num_rows, size):
            yield rows.slice(start, size)

    for batch in reader:
        classified = classify(plan, pa.Table.from_batches([batch], reader.schema))
        read.tally.add(plan, classified)
        pending.append(classified.rows)
        if chunk_rows is not None and sum(t.num_rows for t in pending) >= chunk_rows:
            yield from flush()
    if pending:
        yield from flush()


def land_chunks(
    run: SyncRun, read: CursorRead, chunk_rows: int | None, write: Callable[[pa.Table], WriteResult]
) -> list[PartitionReport]:
    """Each chunk of `landable_chunks` through `write` (one destination call); the reports of what the
    writes landed, with the copy's last version written."""
    written: Counter[str | None] = Counter()
    version = None
    for rows in landable_chunks(run, read, chunk_rows):
        result = write(rows)
        written.update(written_by_partition(result, read.partition_keys is not None))
        version = result.version if result.version is not None else version
    return reports(read, written, {}, version)


def creates_copy(run: SyncRun) -> bool:
    """Whether the run writes the copy's first version: it does not exist as the run starts."""
    return FIRST_VERSION_STAGED and not run.destination.exists()


def create_copy(run: SyncRun, read: CursorRead, landing: Landing) -> list[PartitionReport]:
    """The read streamed into the copy's first version, one commit whatever its size; the reports."""
    rows = landable_rows(run, read)
    result = run.destination.create_copy(rows, landing, source_version=read.version)
    return reports(read, written_by_partition(result, read.partition_keys is not None), {}, result.version)


def written_by_partition(result: WriteResult, partitioned: bool) -> dict[str | None, int]:
    """What a committed write landed per partition."""
    if result.version is None:
        return {}
    if not partitioned:
        return {None: result.rows_written}
    return dict(result.rows_by_partition or {})


def reports(
    read: CursorRead,
    written: Mapping[str | None, int],
    deleted: Mapping[str | None, int],
    destination_version: int | None,
) -> list[PartitionReport]:
    """One report per partition of the scope (one for an unpartitioned stream)."""
    keys: list[str | None] = [None] if read.partition_keys is None else list(read.partition_keys)
    tally, marks = read.tally, read.cursor_before
    seconds = time.monotonic() - read.started
    return [
        PartitionReport(
            partition=key,
            rows_read=tally.read[key],
            rows_written=written.get(key, 0),
            rows_deleted=deleted.get(key, 0),
            skipped_null_cursor=tally.null_cursor[key],
            skipped_outside_windows=tally.outside[key],
            source_version=read.version,
            cursor_before=as_utc(marks.get(key)),
            cursor_after=as_utc(_greatest(marks.get(key), tally.cursor_max.get(key))),
            seconds=seconds,
            destination_version=destination_version,
        )
        for key in keys
    ]


def _greatest(before: Any, read: Any) -> Any:
    if before is None:
        return read
    if read is None:
        return before
    return max(before, read)

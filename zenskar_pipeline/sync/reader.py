"""The source side of a sync: the read a plan asks for (spelled by `databricks.statements`), and what each
row read is for (`classify`): the partition it is reported under, and whether it lands.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.config import TableName
from zenskar_pipeline.databricks import statements
from zenskar_pipeline.databricks.discovery import TypeFamily
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.destinations import PARTITION
from zenskar_pipeline.sync.calendar import PartitionCalendar
from zenskar_pipeline.sync.plan import SyncPlan

_FIELD_TYPES = {
    TypeFamily.TIMESTAMP: "TIMESTAMP",
    TypeFamily.TIMESTAMP_NTZ: "TIMESTAMP_NTZ",
    TypeFamily.DATE: "DATE",
    None: "TIMESTAMP",
}


def current_version(session: DatabricksSession, table: TableName) -> int:
    """The source table's latest Delta version."""
    return latest_commit(session, table)[0]


def latest_commit(session: DatabricksSession, table: TableName) -> tuple[int, dt.datetime | None]:
    """The source table's latest Delta version and when it was committed (UTC), in one statement."""
    row = session.query_one(statements.latest_version(table))
    if row is None:
        raise ValueError(f"{table} has no Delta history")
    committed = row.get("timestamp")
    if isinstance(committed, dt.datetime):
        committed = committed.astimezone(dt.UTC) if committed.tzinfo else committed.replace(tzinfo=dt.UTC)
        return int(row["version"]), committed
    return int(row["version"]), None


def read_statement(plan: SyncPlan) -> statements.Statement:
    """The plan's read: its windows with their lower cursor bounds, at the plan's version."""
    calendar = plan.calendar
    by_cursor = plan.by_cursor and plan.cursor_field is not None
    if calendar is None:
        mark = plan.cursor_from.get(None) if by_cursor else None
        where = statements.ReadRange(cursor_field=plan.cursor_field, cursor_from=mark)
        return statements.read_at_version(plan.table, plan.version, plan.columns, where)
    windows = [
        statements.WindowRange(
            calendar.bound(window.start),
            calendar.bound(window.end),
            plan.cursor_from.get(window.key) if by_cursor else None,
        )
        for window in plan.windows
    ]
    where = statements.ReadRange(
        partition_field=plan.partition_field,
        windows=windows,
        before=calendar.bound(calendar.first_start) if plan.reads_before_first else None,
        after=calendar.bound(calendar.end) if plan.reads_after_last else None,
        cursor_field=plan.cursor_field,
        partition_type=_FIELD_TYPES[calendar.family],
        cursor_type=plan.cursor_type or "TIMESTAMP",
    )
    return statements.read_at_version(plan.table, plan.version, plan.columns, where)


@dataclass(frozen=True)
class Classified:
    """One batch read, row by row: the partition each row is reported under, and whether it lands."""

    rows: pa.Table  # the landable rows, with `_zenskar_partition` when partitioned
    reported_under: pa.Array  # per row read: its partition key (None when unpartitioned)
    outside: pa.Array  # per row read: partition field NULL or outside every window
    null_cursor: pa.Array  # per row read: inside a window, cursor NULL (incremental modes only)
    landable: pa.Array


def classify(plan: SyncPlan, batch: pa.Table) -> Classified:
    """Which rows of a read land: those inside a window of the scope, with a cursor when incremental."""
    n = batch.num_rows
    if plan.calendar is None:
        keys: pa.Array = pa.nulls(n, pa.string())
        outside = pa.repeat(pa.scalar(False), n)
    else:
        located = plan.calendar.locate(batch.column(str(plan.partition_field)))
        keys = located.keys
        in_scope = pc.is_in(keys, pa.array([w.key for w in plan.windows], pa.string()))
        outside = pc.or_(located.outside, pc.invert(pc.fill_null(in_scope, False)))
        attributed = pc.if_else(located.before_first, plan.calendar.first_key, plan.calendar.last_key)
        keys = pc.if_else(outside, attributed, keys)
    if not plan.by_cursor or plan.cursor_field is None:
        null_cursor = pa.repeat(pa.scalar(False), n)
    else:
        null_cursor = pc.and_(pc.invert(outside), pc.is_null(batch.column(plan.cursor_field)))
    landable = pc.invert(pc.or_(outside, null_cursor))
    rows = batch.filter(landable)
    if plan.calendar is not None:
        rows = rows.append_column(PARTITION, keys.filter(landable))
    return Classified(rows, keys, outside, null_cursor, landable)


def window_keys(calendar: PartitionCalendar, column: pa.ChunkedArray) -> set[str]:
    """The Dagster keys of the windows holding these partition-field values (NULLs and values outside every
    window have none): the same mapping `classify` applies to rows read."""
    located = calendar.locate(column)
    inside = located.keys.filter(pc.invert(located.outside))
    return {key for key in pc.unique(inside).to_pylist() if key is not None}


def as_utc(value: object) -> object:
    """Cursor values as reported: aware datetimes in UTC, others unchanged."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value

"""What a copy's Delta log says without reading its data: each file's row count and the min and max of its
columns, grouped by partition; only files whose statistics cannot answer are read, one column of them.

Statistics are used where they are exact or err low: integers, decimals, dates, booleans, and timestamps
(which Delta keeps to the millisecond, truncated: a timestamp's max is at most the true one, so a mark taken
from it makes a read start a little early, and the writer drops the rows already landed). String maxima may
be truncated upward or downward, so string columns are always read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable

from zenskar_pipeline.destinations import conditions
from zenskar_pipeline.destinations.landing import PARTITION

_PARTITION_STAT = f"partition.{PARTITION}"


def files_in_scope(table: DeltaTable, partitions: Sequence[str] | None, *, partitioned: bool) -> pa.Table:
    """The add actions (one row per data file) of the asked-for partitions (None: all)."""
    files = pa.table(table.get_add_actions(flatten=True))
    if partitioned and partitions is not None:
        files = files.filter(pc.is_in(files.column(_PARTITION_STAT), pa.array(list(partitions), pa.string())))
    return files


def column_max(
    table: DeltaTable, column: str, partitions: Sequence[str] | None, *, partitioned: bool
) -> dict[str | None, Any]:
    """The greatest non-NULL value of `column` per partition (None: unpartitioned) among the asked-for
    partitions; partitions without one are absent."""
    return _column_extreme(table, column, partitions, partitioned=partitioned, kind="max")


def column_range(
    table: DeltaTable, column: str, partitions: Sequence[str] | None, *, partitioned: bool
) -> tuple[Any, Any]:
    """The least and greatest non-NULL value of `column` in the asked-for partitions (None, None: none)."""
    lows = _column_extreme(table, column, partitions, partitioned=partitioned, kind="min")
    highs = _column_extreme(table, column, partitions, partitioned=partitioned, kind="max")
    return (min(lows.values()) if lows else None, max(highs.values()) if highs else None)


def _column_extreme(
    table: DeltaTable, column: str, partitions: Sequence[str] | None, *, partitioned: bool, kind: str
) -> dict[str | None, Any]:
    files = files_in_scope(table, partitions, partitioned=partitioned)
    if files.num_rows == 0:
        return {}
    stat, nulls = f"{kind}.{column}", f"null_count.{column}"
    known = pa.array([False] * files.num_rows)
    unknown = pa.array([True] * files.num_rows)
    if stat in files.column_names and _trusted(files.schema.field(stat).type):
        known = pc.is_valid(files.column(stat))
        all_null = (
            pc.fill_null(pc.equal(files.column(nulls), files.column("num_records")), False)
            if nulls in files.column_names
            else pa.array([False] * files.num_rows)
        )
        unknown = pc.invert(pc.or_(known, all_null))
    keys = files.column(_PARTITION_STAT) if partitioned else pa.nulls(files.num_rows, pa.string())
    extremes: dict[str | None, Any] = {}
    if pc.any(known).as_py():
        stated = pa.table({"key": keys, "value": files.column(stat)}).filter(known)
        _fold(extremes, stated, kind)
    if pc.any(unknown).as_py():
        paths = set(files.column("path").filter(unknown).to_pylist())
        _fold(extremes, _read(table, column, paths, partitioned=partitioned), kind)
    return extremes


def scan_condition(rows: pa.Table, columns: Sequence[str]) -> str | None:
    """A DataFusion condition keeping the copy's rows that may equal a row of `rows` on `columns`: the
    partitions of `rows` (when `_zenskar_partition` is among `columns`) and each integer, date or timestamp
    column's [min, max] in `rows`. delta-rs prunes files by partition and statistics with it, and parquet row
    groups by their statistics. Bounds are exact: timestamps go as their integer in the column's own unit and
    zone (a `TIMESTAMP '...'` literal is nanoseconds, which cannot hold years before 1677 or after 2262).
    Columns holding NULLs and other types are left out: the condition may keep more than it must, never
    less. None: every row."""
    parts: list[str] = []
    for column in dict.fromkeys(columns):
        values = rows.column(column)
        if values.null_count:
            continue
        kind = values.type
        if column == PARTITION:
            parts.append(conditions.in_list(PARTITION, pc.unique(values).to_pylist()))
            continue
        if pa.types.is_integer(kind):
            low, high = (str(v) for v in pc.min_max(values).as_py().values())
        elif pa.types.is_date32(kind):
            low, high = (f"DATE '{v.isoformat()}'" for v in pc.min_max(values).as_py().values())
        elif pa.types.is_timestamp(kind) and kind.unit in _UNITS:
            assert isinstance(kind, pa.TimestampType)
            zone = "None" if kind.tz is None else f'Some("{kind.tz}")'
            arrow_type = f"Timestamp({_UNITS[kind.unit]}, {zone})".replace("'", "''")
            extremes = pc.min_max(values.cast(pa.int64())).as_py().values()
            low, high = (f"arrow_cast({v}, '{arrow_type}')" for v in extremes)
        else:
            continue
        parts.append(f"{conditions.quote(column)} BETWEEN {low} AND {high}")
    return " AND ".join(parts) or None


_UNITS = {"s": "Second", "ms": "Millisecond", "us": "Microsecond", "ns": "Nanosecond"}


def _read(table: DeltaTable, column: str, paths: set[str], *, partitioned: bool) -> pa.Table:
    """`column` (and the partition) of the data files at `paths` (relative to the table), as key, value."""
    dataset = table.to_pyarrow_dataset()
    assert isinstance(dataset, ds.FileSystemDataset)
    fragments = [f for f in dataset.get_fragments() if any(f.path.endswith(path) for path in paths)]
    if not fragments:
        return pa.table({"key": pa.array([], pa.string()), "value": pa.array([])})
    subset = ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem)
    columns = [column, PARTITION] if partitioned else [column]
    read = subset.to_table(columns=columns)
    keys = read.column(PARTITION) if partitioned else pa.nulls(read.num_rows, pa.string())
    return pa.table({"key": keys, "value": read.column(column)})


def _fold(extremes: dict[str | None, Any], rows: pa.Table, kind: str) -> None:
    """Fold `rows` (key, value) into `extremes`, per key, ignoring NULL values."""
    rows = rows.filter(pc.is_valid(rows.column("value")))
    if rows.num_rows == 0:
        return
    grouped = rows.group_by("key", use_threads=False).aggregate([("value", kind)])
    pick = max if kind == "max" else min
    for key, value in zip(
        grouped.column("key").to_pylist(), grouped.column(f"value_{kind}").to_pylist(), strict=True
    ):
        extremes[key] = value if key not in extremes else pick(extremes[key], value)


def _trusted(kind: pa.DataType) -> bool:
    """Whether a file statistic of this type is exact or errs low (see the module docstring)."""
    return not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_floating(kind)
    )

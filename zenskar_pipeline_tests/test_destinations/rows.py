"""Small builders for the batches the sync engine hands the Delta destination."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from zenskar_pipeline.destinations import PARTITION

EVENTS = pa.schema(
    [
        ("event_id", pa.int64()),
        ("customer", pa.string()),
        ("amount", pa.decimal128(18, 6)),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        (PARTITION, pa.string()),
    ]
)


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=dt.UTC)


def events(rows: Sequence[tuple[Any, ...]], schema: pa.Schema = EVENTS) -> pa.Table:
    """Rows as tuples in `schema` order; the partition key defaults to the day of `updated_at`."""
    filled = []
    for row in rows:
        if len(row) == len(schema) - 1:
            row = (*row, row[3].strftime("%Y-%m-%d"))
        filled.append(dict(zip(schema.names, row, strict=True)))
    return pa.Table.from_pylist(filled, schema=schema)


def landed(uri: str, *columns: str) -> list[tuple[Any, ...]]:
    """The copy's rows (just `columns`), sorted with NULLs first, for exact comparison."""
    table = DeltaTable(uri).to_pyarrow_table(columns=list(columns))
    rows = [tuple(row[name] for name in columns) for row in table.to_pylist()]
    return sorted(rows, key=lambda row: tuple((value is not None, value or 0) for value in row))


def failing_reader(table: pa.Table, good_batches: int) -> pa.RecordBatchReader:
    """Yields `good_batches` one-row batches of `table`, then raises as a broken source would."""

    def batches() -> Iterator[pa.RecordBatch]:
        yield from table.to_batches(max_chunksize=1)[:good_batches]
        raise ConnectionError("source went away")

    return pa.RecordBatchReader.from_batches(table.schema, batches())

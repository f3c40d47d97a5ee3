"""What a landed row carries besides its source columns, and how rows are told apart before they land.

The system columns, each written by `DeltaDestination`:

- `_zenskar_partition` STRING: the Dagster partition key of the row's window (`2026-01-01`,
  `2026-01-01-13:00`), given by the caller; the table's physical partition column. Absent when the
  stream is unpartitioned.
- `_zenskar_source_version` BIGINT: the source Delta version the row came from (the version read, or the
  change feed's commit version), given by the caller per row or per write.
- `_zenskar_synced_at` TIMESTAMP (UTC): when the writer committed the row; one value per write. A row that
  a merge leaves unchanged keeps its earlier value.
- `_zenskar_content_hash` STRING (deduped copies): the row's content hash (below); the last tie-break
  between two versions of a key, and how a merge sees that a row did not change.
- `_zenskar_row_id` STRING (append copies without a primary key): content hash + `#` + the row's
  occurrence number among identical rows of the write (change-feed appends: of the same source version),
  so two identical events stay two and reading the same rows again lands nothing new.
- `_zenskar_deleted` BOOLEAN (change-feed deduped copies with `deletes: soft`): true once the source
  deleted the row; the row keeps its last content.
- `_zenskar_change_type` STRING (change-feed append copies): `insert`, `update_postimage` or `delete` as
  the change feed says, `snapshot` for rows a snapshot landed.

The content hash is a 128-bit MD5 (DuckDB's, vectorized; an identity, not a security measure) over the
row's non-NULL columns (source columns and
`_zenskar_partition`, in name order), each as `len:name len:value` with a value spelled by its Delta type
(integers and decimals in decimal digits, timestamps as microseconds since the epoch, dates as days).
NULL columns are left out so that a column added at the source, NULL in older rows, changes no hash.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

PARTITION = "_zenskar_partition"
SOURCE_VERSION = "_zenskar_source_version"
SYNCED_AT = "_zenskar_synced_at"
CONTENT_HASH = "_zenskar_content_hash"
ROW_ID = "_zenskar_row_id"
DELETED = "_zenskar_deleted"
CHANGE_TYPE = "_zenskar_change_type"

# Written by the writer, never part of a row's content.
WRITER_COLUMNS = frozenset({SOURCE_VERSION, SYNCED_AT, CONTENT_HASH, ROW_ID, DELETED})
SYNCED_AT_TYPE = pa.timestamp("us", tz="UTC")


def content_hashes(table: pa.Table) -> pa.Array:
    """One hex digest per row (see the module docstring for what is hashed)."""
    names = sorted(name for name in table.column_names if name not in WRITER_COLUMNS)
    pieces = [_column_piece(name, table.column(name).combine_chunks()) for name in names]
    if pieces:
        joined = pc.binary_join_element_wise(
            *pieces, _bytes(b""), null_handling="replace", null_replacement=b""
        )
    else:
        joined = pa.array([b""] * table.num_rows, pa.large_binary())
    rows = pa.table({"value": joined, "position": pa.array(range(table.num_rows), pa.int64())})
    return _in_order(rows, "SELECT md5(value) AS digest, position FROM rows")


def row_ids(hashes: pa.Array, within: pa.Array | None = None) -> pa.Array:
    """`<hash>#<n>`, n counting identical rows (equal hashes) of this write from 0; with `within`, counting
    afresh for each of its values (a change feed's commit versions), so that a row's id does not depend on
    which other versions the write holds."""
    columns = {"digest": hashes, "position": pa.array(range(len(hashes)), pa.int64())}
    if within is not None:
        columns["within"] = within
    rows = pa.table(columns)
    group = "digest" if within is None else "digest, within"
    occurrence = f"row_number() OVER (PARTITION BY {group} ORDER BY position) - 1"
    numbered = f"SELECT digest || '#' || CAST({occurrence} AS VARCHAR) AS digest, position FROM rows"
    return _in_order(rows, numbered)


def _in_order(rows: pa.Table, query: str) -> pa.Array:
    """The `digest` column of `query` over `rows`, in the rows' original order."""
    with duckdb.connect() as con:
        con.register("rows", rows)
        result = con.sql(f"SELECT digest FROM ({query}) ORDER BY position").to_arrow_table()
    return pc.cast(result.column("digest").combine_chunks(), pa.string())


def first_per_key(table: pa.Table, key: Sequence[str], order: Sequence[tuple[str, str]]) -> pa.Table:
    """One row per `key` (NULL equal to NULL): the first by `order`, (column, "ascending"|"descending")
    pairs with NULLs last. Callers end `order` with the content hash, so the choice never depends on the
    order rows arrived in."""
    if table.num_rows < 2:
        return table
    sort_keys = [(name, "ascending", "at_end") for name in key]
    sort_keys += [(name, direction, "at_end") for name, direction in order]
    ordered = table.take(pc.sort_indices(table, sort_keys=sort_keys))
    starts = pa.array([True] + [False] * (ordered.num_rows - 1))
    for name in key:
        column = ordered.column(name).combine_chunks()
        later, earlier = column.slice(1), column.slice(0, len(column) - 1)
        differs = pc.or_(
            pc.fill_null(pc.not_equal(later, earlier), False),
            pc.xor(pc.is_null(later), pc.is_null(earlier)),
        )
        starts = pc.or_(starts, pa.concat_arrays([pa.array([False]), differs]))
    return ordered.filter(starts)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def count_values(values: pa.Array | pa.ChunkedArray) -> dict[str | None, int]:
    """How often each value occurs (partition keys, NULL as None), counted in Arrow."""
    return {row["values"]: row["counts"] for row in pc.value_counts(values).to_pylist()}


def constant(value: object, kind: pa.DataType, length: int) -> pa.Array:
    """`length` copies of one value (a write's synced-at, version, flag), built without a Python list."""
    return pa.repeat(pa.scalar(value, kind), length)


def with_system_fields(schema: pa.Schema, extra: Sequence[str]) -> pa.Schema:
    fields = [f for f in schema if f.name not in (SOURCE_VERSION, SYNCED_AT)]
    fields += [pa.field(SOURCE_VERSION, pa.int64()), pa.field(SYNCED_AT, SYNCED_AT_TYPE)]
    fields += [pa.field(name, pa.string()) for name in extra]
    return pa.schema(fields)


def without(schema: pa.Schema, name: str | None) -> pa.Schema:
    return schema if name is None or name not in schema.names else schema.remove(schema.get_field_index(name))


def set_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.append_column(name, values) if index < 0 else table.set_column(index, name, values)


def add_system_columns(batch: pa.RecordBatch, source_version: int, synced_at: dt.datetime) -> pa.RecordBatch:
    table = pa.Table.from_batches([batch])
    table = set_column(table, SOURCE_VERSION, constant(source_version, pa.int64(), batch.num_rows))
    table = set_column(table, SYNCED_AT, constant(synced_at, SYNCED_AT_TYPE, batch.num_rows))
    return (
        table.combine_chunks().to_batches()[0]
        if table.num_rows
        else pa.RecordBatch.from_pylist([], schema=table.schema)
    )


def _column_piece(name: str, column: pa.Array) -> pa.Array:
    """`len:name len:value` as binary per row, NULL where the value is NULL."""
    value = _spelled(column)
    length = pc.cast(pc.cast(pc.binary_length(value), pa.large_string()), pa.large_binary())
    label = _bytes(f"{len(name.encode())}:{name}".encode())
    return pc.binary_join_element_wise(label, length, _bytes(b":"), value, _bytes(b""))


def _spelled(column: pa.Array) -> pa.Array:
    """The column's values as binary, spelled by their Delta type so that equal values hash equally."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pc.cast(pc.cast(column, pa.large_string()), pa.large_binary())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        return pc.cast(column, pa.large_binary())
    if pa.types.is_timestamp(kind):
        micros = pc.cast(column, pa.timestamp("us", tz=kind.tz), safe=False)
        return _digits(pc.cast(micros, pa.int64()))
    if pa.types.is_date(kind):
        return _digits(pc.cast(pc.cast(column, pa.date32()), pa.int32()))
    if pa.types.is_time(kind) or pa.types.is_duration(kind):
        return _digits(pc.cast(column, pa.int64()))
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    ):
        return _digits(column)
    # Nested and rare types: canonical JSON per value; slow, but exact and stable.
    spelled = [
        None if value is None else json.dumps(value, sort_keys=True, default=str).encode()
        for value in column.to_pylist()
    ]
    return pa.array(spelled, pa.large_binary())


def _digits(column: pa.Array) -> pa.Array:
    return pc.cast(pc.cast(column, pa.large_string()), pa.large_binary())


def _bytes(value: bytes) -> pa.Scalar:
    return pa.scalar(value, pa.large_binary())


def tables_of(
    batches: Iterable[pa.RecordBatch], rows: int, schema: pa.Schema | None = None
) -> Iterator[pa.Table]:
    """`batches` gathered into tables of at least `rows` rows (the last may hold fewer), in order."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            yield pa.Table.from_batches(pending, schema)
            pending, held = [], 0
    if pending:
        yield pa.Table.from_batches(pending, schema)

"""Writing Delta tables into a warehouse root, the way tests, the demo seed and users put data there.

Each function is one Delta commit (`create_table` is two when it has rows: CREATE TABLE, then the data), so
every write shows up as its own version in `DESCRIBE HISTORY` and in the change data feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.local_warehouse.layout import (
    CHANGE_DATA_FEED_PROPERTY,
    PRIMARY_KEY_PROPERTY,
    TableName,
    decode_primary_key,
    encode_primary_key,
)

Data: TypeAlias = pa.Table | pa.RecordBatchReader


def create_table(
    root: Path | str,
    name: TableName | str,
    data: Data,
    *,
    primary_key: Sequence[str] = (),
    change_data_feed: bool = False,
    comment: str | None = None,
    partition_by: Sequence[str] = (),
) -> DeltaTable:
    """Create `name` under `root` with `data`'s schema, then write `data` (skipped for an empty `pa.Table`).

    Column comments come from the Arrow field metadata key `comment`. Primary key columns become NOT NULL, as
    Unity Catalog requires of a primary key, and are recorded in the `PRIMARY_KEY_PROPERTY` table property.
    """
    table = _table_name(name)
    path = table.path(Path(root))
    if DeltaTable.is_deltatable(str(path)):
        raise FileExistsError(f"table {table} already exists at {path}")
    schema = data.schema
    for role, columns in (("primary_key", primary_key), ("partition_by", partition_by)):
        missing = [c for c in columns if c not in schema.names]
        if missing:
            raise ValueError(f"table {table}: {role} names columns not in the data: {missing}")
    for column in primary_key:
        index = schema.get_field_index(column)
        schema = schema.set(index, schema.field(index).with_nullable(False))
    configuration: dict[str, str | None] = {}
    if change_data_feed:
        configuration[CHANGE_DATA_FEED_PROPERTY] = "true"
    if primary_key:
        configuration[PRIMARY_KEY_PROPERTY] = encode_primary_key(primary_key)
    path.mkdir(parents=True, exist_ok=True)
    # delta-rs only accepts keys it knows unless told otherwise; the primary key property is ours.
    delta = DeltaTable.create(
        str(path),
        schema,
        partition_by=list(partition_by) or None,
        description=comment,
        configuration=configuration or None,
        raise_if_key_not_exists=False,
    )
    if isinstance(data, pa.Table) and data.num_rows == 0:
        return delta
    write_deltalake(delta, _with_schema(data, schema), mode="append")
    return delta


def append(root: Path | str, name: TableName | str, data: Data) -> DeltaTable:
    """Append `data` as one new version (a blind insert: rows already there are not looked at)."""
    delta = open_table(root, name)
    write_deltalake(delta, _with_schema(data, _arrow_schema(delta)), mode="append")
    return delta


def upsert(
    root: Path | str,
    name: TableName | str,
    data: Data,
    key: Sequence[str],
    *,
    target_predicate: str | None = None,
) -> DeltaTable:
    """Merge `data` on `key`: rows whose key matches replace the table's row, the others are inserted.

    `data` must hold each key once: delta-rs would insert both rows of a key that is not in the table yet.
    `target_predicate` narrows the rows that can match, written over `target.<column>`, e.g.
    `target.event_time >= '2026-01-01T00:00:00Z'`: delta-rs then skips the data files that cannot match, which
    keeps a merge into a large table fast and its memory small. Rows it excludes count as not matched.
    """
    table = _table_name(name)
    if not key:
        raise ValueError(f"table {table}: upsert needs at least one key column")
    delta = open_table(root, table)
    source = data.read_all() if isinstance(data, pa.RecordBatchReader) else data
    _require_unique(source, key, table)
    predicate = " AND ".join(f"target.{_quote(c)} = source.{_quote(c)}" for c in key)
    if target_predicate:
        predicate = f"{predicate} AND ({target_predicate})"
    # Every column spelled out: delta-rs's update_all/insert_all do not escape a backtick inside a name.
    every = {_quote(c): f"source.{_quote(c)}" for c in source.column_names}
    (
        delta.merge(
            _with_schema(source, _arrow_schema(delta)),
            predicate,
            source_alias="source",
            target_alias="target",
        )
        .when_matched_update(every)
        .when_not_matched_insert(every)
        .execute()
    )
    return delta


def delete(root: Path | str, name: TableName | str, predicate: str) -> DeltaTable:
    """Delete the rows matching `predicate`, an SQL condition over the table's columns (DataFusion syntax)."""
    table = _table_name(name)
    if not predicate.strip():
        raise ValueError(f"table {table}: delete needs a predicate; use overwrite to empty a table")
    delta = open_table(root, table)
    delta.delete(predicate)
    return delta


def overwrite(root: Path | str, name: TableName | str, data: Data) -> DeltaTable:
    """Replace every row with `data` in one version; schema, properties and comment stay."""
    delta = open_table(root, name)
    write_deltalake(delta, _with_schema(data, _arrow_schema(delta)), mode="overwrite")
    return delta


def open_table(root: Path | str, name: TableName | str) -> DeltaTable:
    """The table at its latest version; `FileNotFoundError` naming the table and path when it is not there."""
    table = _table_name(name)
    path = table.path(Path(root))
    if not DeltaTable.is_deltatable(str(path)):
        raise FileNotFoundError(f"table {table} not found: no Delta table at {path}")
    return DeltaTable(str(path))


def primary_key(delta: DeltaTable) -> tuple[str, ...]:
    """The key declared by `create_table` (the `PRIMARY_KEY_PROPERTY` table property), or `()`."""
    return tuple(decode_primary_key(delta.metadata().configuration.get(PRIMARY_KEY_PROPERTY)))


def _table_name(name: TableName | str) -> TableName:
    return TableName.parse(name) if isinstance(name, str) else name


def _arrow_schema(delta: DeltaTable) -> pa.Schema:
    return pa.schema(delta.schema().to_arrow())


def _with_schema(data: Data, schema: pa.Schema) -> Data:
    """`data` under the table's schema, so that NOT NULL key columns accept data typed as nullable.

    Only nullability and metadata may differ; a type or column mismatch is left for delta-rs to report.
    """
    if data.schema.equals(schema):
        return data
    if [(f.name, f.type) for f in data.schema] != [(f.name, f.type) for f in schema]:
        return data
    if isinstance(data, pa.Table):
        return data.cast(schema)  # raises ValueError on a NULL in a NOT NULL (key) column
    return pa.RecordBatchReader.from_batches(schema, (b.cast(schema) for b in data))


def _require_unique(source: pa.Table, key: Sequence[str], table: TableName) -> None:
    counts = source.group_by(list(key)).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    if repeated.num_rows:
        sample = repeated.select(list(key)).slice(0, 3).to_pylist()
        raise ValueError(
            f"table {table}: upsert data holds {repeated.num_rows} keys more than once, e.g. {sample}"
        )


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'

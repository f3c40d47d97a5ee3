"""Result types the connector accepts: any DuckDB/Arrow schema as Arrow types plus Databricks type names.

The connector reads Arrow natively but knows only Databricks' types, so unsigned integers widen to the next
signed type, oversized decimals, times, intervals, UUIDs and enums become strings, and timestamps become
microseconds (`TIMESTAMP` in the session's time zone, as Spark labels it; `TIMESTAMP_NTZ` without a zone).
Batches are cast only when they differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from zenskar_devtools.local_warehouse.statement import ResultColumn

_MAX_DECIMAL_PRECISION = 38

_SIMPLE: list[tuple[pa.DataType, pa.DataType, str]] = [
    (pa.null(), pa.null(), "VOID"),
    (pa.bool_(), pa.bool_(), "BOOLEAN"),
    (pa.int8(), pa.int8(), "TINYINT"),
    (pa.int16(), pa.int16(), "SMALLINT"),
    (pa.int32(), pa.int32(), "INT"),
    (pa.int64(), pa.int64(), "BIGINT"),
    (pa.uint8(), pa.int16(), "SMALLINT"),
    (pa.uint16(), pa.int32(), "INT"),
    (pa.uint32(), pa.int64(), "BIGINT"),
    (pa.uint64(), pa.decimal128(20, 0), "DECIMAL(20,0)"),
    (pa.float16(), pa.float32(), "FLOAT"),
    (pa.float32(), pa.float32(), "FLOAT"),
    (pa.float64(), pa.float64(), "DOUBLE"),
    (pa.date32(), pa.date32(), "DATE"),
    (pa.date64(), pa.date32(), "DATE"),
]


def databricks_type(arrow_type: pa.DataType, time_zone: str = "UTC") -> tuple[pa.DataType, str]:
    """The Arrow type sent and the Databricks name: uint64 -> decimal128(20, 0), DECIMAL(20,0). A TIMESTAMP
    is labelled with the session's `time_zone` (the same instant; the connector shows it in that zone)."""
    for source, target, name in _SIMPLE:
        if arrow_type == source:
            return target, name
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return pa.string(), "STRING"
    if pa.types.is_string_view(arrow_type):
        return pa.string(), "STRING"
    if pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        return pa.binary(), "BINARY"
    if pa.types.is_fixed_size_binary(arrow_type) or pa.types.is_binary_view(arrow_type):
        return pa.binary(), "BINARY"
    if pa.types.is_timestamp(arrow_type):
        if arrow_type.tz is None:
            return pa.timestamp("us"), "TIMESTAMP_NTZ"
        return pa.timestamp("us", tz=time_zone), "TIMESTAMP"
    if pa.types.is_decimal(arrow_type):
        return _decimal(arrow_type)
    return _nested(arrow_type, time_zone)


def _decimal(arrow_type: pa.DataType) -> tuple[pa.DataType, str]:
    precision, scale = arrow_type.precision, arrow_type.scale
    if precision > _MAX_DECIMAL_PRECISION:
        return pa.string(), "STRING"
    return pa.decimal128(precision, scale), f"DECIMAL({precision},{scale})"


def _nested(arrow_type: pa.DataType, time_zone: str) -> tuple[pa.DataType, str]:
    if pa.types.is_map(arrow_type):
        key, key_name = databricks_type(arrow_type.key_type, time_zone)
        item, item_name = databricks_type(arrow_type.item_type, time_zone)
        return pa.map_(key, item), f"MAP<{key_name}, {item_name}>"
    if _is_list(arrow_type):
        item, item_name = databricks_type(arrow_type.value_type, time_zone)
        return pa.list_(item), f"ARRAY<{item_name}>"
    if pa.types.is_struct(arrow_type):
        fields, names = [], []
        for child in arrow_type:
            child_type, child_name = databricks_type(child.type, time_zone)
            fields.append(pa.field(child.name, child_type))
            names.append(f"{child.name}: {child_name}")
        return pa.struct(fields), f"STRUCT<{', '.join(names)}>"
    if pa.types.is_dictionary(arrow_type):
        return databricks_type(arrow_type.value_type, time_zone)
    # TIME, INTERVAL, duration, unions and anything newer: their text is the most faithful thing to send.
    return pa.string(), "STRING"


def _is_list(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_fixed_size_list(arrow_type)
        or pa.types.is_list_view(arrow_type)
        or pa.types.is_large_list_view(arrow_type)
    )


def databricks_result_columns(
    schema: pa.Schema, time_zone: str = "UTC"
) -> tuple[pa.Schema, list[ResultColumn]]:
    """The schema every sent batch has and the result metadata columns, for a DuckDB/Arrow result schema."""
    fields, columns = [], []
    for field in schema:
        target, name = databricks_type(field.type, time_zone)
        if target != pa.string() and not _castable(field.type, target):
            target, name = pa.string(), "STRING"
        fields.append(pa.field(field.name, target))
        columns.append(ResultColumn(field.name, name))
    return pa.schema(fields), columns


@dataclass(frozen=True)
class BatchConformer:
    """Casts batches to the result schema; a batch that already has it passes through untouched."""

    target: pa.Schema

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.schema.equals(self.target):
            return batch
        arrays = [_cast(column, field.type) for column, field in zip(batch.columns, self.target, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=self.target)

    def conform(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return (self(batch) for batch in batches)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    try:
        _cast(pa.array([], type=source), target)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return False
    return True


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    if column.type == target:
        return column
    if target == pa.string() and not _kernel_casts_to_string(column.type):
        return pa.array([None if value is None else str(value) for value in column.to_pylist()], pa.string())
    # Nanosecond timestamps from DuckDB lose their last digits, as Databricks keeps microseconds only.
    return pc.cast(column, options=pc.CastOptions(target, allow_time_truncate=True))


@lru_cache(maxsize=64)
def _kernel_casts_to_string(source: pa.DataType) -> bool:
    try:
        pa.array([], type=source).cast(pa.string())
    except pa.ArrowNotImplementedError:
        return False
    return True

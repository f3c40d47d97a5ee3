"""Delta column types as Databricks names them, and Arrow types narrowed to what the connector accepts."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa
from deltalake.schema import ArrayType, MapType, PrimitiveType, StructType

DeltaType = PrimitiveType | ArrayType | MapType | StructType

# Delta's primitive names (the Delta protocol) -> Databricks SQL names.
_PRIMITIVES = {
    "long": "bigint",
    "integer": "int",
    "short": "smallint",
    "byte": "tinyint",
    "float": "float",
    "double": "double",
    "boolean": "boolean",
    "string": "string",
    "binary": "binary",
    "date": "date",
    "timestamp": "timestamp",
    "timestamp_ntz": "timestamp_ntz",
}
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_INTEGRAL_BITS = {"tinyint": 8, "smallint": 16, "int": 32, "bigint": 64}
# Bits of precision, as the SQL standard counts them for REAL and DOUBLE PRECISION.
_FLOAT_BITS = {"float": 24, "double": 53}
# Spark's `defaultSize`, which the Thrift server reports as GetColumns' COLUMN_SIZE.
_DEFAULT_SIZES = {
    "boolean": 1,
    "tinyint": 1,
    "smallint": 2,
    "int": 4,
    "bigint": 8,
    "float": 4,
    "double": 8,
    "date": 4,
    "timestamp": 8,
    "timestamp_ntz": 8,
}
# java.sql.Types codes, as Spark's Thrift server maps its types.
_JAVA_SQL_TYPES = {
    "boolean": 16,
    "tinyint": -6,
    "smallint": 5,
    "int": 4,
    "bigint": -5,
    "float": 6,
    "double": 8,
    "decimal": 3,
    "string": 12,
    "binary": -2,
    "date": 91,
    "timestamp": 93,
    "timestamp_ntz": 93,
    "array": 2003,
    "map": 2000,
    "struct": 2002,
}


def databricks_type(delta_type: Any) -> str:
    """The type as `information_schema.columns.full_data_type` shows it: `decimal(18,6)`, `array<int>`."""
    if isinstance(delta_type, ArrayType):
        return f"array<{databricks_type(delta_type.element_type)}>"
    if isinstance(delta_type, MapType):
        return f"map<{databricks_type(delta_type.key_type)},{databricks_type(delta_type.value_type)}>"
    if isinstance(delta_type, StructType):
        return "struct<" + ",".join(f"{f.name}:{databricks_type(f.type)}" for f in delta_type.fields) + ">"
    name = str(delta_type.type)
    if decimal := _DECIMAL.match(name):
        return f"decimal({decimal.group(1)},{decimal.group(2)})"
    return _PRIMITIVES.get(name, name)


def databricks_data_type(delta_type: Any) -> str:
    """The simple name `information_schema.columns.data_type` shows: `BIGINT`, `DECIMAL`, `ARRAY`..."""
    return _base(databricks_type(delta_type)).upper()


def sql_type_name(delta_type: Any) -> str:
    """Spark's `DataType.sql`, which GetColumns reports as TYPE_NAME: `DECIMAL(38,10)`, `MAP<STRING, INT>`."""
    if isinstance(delta_type, ArrayType):
        return f"ARRAY<{sql_type_name(delta_type.element_type)}>"
    if isinstance(delta_type, MapType):
        return f"MAP<{sql_type_name(delta_type.key_type)}, {sql_type_name(delta_type.value_type)}>"
    if isinstance(delta_type, StructType):
        return "STRUCT<" + ", ".join(f"{f.name}: {sql_type_name(f.type)}" for f in delta_type.fields) + ">"
    return databricks_type(delta_type).upper()


def java_sql_type(delta_type: Any) -> int:
    return _JAVA_SQL_TYPES.get(_base(databricks_type(delta_type)), 1111)  # 1111: java.sql.Types.OTHER


def decimal_precision_scale(delta_type: Any) -> tuple[int, int] | None:
    decimal = _DECIMAL.match(databricks_type(delta_type))
    return (int(decimal.group(1)), int(decimal.group(2))) if decimal else None


def numeric_precision(delta_type: Any) -> int | None:
    """information_schema: bits for integral and floating types, digits for DECIMAL."""
    name = databricks_type(delta_type)
    decimal = decimal_precision_scale(delta_type)
    if decimal:
        return decimal[0]
    return _INTEGRAL_BITS.get(name) or _FLOAT_BITS.get(name)


def numeric_precision_radix(delta_type: Any) -> int | None:
    name = databricks_type(delta_type)
    if decimal_precision_scale(delta_type):
        return 10
    return 2 if name in _INTEGRAL_BITS or name in _FLOAT_BITS else None


def numeric_scale(delta_type: Any) -> int | None:
    decimal = decimal_precision_scale(delta_type)
    if decimal:
        return decimal[1]
    return 0 if databricks_type(delta_type) in _INTEGRAL_BITS else None


def datetime_precision(delta_type: Any) -> int | None:
    """As Databricks documents it: 0 for DATE, 3 for the timestamps."""
    return {"date": 0, "timestamp": 3, "timestamp_ntz": 3}.get(databricks_type(delta_type))


def column_size(delta_type: Any) -> int | None:
    """GetColumns' COLUMN_SIZE as Spark computes it: fixed sizes only, summed over a struct's fields."""
    if isinstance(delta_type, StructType):
        sizes = [column_size(f.type) for f in delta_type.fields]
        return None if None in sizes else sum(size for size in sizes if size is not None)
    decimal = decimal_precision_scale(delta_type)
    if decimal:
        return 8 if decimal[0] <= 18 else 16
    return _DEFAULT_SIZES.get(databricks_type(delta_type))


def decimal_digits(delta_type: Any) -> int | None:
    """GetColumns' DECIMAL_DIGITS as Spark computes it."""
    name = databricks_type(delta_type)
    decimal = decimal_precision_scale(delta_type)
    if decimal:
        return decimal[1]
    if name == "boolean" or name in _INTEGRAL_BITS:
        return 0
    return {"float": 7, "double": 15, "timestamp": 6, "timestamp_ntz": 6}.get(name)


def num_prec_radix(delta_type: Any) -> int | None:
    name = databricks_type(delta_type)
    numeric = name in _INTEGRAL_BITS or name in _FLOAT_BITS or decimal_precision_scale(delta_type)
    return 10 if numeric else None


def _base(full_type: str) -> str:
    return re.split(r"[<(]", full_type, maxsplit=1)[0]


def connector_type(arrow_type: pa.DataType) -> pa.DataType:
    """An Arrow type the connector can read: no views, large or unsigned types; microsecond timestamps."""
    if pa.types.is_string_view(arrow_type) or pa.types.is_large_string(arrow_type):
        return pa.string()
    if pa.types.is_binary_view(arrow_type) or pa.types.is_large_binary(arrow_type):
        return pa.binary()
    if pa.types.is_unsigned_integer(arrow_type):
        # One size up keeps every value; uint64 has no bigger signed type, and Delta versions fit in int64.
        widened = {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.int64()}
        return widened[arrow_type.bit_width]
    if pa.types.is_timestamp(arrow_type):
        return pa.timestamp("us", tz=arrow_type.tz)
    if pa.types.is_map(arrow_type):
        return pa.map_(connector_type(arrow_type.key_type), connector_type(arrow_type.item_type))
    if (
        pa.types.is_list(arrow_type)
        or pa.types.is_large_list(arrow_type)
        or pa.types.is_list_view(arrow_type)
    ):
        return pa.list_(connector_field(arrow_type.value_field))
    if pa.types.is_struct(arrow_type):
        return pa.struct([connector_field(arrow_type.field(i)) for i in range(arrow_type.num_fields)])
    return arrow_type


def connector_field(field: pa.Field) -> pa.Field:
    return field.with_type(connector_type(field.type))


def connector_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` in connector types; a change feed's `_commit_timestamp` (UTC without a zone) gets its zone."""
    fields = [connector_field(field) for field in schema]
    fields = [
        f.with_type(pa.timestamp("us", tz="UTC")) if f.name == "_commit_timestamp" else f for f in fields
    ]
    return pa.schema(fields, metadata=schema.metadata)

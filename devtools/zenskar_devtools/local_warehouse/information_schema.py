"""Unity Catalog's information_schema views and the JDBC-style metadata results, built from the catalog.

`<catalog>.information_schema.<view>` covers that catalog; the `system` catalog's views cover every catalog.
Column names, order and types follow Databricks' documentation; values Databricks reserves are NULL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from zenskar_devtools.local_warehouse import delta_types as types
from zenskar_devtools.local_warehouse.errors import table_not_found
from zenskar_devtools.local_warehouse.layout import TableName

if TYPE_CHECKING:
    from zenskar_devtools.local_warehouse.catalog import Catalog, TableInfo

SYSTEM_CATALOG = "system"
# The principal shown as owner and author: the local warehouse has no users.
OWNER = "local-warehouse"
INFORMATION_SCHEMA = "information_schema"
_STRING, _INT, _SHORT = pa.string(), pa.int32(), pa.int16()
_TIMESTAMP = pa.timestamp("us", tz="UTC")


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in columns])


def _strings(*names: str) -> list[tuple[str, pa.DataType]]:
    return [(name, _STRING) for name in names]


_AUDIT = [("created", _TIMESTAMP), ("created_by", _STRING), ("last_altered", _TIMESTAMP)]
_AUDIT += [("last_altered_by", _STRING)]
CATALOGS = _schema(*_strings("catalog_name", "catalog_owner", "comment"), *_AUDIT)
SCHEMATA = _schema(*_strings("catalog_name", "schema_name", "schema_owner", "comment"), *_AUDIT)
TABLES = _schema(
    *_strings("table_catalog", "table_schema", "table_name", "table_type", "is_insertable_into"),
    *_strings("commit_action", "table_owner", "comment"),
    *_AUDIT,
    *_strings("data_source_format", "storage_path", "storage_sub_directory"),
)
COLUMNS = _schema(
    *_strings("table_catalog", "table_schema", "table_name", "column_name"),
    ("ordinal_position", _INT),
    *_strings("column_default", "is_nullable", "full_data_type", "data_type"),
    ("character_maximum_length", _INT),
    ("character_octet_length", _STRING),
    ("numeric_precision", _INT),
    ("numeric_precision_radix", _INT),
    ("numeric_scale", _INT),
    ("datetime_precision", _INT),
    ("interval_type", _STRING),
    ("interval_precision", _INT),
    ("maximum_cardinality", _INT),
    *_strings("is_identity", "identity_generation", "identity_start", "identity_increment"),
    *_strings("identity_maximum", "identity_minimum", "identity_cycle", "is_generated"),
    *_strings("generation_expression", "is_system_time_period_start", "is_system_time_period_end"),
    *_strings("system_time_period_timestamp_generation", "is_updatable"),
    ("partition_index", _INT),
    ("comment", _STRING),
)
TABLE_CONSTRAINTS = _schema(
    *_strings("constraint_catalog", "constraint_schema", "constraint_name"),
    *_strings("table_catalog", "table_schema", "table_name", "constraint_type"),
    *_strings("is_deferrable", "initially_deferred", "enforced", "comment"),
)
KEY_COLUMN_USAGE = _schema(
    *_strings("constraint_catalog", "constraint_schema", "constraint_name"),
    *_strings("table_catalog", "table_schema", "table_name", "column_name"),
    ("ordinal_position", _INT),
    ("position_in_unique_constraint", _INT),
)

JDBC_CATALOGS = _schema(("TABLE_CAT", _STRING))
JDBC_SCHEMAS = _schema(("TABLE_SCHEM", _STRING), ("TABLE_CATALOG", _STRING))
JDBC_TABLES = _schema(
    *_strings("TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "TABLE_TYPE", "REMARKS", "TYPE_CAT", "TYPE_SCHEM"),
    *_strings("TYPE_NAME", "SELF_REFERENCING_COL_NAME", "REF_GENERATION"),
)
# The GetColumns columns Spark's Thrift server returns, with Hive's types for them.
JDBC_COLUMNS = _schema(
    *_strings("TABLE_CAT", "TABLE_SCHEM", "TABLE_NAME", "COLUMN_NAME"),
    ("DATA_TYPE", _INT),
    ("TYPE_NAME", _STRING),
    ("COLUMN_SIZE", _INT),
    ("BUFFER_LENGTH", pa.int8()),
    ("DECIMAL_DIGITS", _INT),
    ("NUM_PREC_RADIX", _INT),
    ("NULLABLE", _INT),
    ("REMARKS", _STRING),
    ("COLUMN_DEF", _STRING),
    ("SQL_DATA_TYPE", _INT),
    ("SQL_DATETIME_SUB", _INT),
    ("CHAR_OCTET_LENGTH", _INT),
    ("ORDINAL_POSITION", _INT),
    *_strings("IS_NULLABLE", "SCOPE_CATALOG", "SCOPE_SCHEMA", "SCOPE_TABLE"),
    ("SOURCE_DATA_TYPE", _SHORT),
    ("IS_AUTO_INCREMENT", _STRING),
)


def information_schema(catalog: Catalog, catalog_name: str, view: str) -> pa.Table:
    builder = _VIEWS.get(view)
    known_catalog = catalog_name == SYSTEM_CATALOG or catalog_name in catalog.catalogs()
    if builder is None or not known_catalog:
        raise table_not_found(f"{catalog_name}.{INFORMATION_SCHEMA}.{view}")
    covered = catalog.catalogs() if catalog_name == SYSTEM_CATALOG else [catalog_name]
    schema, rows = builder(catalog, covered)
    return pa.Table.from_pylist(list(rows), schema=schema)


Rows = Iterator[dict[str, Any]]


def _catalog_rows(catalog: Catalog, covered: list[str]) -> tuple[pa.Schema, Rows]:
    rows = ({"catalog_name": name, "catalog_owner": OWNER, **_audit(catalog.root / name)} for name in covered)
    return CATALOGS, rows


def _schemata_rows(catalog: Catalog, covered: list[str]) -> tuple[pa.Schema, Rows]:
    rows = (
        {
            "catalog_name": cat,
            "schema_name": schema,
            "schema_owner": OWNER,
            **_audit(catalog.root / cat / schema),
        }
        for cat in covered
        for schema in _schemas_with_information_schema(catalog, cat)
    )
    return SCHEMATA, rows


def _table_rows(catalog: Catalog, covered: list[str]) -> tuple[pa.Schema, Rows]:
    rows = (
        {
            **_table_columns(info.name),
            "table_type": "MANAGED",
            "is_insertable_into": "YES",
            "commit_action": "PRESERVE",
            "table_owner": OWNER,
            "comment": info.comment,
            "created": info.created,
            "created_by": OWNER,
            "last_altered": info.last_altered,
            "last_altered_by": OWNER,
            "data_source_format": "DELTA",
            "storage_path": info.location.as_uri(),
            "storage_sub_directory": None,
        }
        for info in _infos(catalog, covered)
    )
    return TABLES, rows


def _column_rows(catalog: Catalog, covered: list[str]) -> tuple[pa.Schema, Rows]:
    rows = (
        _column_row(info, position, field)
        for info in _infos(catalog, covered)
        for position, field in enumerate(info.fields)
    )
    return COLUMNS, rows


def _column_row(info: TableInfo, position: int, field: Any) -> dict[str, Any]:
    kind = field.type
    partition_index = (
        info.partition_columns.index(field.name) if field.name in info.partition_columns else None
    )
    return {
        **_table_columns(info.name),
        "column_name": field.name,
        # Databricks numbers information_schema.columns from 0, although its documentation says 1.
        "ordinal_position": position,
        "is_nullable": "YES" if field.nullable else "NO",
        "full_data_type": types.databricks_type(kind),
        "data_type": types.databricks_data_type(kind),
        "numeric_precision": types.numeric_precision(kind),
        "numeric_precision_radix": types.numeric_precision_radix(kind),
        "numeric_scale": types.numeric_scale(kind),
        "datetime_precision": types.datetime_precision(kind),
        "is_identity": "NO",
        "is_system_time_period_start": "NO",
        "is_system_time_period_end": "NO",
        "is_updatable": "YES",
        "partition_index": partition_index,
        "comment": field.metadata.get("comment"),
    }


def _constraint_rows(catalog: Catalog, covered: list[str]) -> tuple[pa.Schema, Rows]:
    rows = (
        {
            **_constraint_columns(info.name),
            **_table_columns(info.name),
            "constraint_type": "PRIMARY KEY",
            "is_deferrable": "YES",
            "initially_deferred": "YES",
            # Like Unity Catalog's informational keys: declared, never enforced.
            "enforced": "NO",
        }
        for info in _infos(catalog, covered)
        if info.primary_key
    )
    return TABLE_CONSTRAINTS, rows


def _key_column_rows(catalog: Catalog, covered: list[str]) -> tuple[pa.Schema, Rows]:
    rows = (
        {
            **_constraint_columns(info.name),
            **_table_columns(info.name),
            "column_name": column,
            "ordinal_position": position,
        }
        for info in _infos(catalog, covered)
        for position, column in enumerate(info.primary_key, start=1)
    )
    return KEY_COLUMN_USAGE, rows


_VIEWS: dict[str, Callable[[Catalog, list[str]], tuple[pa.Schema, Rows]]] = {
    "catalogs": _catalog_rows,
    "schemata": _schemata_rows,
    "tables": _table_rows,
    "columns": _column_rows,
    "table_constraints": _constraint_rows,
    "key_column_usage": _key_column_rows,
}


# -- JDBC-style metadata (cursor.catalogs(), .schemas(), .tables(), .columns()) ----------------------------


def jdbc_catalogs(catalog: Catalog) -> pa.Table:
    return pa.Table.from_pylist([{"TABLE_CAT": name} for name in catalog.catalogs()], schema=JDBC_CATALOGS)


def jdbc_schemas(catalog: Catalog, catalog_name: str | None, schema_pattern: str | None) -> pa.Table:
    rows = [
        {"TABLE_SCHEM": schema, "TABLE_CATALOG": cat}
        for cat in _matching(catalog.catalogs(), catalog_name)
        for schema in _matching(_schemas_with_information_schema(catalog, cat), schema_pattern)
    ]
    return pa.Table.from_pylist(rows, schema=JDBC_SCHEMAS)


def jdbc_tables(
    catalog: Catalog,
    catalog_name: str | None,
    schema_pattern: str | None,
    table_pattern: str | None,
    table_types: list[str] | None,
) -> pa.Table:
    if table_types and "TABLE" not in {kind.upper() for kind in table_types}:
        return pa.Table.from_pylist([], schema=JDBC_TABLES)
    rows = [
        {
            "TABLE_CAT": info.name.catalog,
            "TABLE_SCHEM": info.name.schema,
            "TABLE_NAME": info.name.table,
            "TABLE_TYPE": "TABLE",
            "REMARKS": info.comment or "",
        }
        for info in _matching_infos(catalog, catalog_name, schema_pattern, table_pattern)
    ]
    return pa.Table.from_pylist(rows, schema=JDBC_TABLES)


def jdbc_columns(
    catalog: Catalog,
    catalog_name: str | None,
    schema_pattern: str | None,
    table_pattern: str | None,
    column_pattern: str | None,
) -> pa.Table:
    column_like = _like(column_pattern)
    rows = [
        _jdbc_column_row(info, position, field)
        for info in _matching_infos(catalog, catalog_name, schema_pattern, table_pattern)
        for position, field in enumerate(info.fields)
        if column_like is None or column_like.match(field.name)
    ]
    return pa.Table.from_pylist(rows, schema=JDBC_COLUMNS)


def _jdbc_column_row(info: TableInfo, position: int, field: Any) -> dict[str, Any]:
    kind = field.type
    return {
        "TABLE_CAT": info.name.catalog,
        "TABLE_SCHEM": info.name.schema,
        "TABLE_NAME": info.name.table,
        "COLUMN_NAME": field.name,
        "DATA_TYPE": types.java_sql_type(kind),
        "TYPE_NAME": types.sql_type_name(kind),
        "COLUMN_SIZE": types.column_size(kind),
        "DECIMAL_DIGITS": types.decimal_digits(kind),
        "NUM_PREC_RADIX": types.num_prec_radix(kind),
        "NULLABLE": 1 if field.nullable else 0,
        "REMARKS": field.metadata.get("comment") or "",
        # Spark's Thrift server numbers GetColumns from 0, like information_schema.columns.
        "ORDINAL_POSITION": position,
        "IS_NULLABLE": "YES" if field.nullable else "NO",
        "IS_AUTO_INCREMENT": "NO",
    }


# -- helpers -----------------------------------------------------------------------------------------------


def _infos(catalog: Catalog, covered: list[str]) -> Iterator[TableInfo]:
    for cat in covered:
        for name in catalog.all_tables(cat):
            yield catalog.table_info(name)


def _matching_infos(
    catalog: Catalog, catalog_name: str | None, schema_pattern: str | None, table_pattern: str | None
) -> Iterator[TableInfo]:
    for cat in _matching(catalog.catalogs(), catalog_name):
        for schema in _matching(catalog.schemas(cat), schema_pattern):
            for table in _matching(catalog.tables(cat, schema), table_pattern):
                yield catalog.table_info(TableName(cat, schema, table))


def _schemas_with_information_schema(catalog: Catalog, catalog_name: str) -> list[str]:
    """Every Unity Catalog catalog has an information_schema schema, so listings show it too."""
    return sorted({*catalog.schemas(catalog_name), INFORMATION_SCHEMA})


def _table_columns(name: TableName) -> dict[str, str]:
    return {"table_catalog": name.catalog, "table_schema": name.schema, "table_name": name.table}


def _constraint_columns(name: TableName) -> dict[str, str]:
    return {
        "constraint_catalog": name.catalog,
        "constraint_schema": name.schema,
        "constraint_name": f"{name.table}_pk",
    }


def _audit(folder: Path) -> dict[str, Any]:
    """Catalogs and schemas are plain folders: their modification time stands in for both timestamps."""
    at = datetime.fromtimestamp(folder.stat().st_mtime, tz=UTC) if folder.exists() else None
    return {"created": at, "created_by": OWNER, "last_altered": at, "last_altered_by": OWNER}


def _like(pattern: str | None) -> re.Pattern[str] | None:
    """A SQL LIKE pattern (`%`, `_`, `\\` escapes) as a case-insensitive regex; None matches everything."""
    if pattern is None or pattern in ("%", "*"):
        return None
    regex, escaped = [], False
    for char in pattern:
        if escaped:
            regex.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            regex.append({"%": ".*", "_": "."}.get(char) or re.escape(char))
    return re.compile("".join(regex) + r"\Z", re.IGNORECASE)


def _matching(names: Iterable[str], pattern: str | None) -> list[str]:
    like = _like(pattern)
    return [name for name in names if like is None or like.match(name)]

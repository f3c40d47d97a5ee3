"""The connector's metadata calls (`cursor.catalogs()`, `schemas()`, `tables()`, `columns()`) as results."""

from __future__ import annotations

from typing import Any

from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.engine import table_result
from zenskar_devtools.local_warehouse.statement import SessionState, StatementResult


def metadata_call(
    catalog: Catalog, call: str, args: dict[str, Any], session: SessionState
) -> StatementResult:
    if call == "catalogs":
        table = catalog.jdbc_catalogs()
    elif call == "schemas":
        table = catalog.jdbc_schemas(args.get("catalog"), args.get("schema"))
    elif call == "tables":
        types: list[str] | None = args.get("table_types")
        table = catalog.jdbc_tables(args.get("catalog"), args.get("schema"), args.get("table"), types)
    elif call == "columns":
        table = catalog.jdbc_columns(
            args.get("catalog"), args.get("schema"), args.get("table"), args.get("column")
        )
    else:
        raise ValueError(f"unknown metadata call {call}")
    return table_result(table)

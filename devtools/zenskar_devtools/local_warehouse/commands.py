"""Statements that are not queries: SHOW, DESCRIBE, USE and SET, answered from the catalog and the session.

sqlglot parses most of these as an opaque `Command`, so each is matched by one regular expression here, in
the order Databricks documents its syntax; the first that matches answers the statement.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa

from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.statement import SessionState

TIME_ZONE_KEY = "spark.sql.session.timeZone"
TIME_ZONE_ALIAS = "timezone"  # Databricks SQL's name for it, in `SET` and a session's configuration


def session_key(key: str) -> str:
    """The key a setting is kept under: Databricks SQL's `TIMEZONE` (any case) is Spark's time zone key."""
    return TIME_ZONE_KEY if key.lower() == TIME_ZONE_ALIAS else key


_NAME = r"(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)"
_QUALIFIED = rf"({_NAME}(?:\s*\.\s*{_NAME})*)"
_LIKE = r"(?:\s+LIKE\s+'([^']*)')?"
_FLAGS = re.IGNORECASE | re.DOTALL
_NO_COLUMNS = pa.table({})


def run_command(sql: str, catalog: Catalog, session: SessionState) -> pa.Table | None:
    """The answer to a SHOW/DESCRIBE/USE/SET statement, or None when `sql` is not one of them."""
    for pattern, answer in _COMMANDS:
        match = pattern.fullmatch(sql)
        if match:
            return answer(match, catalog, session)
    return None


def _show_catalogs(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    names = [name for name in catalog.catalogs() if _like(name, match.group(1))]
    return pa.table({"catalog": pa.array(names, pa.string())})


def _show_schemas(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    catalog_name = _parts(match.group(1))[0] if match.group(1) else session.catalog
    _require_catalog(catalog, catalog_name)
    names = [name for name in catalog.schemas(catalog_name) if _like(name, match.group(2))]
    return pa.table({"databaseName": pa.array(names, pa.string())})


def _show_tables(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    parts = _parts(match.group(1)) if match.group(1) else [session.schema]
    catalog_name, schema = (parts if len(parts) == 2 else [session.catalog, *parts])[-2:]
    _require_schema(catalog, catalog_name, schema)
    names = [name for name in catalog.tables(catalog_name, schema) if _like(name, match.group(2))]
    return pa.table(
        {
            "database": pa.array([schema] * len(names), pa.string()),
            "tableName": pa.array(names, pa.string()),
            "isTemporary": pa.array([False] * len(names), pa.bool_()),
        }
    )


def _describe_history(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    name = catalog.resolve(_parts(match.group(1)), session.catalog, session.schema)
    return catalog.history(name, int(match.group(2)) if match.group(2) else None)


def _describe_table(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    name = catalog.resolve(_parts(match.group(2)), session.catalog, session.schema)
    return catalog.describe_extended(name) if match.group(1) else catalog.describe(name)


def _use(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    kind, parts = (match.group(1) or "").upper(), _parts(match.group(2))
    if kind == "CATALOG" or len(parts) > 2:
        if len(parts) != 1:
            raise _syntax(f"USE CATALOG takes one name, got {match.group(2)!r}")
        _require_catalog(catalog, parts[0])
        session.catalog, session.schema = parts[0], "default"
    else:
        catalog_name = parts[0] if len(parts) == 2 else session.catalog
        _require_schema(catalog, catalog_name, parts[-1])
        session.catalog, session.schema = catalog_name, parts[-1]
    return _NO_COLUMNS


def _set_time_zone(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    session.configuration[TIME_ZONE_KEY] = validate_time_zone(match.group(1) or "UTC")
    return _NO_COLUMNS


def _set(match: re.Match[str], catalog: Catalog, session: SessionState) -> pa.Table:
    key, value = match.group(1), match.group(2)
    key = None if key is None else session_key(key)
    if key is None:
        items = sorted(session.configuration.items())
    elif value is None:
        items = [(key, session.configuration.get(key, "<undefined>"))]
    else:
        value = value.strip()
        if key == TIME_ZONE_KEY:
            value = validate_time_zone(value.strip("'\""))
        session.configuration[key] = value
        items = [(key, value)]
    return pa.table(
        {
            "key": pa.array([k for k, _ in items], pa.string()),
            "value": pa.array([v for _, v in items], pa.string()),
        }
    )


def validate_time_zone(name: str) -> str:
    """A time zone name DuckDB and Python both know (`UTC`, `America/New_York`, ...)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise WarehouseError(
            "INVALID_CONF_VALUE.TIME_ZONE",
            f"The value '{name}' in the config \"{TIME_ZONE_KEY}\" is invalid. Cannot resolve the given "
            "timezone.",
            "22022",
        ) from error
    return name


def _require_catalog(catalog: Catalog, name: str) -> None:
    if name not in catalog.catalogs():
        raise WarehouseError(
            "NO_SUCH_CATALOG_EXCEPTION",
            f"Catalog '{name}' was not found. Please verify the catalog name.",
            "42704",
        )


def _require_schema(catalog: Catalog, catalog_name: str, schema: str) -> None:
    if schema not in catalog.schemas(catalog_name):
        raise WarehouseError(
            "SCHEMA_NOT_FOUND",
            f"The schema `{catalog_name}`.`{schema}` cannot be found. Verify the spelling and correctness of "
            "the schema and catalog.",
            "42704",
        )


def _parts(qualified: str) -> list[str]:
    """`a.`B`.c` -> ['a', 'b', 'c']: Unity Catalog names are lower-case."""
    return [part.strip("`").lower() for part in re.findall(_NAME, qualified)]


def _like(name: str, pattern: str | None) -> bool:
    """Databricks' SHOW ... LIKE: `*` matches anything, `|` separates alternatives, case-insensitively."""
    if pattern is None:
        return True
    regex = "|".join(
        ".*".join(map(re.escape, alternative.strip().split("*"))) for alternative in pattern.split("|")
    )
    return re.fullmatch(regex, name, re.IGNORECASE) is not None


def _syntax(detail: str) -> WarehouseError:
    return WarehouseError("PARSE_SYNTAX_ERROR", f"Syntax error: {detail}.", "42601")


_Answer = Callable[[re.Match[str], Catalog, SessionState], pa.Table]
_IN = rf"(?:\s+(?:IN|FROM)\s+{_QUALIFIED})?"
_COMMANDS: list[tuple[re.Pattern[str], _Answer]] = [
    (re.compile(rf"SHOW\s+CATALOGS{_LIKE}", _FLAGS), _show_catalogs),
    (
        re.compile(rf"SHOW\s+(?:SCHEMAS|DATABASES){_IN}{_LIKE}", _FLAGS),
        _show_schemas,
    ),
    (re.compile(rf"SHOW\s+TABLES{_IN}{_LIKE}", _FLAGS), _show_tables),
    (re.compile(rf"DESC(?:RIBE)?\s+HISTORY\s+{_QUALIFIED}(?:\s+LIMIT\s+(\d+))?", _FLAGS), _describe_history),
    (
        re.compile(rf"DESC(?:RIBE)?\s+(?:TABLE\s+)?((?:EXTENDED|FORMATTED)\s+)?{_QUALIFIED}", _FLAGS),
        _describe_table,
    ),
    (re.compile(rf"USE\s+(?:(CATALOG|SCHEMA|DATABASE)\s+)?{_QUALIFIED}", _FLAGS), _use),
    (re.compile(r"SET\s+TIME\s+ZONE\s+(?:LOCAL|'([^']+)')", _FLAGS), _set_time_zone),
    (re.compile(r"SET(?:\s+([^\s=]+)\s*(?:=(.*))?)?", _FLAGS), _set),
]

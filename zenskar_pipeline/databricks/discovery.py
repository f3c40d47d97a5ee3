"""Discovery: what Unity Catalog says about the tables the streams file selects (columns, comments, primary
keys), read from `<catalog>.information_schema` in three statements per catalog, with a suggested cursor and
key per table. `zenskar_pipeline.state` caches the result, so that definitions load without a connection.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from databricks.sql.exc import ServerOperationError

from zenskar_pipeline.config import PipelineConfig, StreamConfig, TableName
from zenskar_pipeline.config.models import part_matches
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.databricks.sql_text import ParameterValue, quote_identifier

INFORMATION_SCHEMA = "information_schema"


class TypeFamily(StrEnum):
    """What a column's Databricks type can do for a sync: order rows, place them in a time window."""

    TIMESTAMP = "timestamp"  # an instant
    TIMESTAMP_NTZ = "timestamp_ntz"  # wall-clock time
    DATE = "date"
    INTEGER = "integer"  # tinyint, smallint, int, bigint
    DECIMAL = "decimal"
    FLOATING = "floating"  # float, double
    STRING = "string"  # also char(n), varchar(n)
    OTHER = "other"  # boolean, binary, interval, variant, array, map, struct, ...

    @classmethod
    def of(cls, full_data_type: str) -> TypeFamily:
        base = re.split(r"[(<]", full_data_type.strip().lower(), maxsplit=1)[0].strip()
        return _FAMILIES.get(base, cls.OTHER)

    @property
    def is_time(self) -> bool:
        return self in (TypeFamily.TIMESTAMP, TypeFamily.TIMESTAMP_NTZ, TypeFamily.DATE)

    @property
    def is_numeric(self) -> bool:
        return self in (TypeFamily.INTEGER, TypeFamily.DECIMAL, TypeFamily.FLOATING)

    @property
    def can_order(self) -> bool:
        """A cursor type: compared with `>=` and the greatest value kept as a high-water mark. STRING is not
        one: it orders by bytes ('9' > '10') and has no duration to subtract for `cursor_lag`."""
        return self.is_time or self.is_numeric


_FAMILIES: dict[str, TypeFamily] = {
    "timestamp": TypeFamily.TIMESTAMP,
    "timestamp_ltz": TypeFamily.TIMESTAMP,
    "timestamp_ntz": TypeFamily.TIMESTAMP_NTZ,
    "date": TypeFamily.DATE,
    **dict.fromkeys(
        ("tinyint", "byte", "smallint", "short", "int", "integer", "bigint", "long"), TypeFamily.INTEGER
    ),
    **dict.fromkeys(("decimal", "dec", "numeric"), TypeFamily.DECIMAL),
    **dict.fromkeys(("float", "real", "double"), TypeFamily.FLOATING),
    **dict.fromkeys(("string", "char", "varchar"), TypeFamily.STRING),
}


@dataclass(frozen=True)
class DiscoveredColumn:
    name: str
    full_data_type: str  # as information_schema.columns has it, lower-case: "decimal(10,2)", "array<string>"
    nullable: bool
    ordinal: int  # 0-based, as Unity Catalog numbers information_schema.columns
    comment: str | None = None

    @property
    def family(self) -> TypeFamily:
        return TypeFamily.of(self.full_data_type)


@dataclass(frozen=True)
class Suggestion:
    """A cursor or key `discover` proposes, and why."""

    columns: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class DiscoveredTable:
    name: TableName
    columns: tuple[DiscoveredColumn, ...]  # in ordinal order
    primary_key: tuple[str, ...] = ()  # the Unity Catalog PRIMARY KEY constraint, in key order; () if none
    comment: str | None = None
    last_altered: dt.datetime | None = None  # a hint only: the sensor reads Delta versions
    table_type: str | None = None  # MANAGED, EXTERNAL, VIEW, ...

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> DiscoveredColumn | None:
        """The column called `name`, compared case-insensitively as Unity Catalog does."""
        return next((c for c in self.columns if c.name.casefold() == name.casefold()), None)

    @property
    def suggested_cursor(self) -> Suggestion | None:
        return suggest_cursor(self)

    @property
    def suggested_key(self) -> Suggestion | None:
        return suggest_key(self)


@dataclass(frozen=True)
class DiscoveredCatalog:
    """Every table discovery found for one streams file, by name; what the state file holds."""

    tables: Mapping[str, DiscoveredTable]  # by `catalog.schema.table`, sorted
    catalogs: tuple[str, ...]  # the catalogs searched (a catalog that does not exist has no tables)
    discovered_at: dt.datetime  # UTC
    statements: int = field(default=0, compare=False)  # how many statements discovery issued; not saved

    def get(self, name: str | TableName) -> DiscoveredTable | None:
        return self.tables.get(str(name).lower())

    def columns_by_table(self) -> dict[str, list[str]]:
        """What `config.source_problems` checks streams against."""
        return {name: table.column_names for name, table in self.tables.items()}


# -- reading information_schema ------------------------------------------------------------------------------


def discover_tables(
    session: DatabricksSession, config: PipelineConfig, *, now: dt.datetime | None = None
) -> DiscoveredCatalog:
    """The tables `config`'s streams select (explicit names and patterns), as Unity Catalog describes them.

    Per catalog three statements: `tables`, `columns`, and `table_constraints` joined with `key_column_usage`,
    each filtered by bound schema and table names; a pattern with `*` in its catalog part first lists the
    catalogs (one more statement). Only tables an entry matches are kept. A catalog that does not exist
    yields no tables: `validate_streams` then names every stream that wanted one.
    """
    before = session.statements_issued
    entries = list(config.streams)
    catalogs = _catalogs_to_search(session, entries)
    found: dict[str, DiscoveredTable] = {}
    for catalog in catalogs:
        wanted = [entry for entry in entries if part_matches(entry.table.split(".")[0], catalog)]
        for table in _discover_catalog(session, catalog, wanted):
            if any(entry.matches(table.name) for entry in wanted):
                found[str(table.name)] = table
    return DiscoveredCatalog(
        tables=dict(sorted(found.items())),
        catalogs=tuple(catalogs),
        discovered_at=now or dt.datetime.now(dt.UTC),
        statements=session.statements_issued - before,
    )


def _catalogs_to_search(session: DatabricksSession, entries: Sequence[StreamConfig]) -> list[str]:
    parts = {entry.table.split(".")[0] for entry in entries}
    named = {part for part in parts if "*" not in part}
    if len(named) < len(parts):  # a pattern such as *.billing.*: ask which catalogs there are
        rows = session.query_table(
            f"SELECT catalog_name FROM system.{INFORMATION_SCHEMA}.catalogs ORDER BY catalog_name"
        ).to_pylist()
        every = [str(row["catalog_name"]) for row in rows]
        named |= {name for name in every if any(part_matches(part, name) for part in parts)}
    return sorted(named)


def _discover_catalog(
    session: DatabricksSession, catalog: str, entries: Sequence[StreamConfig]
) -> list[DiscoveredTable]:
    view = f"{quote_identifier(catalog)}.{INFORMATION_SCHEMA}"
    scope, parameters = _scope(entries, "t")
    key_scope, key_parameters = _scope(entries, "c")
    try:
        table_rows = session.query_table(
            "SELECT table_schema, table_name, table_type, comment, last_altered "
            f"FROM {view}.tables AS t WHERE {scope} ORDER BY table_schema, table_name",
            parameters,
        ).to_pylist()
    except ServerOperationError as error:
        if _catalog_missing(error):
            return []
        raise
    if not table_rows:
        return []
    column_rows = session.query_table(
        "SELECT table_schema, table_name, column_name, ordinal_position, full_data_type, is_nullable, "
        f"comment FROM {view}.columns AS t WHERE {scope} "
        "ORDER BY table_schema, table_name, ordinal_position",
        parameters,
    ).to_pylist()
    key_rows = session.query_table(
        "SELECT k.table_schema, k.table_name, k.column_name, k.ordinal_position "
        f"FROM {view}.table_constraints AS c JOIN {view}.key_column_usage AS k "
        "ON k.constraint_catalog = c.constraint_catalog AND k.constraint_schema = c.constraint_schema "
        "AND k.constraint_name = c.constraint_name "
        f"WHERE c.constraint_type = :constraint_type AND {key_scope} "
        "ORDER BY k.table_schema, k.table_name, k.ordinal_position",
        {**key_parameters, "constraint_type": "PRIMARY KEY"},
    ).to_pylist()
    return _tables(catalog, table_rows, column_rows, key_rows)


def _scope(entries: Sequence[StreamConfig], alias: str) -> tuple[str, dict[str, ParameterValue]]:
    """A WHERE condition narrowing a catalog's view (aliased `alias`) to the schemas and tables the entries
    name, and its bound values; `*` parts are left to `StreamConfig.matches` once the rows arrive."""
    parameters: dict[str, ParameterValue] = {"information_schema": INFORMATION_SCHEMA}
    condition = f"{alias}.table_schema <> :information_schema"
    alternatives: list[str] = []
    for index, (schema, table) in enumerate(_schema_and_table(entry) for entry in entries):
        terms = {f"schema_{index}": ("table_schema", schema), f"table_{index}": ("table_name", table)}
        named = {marker: term for marker, term in terms.items() if "*" not in term[1]}
        if not named:  # this entry wants every table of the catalog
            return condition, {"information_schema": INFORMATION_SCHEMA}
        alternatives.append(
            " AND ".join(f"{alias}.{column} = :{marker}" for marker, (column, _) in named.items())
        )
        parameters.update({marker: value for marker, (_, value) in named.items()})
    return f"{condition} AND (({') OR ('.join(alternatives)}))", parameters


def _schema_and_table(entry: StreamConfig) -> tuple[str, str]:
    _, schema, table = entry.table.split(".")
    return schema, table


def _catalog_missing(error: ServerOperationError) -> bool:
    text = str(error)
    return any(kind in text for kind in ("TABLE_OR_VIEW_NOT_FOUND", "NO_SUCH_CATALOG", "CATALOG_NOT_FOUND"))


def _tables(
    catalog: str,
    table_rows: Iterable[Mapping[str, object]],
    column_rows: Iterable[Mapping[str, object]],
    key_rows: Iterable[Mapping[str, object]],
) -> list[DiscoveredTable]:
    columns: dict[tuple[str, str], list[DiscoveredColumn]] = {}
    for row in column_rows:
        columns.setdefault(_where(row), []).append(
            DiscoveredColumn(
                name=str(row["column_name"]),
                full_data_type=str(row["full_data_type"]).lower(),
                nullable=str(row["is_nullable"]).upper() != "NO",
                ordinal=int(str(row["ordinal_position"])),
                comment=_text(row["comment"]),
            )
        )
    keys: dict[tuple[str, str], list[str]] = {}
    for row in key_rows:
        keys.setdefault(_where(row), []).append(str(row["column_name"]))
    tables = []
    for row in table_rows:
        where = _where(row)
        try:
            name = TableName(catalog.lower(), *where)
        except ValueError:
            continue  # a name that is not a plain lower-case identifier can never be a stream
        altered = row["last_altered"]
        tables.append(
            DiscoveredTable(
                name=name,
                columns=tuple(sorted(columns.get(where, []), key=lambda column: column.ordinal)),
                primary_key=tuple(keys.get(where, [])),
                comment=_text(row["comment"]),
                last_altered=altered.astimezone(dt.UTC) if isinstance(altered, dt.datetime) else None,
                table_type=_text(row["table_type"]),
            )
        )
    return tables


def _where(row: Mapping[str, object]) -> tuple[str, str]:
    return (str(row["table_schema"]), str(row["table_name"]))


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


# -- suggestions ------------------------------------------------------------------------------------------

# Cursor names by how well they follow changes: a column set on every change first, then one set when a row
# lands, then one set once when the event happened (it misses later corrections).
_CURSOR_TIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "named like a last-change time",
        (
            "updated_at", "modified_at", "last_modified_at", "last_updated_at", "last_modified",
            "last_updated", "updated_time", "modified_time", "update_time", "updated", "modified",
            "_commit_timestamp", "_updated_at", "_modified_at",
        ),
    ),
    (
        "named like a load time",
        (
            "ingested_at", "_ingested_at", "ingestion_time", "loaded_at", "_loaded_at", "load_time",
            "inserted_at", "_inserted_at", "_etl_loaded_at", "_synced_at",
        ),
    ),
    (
        "named like an event time, which misses later corrections of a row",
        (
            "event_time", "event_timestamp", "event_ts", "created_at", "creation_time", "created",
            "timestamp", "ts",
        ),
    ),
)  # fmt: skip
_TIME_SUFFIXES = ("_at", "_time", "_timestamp", "_ts")
_FAMILY_PREFERENCE = (TypeFamily.TIMESTAMP, TypeFamily.TIMESTAMP_NTZ, TypeFamily.DATE, TypeFamily.INTEGER)


def suggest_cursor(table: DiscoveredTable) -> Suggestion | None:
    """The column most likely to grow with every change of a row.

    Rule: only TIMESTAMP, TIMESTAMP_NTZ, DATE, integer or DECIMAL columns (FLOAT, STRING and the rest cannot
    carry a cursor exactly). Among them, by name: last-change names (`updated_at`, `modified_at`,
    `_commit_timestamp`, ...), then load-time names (`ingested_at`, `loaded_at`, ...), then event-time names
    (`event_time`, `created_at`, ...), each tier in that listed order; failing those, a TIMESTAMP or DATE
    column whose name ends in `_at`, `_time`, `_timestamp` or `_ts`. Ties go to TIMESTAMP, then
    TIMESTAMP_NTZ, DATE, integer, decimal, then the earlier column.
    """
    usable = [c for c in table.columns if c.family.can_order and c.family is not TypeFamily.FLOATING]
    best: tuple[tuple[int, int, int, int], DiscoveredColumn, str] | None = None
    for column in usable:
        ranked = _cursor_rank(column)
        if ranked is None:
            continue
        (tier, position), reason = ranked
        rank = (tier, position, _family_rank(column.family), column.ordinal)
        if best is None or rank < best[0]:
            best = (rank, column, reason)
    if best is None:
        return None
    _, column, reason = best
    return Suggestion((column.name,), f"{column.full_data_type}; {reason}")


def _cursor_rank(column: DiscoveredColumn) -> tuple[tuple[int, int], str] | None:
    name = column.name.lower()
    for tier, (reason, names) in enumerate(_CURSOR_TIERS):
        if name in names:
            return (tier, names.index(name)), reason
    if column.family.is_time and name.endswith(_TIME_SUFFIXES):
        return (len(_CURSOR_TIERS), 0), "a time column; check that it grows with every change"
    return None


def _family_rank(family: TypeFamily) -> int:
    return _FAMILY_PREFERENCE.index(family) if family in _FAMILY_PREFERENCE else len(_FAMILY_PREFERENCE)


def suggest_key(table: DiscoveredTable) -> Suggestion | None:
    """The Unity Catalog primary key; else a NOT NULL scalar column named `<table>_id` (also with the
    table name's trailing `s` dropped: `customers` -> `customer_id`), `id` or `event_id`, in that order."""
    if table.primary_key:
        return Suggestion(table.primary_key, "the Unity Catalog PRIMARY KEY constraint")
    singular = table.name.table[:-1] if table.name.table.endswith("s") else table.name.table
    for name in dict.fromkeys((f"{table.name.table}_id", f"{singular}_id", "id", "event_id")):
        column = table.column(name)
        if column is None or column.nullable or column.family in (TypeFamily.OTHER, TypeFamily.FLOATING):
            continue
        return Suggestion(
            (column.name,),
            f"{column.full_data_type} NOT NULL; named like a key, and no PRIMARY KEY constraint is declared",
        )
    return None

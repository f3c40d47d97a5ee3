"""A parsed Databricks query rewritten for DuckDB: tables become registered Arrow sources, markers binds.

Catalog names never reach DuckDB (it reserves `main`): each table reference, `information_schema` view and
`table_changes(...)` call is read through the catalog and registered under a generated name, keeping the
name it was written with as its alias so that qualified columns (`t.id`) still resolve.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from itertools import count
from typing import TypeAlias

import pyarrow as pa
import pyarrow.dataset as ds
from sqlglot import exp

from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.parameters import POSITIONAL_PREFIX, BoundParameter, lookup
from zenskar_devtools.local_warehouse.statement import SessionState

NONZERO_MACRO = "__lw_nonzero"
NONZERO_MACRO_SQL = (
    f"CREATE MACRO {NONZERO_MACRO}(divisor) AS "
    "CASE WHEN divisor = 0 THEN error('DIVIDE_BY_ZERO') ELSE divisor END"
)
SPARK_VERSION = "3.5.0 local-warehouse"

Source: TypeAlias = ds.Dataset | pa.Table | pa.RecordBatchReader
# Runs `SELECT <expression>` with the given binds and returns its one value (for AS OF and table_changes).
Evaluate = Callable[[str, dict[str, object]], object]


@dataclass
class DuckQuery:
    """What DuckDB runs: SQL text, the Arrow sources it reads by generated name, and the parameter values."""

    sql: str
    sources: dict[str, Source] = field(default_factory=dict)
    parameters: dict[str, object] = field(default_factory=dict)


def _from_json(node: exp.Expression) -> exp.Expression:
    """`from_json(text, '<Spark DDL>')` as DuckDB's `json_transform`, which, as Spark, gives NULL for a
    missing field (`ARRAY<STRUCT<s: STRING>>` -> `[{"s": "VARCHAR"}]`)."""
    if not isinstance(node, exp.FromJson) or not isinstance(node.expression, exp.Literal):
        return node
    try:
        kind = exp.DataType.build(node.expression.name, dialect="databricks")
    except Exception as error:
        raise WarehouseError(
            "PARSE_SYNTAX_ERROR", f"Cannot parse the data type: {node.expression.name!r} ({error})"
        ) from None
    structure = json.dumps(_json_structure(kind))
    as_json = exp.cast(node.this, exp.DataType.build("JSON"))
    return exp.Anonymous(this="json_transform", expressions=[as_json, exp.Literal.string(structure)])


def _json_structure(kind: exp.DataType) -> object:
    """A DuckDB `json_transform` structure for a data type: lists and objects of DuckDB type names."""
    if kind.this == exp.DataType.Type.ARRAY:
        return [_json_structure(kind.expressions[0])]
    if kind.this == exp.DataType.Type.STRUCT:
        fields = {}
        for column in kind.expressions:
            fields[column.name] = _json_structure(column.args["kind"])
        return fields
    return kind.sql(dialect="duckdb")


class QueryRewrite:
    """Rewrites one statement's tree; `run` gives the DuckDB query."""

    def __init__(
        self,
        catalog: Catalog,
        session: SessionState,
        bound: dict[str, BoundParameter],
        evaluate: Evaluate,
        time_zone: tzinfo,
    ) -> None:
        self._catalog = catalog
        self._session = session
        self._bound = bound
        self._evaluate = evaluate
        self._time_zone = time_zone
        self._sources: dict[str, Source] = {}
        self._names = count(1)

    def run(self, tree: exp.Expr) -> DuckQuery:
        _name_columns(tree)
        tree = self._bind_markers(tree)
        tree = self._session_functions(tree)
        tree = tree.transform(_from_json)
        for hint in list(
            tree.find_all(exp.Hint)
        ):  # Databricks' join hints (RANGE_JOIN): DuckDB plans its own
            hint.pop()
        ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
        for table in list(tree.find_all(exp.Table)):
            self._replace_table(table, ctes)
        tree = tree.transform(_guard_division)
        used = {marker.name for marker in tree.find_all(exp.Placeholder)}
        values = {p.duckdb_name: p.value for p in self._bound.values() if p.duckdb_name in used}
        return DuckQuery(tree.sql(dialect="duckdb"), self._sources, values)

    # -- expressions --------------------------------------------------------------------------------------

    def _bind_markers(self, tree: exp.Expr) -> exp.Expr:
        def bind(node: exp.Expression) -> exp.Expression:
            if not isinstance(node, exp.Placeholder):
                return node
            parameter = lookup(self._bound, node.name)
            marker = exp.Placeholder(this=parameter.duckdb_name)
            if parameter.duckdb_type is None:
                return marker
            return exp.cast(marker, exp.DataType.build(parameter.duckdb_type, dialect="duckdb"))

        return tree.transform(bind)

    def _session_functions(self, tree: exp.Expr) -> exp.Expr:
        def replace(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.CurrentCatalog):
                return exp.Literal.string(self._session.catalog)
            if isinstance(node, exp.CurrentSchema | exp.CurrentDatabase):
                return exp.Literal.string(self._session.schema)
            if isinstance(node, exp.CurrentTimezone):
                return exp.Literal.string(str(self._time_zone))
            if isinstance(node, exp.Anonymous) and node.name.lower() == "version" and not node.expressions:
                return exp.Literal.string(SPARK_VERSION)
            return node

        return tree.transform(replace)

    # -- tables -------------------------------------------------------------------------------------------

    def _replace_table(self, table: exp.Table, ctes: set[str]) -> None:
        written = table.this
        if isinstance(written, exp.Anonymous):
            function = written.name.lower()
            if function == "table_changes":
                self._register(table, self._changes(written.expressions), "table_changes")
            elif function == "identifier" and len(written.expressions) == 1:
                parts = _name_parts(self._text(written.expressions[0]))
                self._register(table, self._read(parts, table.args.get("version")), parts[-1])
            return
        if not isinstance(written, exp.Identifier):
            return
        parts = [part.name for part in table.parts]
        if len(parts) == 1 and parts[0].lower() in ctes:
            return
        self._register(table, self._read(parts, table.args.get("version")), table.name)

    def _read(self, parts: list[str], version: exp.Version | None) -> Source:
        if len(parts) in (2, 3) and parts[-2].lower() == "information_schema":
            catalog = parts[0] if len(parts) == 3 else self._session.catalog
            return self._catalog.information_schema(catalog, parts[-1])
        name = self._catalog.resolve(parts, self._session.catalog, self._session.schema)
        if version is None:
            return _string_views(self._catalog.dataset(name))
        if version.name.upper() == "VERSION":
            return _string_views(self._catalog.dataset(name, version=self._version(version.expression)))
        return _string_views(self._catalog.dataset(name, timestamp=self._instant(version.expression)))

    def _changes(self, arguments: list[exp.Expression]) -> pa.RecordBatchReader:
        if not 2 <= len(arguments) <= 3:
            raise WarehouseError(
                "WRONG_NUM_ARGS.WITHOUT_SUGGESTION",
                f"The `table_changes` requires 2 or 3 parameters but the actual number is {len(arguments)}.",
                "42605",
            )
        parts = _name_parts(self._text(arguments[0]))
        name = self._catalog.resolve(parts, self._session.catalog, self._session.schema)
        start = self._version_or_instant(arguments[1])
        end = self._version_or_instant(arguments[2]) if len(arguments) == 3 else None
        return self._catalog.changes(name, start, end)

    def _register(self, table: exp.Table, source: Source, alias: str) -> None:
        generated = f"__lw_source_{next(self._names)}"
        self._sources[generated] = source
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        table.set("this", exp.to_identifier(generated))
        for part in ("db", "catalog", "version"):
            table.set(part, None)

    # -- constant arguments -------------------------------------------------------------------------------

    def _version(self, expression: exp.Expression) -> int:
        value = self._constant(expression)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _expected("an integer version", expression)

    def _text(self, expression: exp.Expression) -> str:
        value = self._constant(expression)
        if isinstance(value, str):
            return value
        raise _expected("a string", expression)

    def _version_or_instant(self, expression: exp.Expression) -> int | datetime:
        value = self._constant(expression)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return self._instant(expression)

    def _instant(self, expression: exp.Expression) -> datetime:
        value = self._constant(
            exp.cast(expression.copy(), exp.DataType.build("TIMESTAMPTZ", dialect="duckdb"))
        )
        if not isinstance(value, datetime):
            raise _expected("a timestamp", expression)
        return value if value.tzinfo is not None else value.replace(tzinfo=self._time_zone)

    def _constant(self, expression: exp.Expression) -> object:
        used = {marker.name for marker in expression.find_all(exp.Placeholder)}
        values = {p.duckdb_name: p.value for p in self._bound.values() if p.duckdb_name in used}
        return self._evaluate(f"SELECT {expression.sql(dialect='duckdb')}", values)


def _string_views(dataset: ds.Dataset) -> ds.Dataset:
    """The dataset with its string columns declared `string_view`.

    delta-rs writes some files (MERGE, UPDATE) with `string_view` columns; pyarrow then cannot compare a
    pushed-down `string` filter with them ("no kernel matching input types (string, string_view)"), while
    a `string_view` schema filters both kinds of file.
    """
    if not isinstance(dataset, ds.FileSystemDataset):
        return dataset
    text = (pa.types.is_string, pa.types.is_large_string)
    if not any(is_text(field.type) for field in dataset.schema for is_text in text):
        return dataset
    fields = [
        field.with_type(pa.string_view()) if any(is_text(field.type) for is_text in text) else field
        for field in dataset.schema
    ]
    fragments = list(dataset.get_fragments())
    return ds.FileSystemDataset(fragments, pa.schema(fields), dataset.format, dataset.filesystem)


def _expected(what: str, expression: exp.Expression) -> WarehouseError:
    return WarehouseError(
        "INVALID_SQL_SYNTAX", f"Expected {what} here, got `{expression.sql(dialect='databricks')}`.", "42000"
    )


def _name_parts(name: str) -> list[str]:
    table = exp.to_table(name, dialect="databricks")
    return [part.name for part in table.parts]


def _name_columns(tree: exp.Expr) -> None:
    """Unnamed result columns get the names Databricks gives them (`count(1)`, `(a + 1)`), not DuckDB's."""
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    for expression in list(select.expressions):
        if not isinstance(expression, exp.Alias | exp.Column | exp.Star):
            expression.replace(exp.alias_(expression.copy(), _spark_name(expression), quoted=True))


def _spark_name(expression: exp.Expression) -> str:
    if isinstance(expression, exp.Literal):
        return expression.name
    if isinstance(expression, exp.Func) and not any(expression.args.values()):  # current_date() and kin
        return f"{expression.sql(dialect='databricks').lower().removesuffix('()')}()"
    text = expression.sql(dialect="databricks", normalize_functions="lower")
    text = re.sub(rf":{POSITIONAL_PREFIX}\d+", "?", text).replace("count(*)", "count(1)")
    return f"({text})" if isinstance(expression, exp.Binary) else text


def _guard_division(node: exp.Expression) -> exp.Expression:
    """Databricks (ANSI mode) fails on division by zero where DuckDB answers infinity."""
    if isinstance(node, exp.Div) and not node.args.get("safe"):
        node.set("expression", exp.Anonymous(this=NONZERO_MACRO, expressions=[node.expression]))
    return node

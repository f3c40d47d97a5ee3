"""Native parameters: the connector's typed strings become typed DuckDB values, bound, never pasted into SQL.

Each marker is rewritten as `CAST($pN AS <type>)`, so a value keeps its Databricks type whatever DuckDB would
infer: a `TIMESTAMP` parameter is an instant (`TIMESTAMPTZ`), a `TIMESTAMP_NTZ` one wall-clock time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation

import sqlglot
from sqlglot.tokens import TokenType

from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.statement import Parameter

POSITIONAL_PREFIX = "__pos_"
_DECIMAL = re.compile(r"^DECIMAL\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$", re.IGNORECASE)


@dataclass(frozen=True)
class BoundParameter:
    """One parameter as DuckDB takes it: the `$name` it is bound as, its value and the type it is cast to."""

    duckdb_name: str
    value: object
    duckdb_type: str | None  # None for VOID: an untyped NULL


def number_positional_markers(sql: str) -> str:
    """`?` markers become `:__pos_1`, `:__pos_2`, ... in text order; strings and comments stay untouched."""
    try:
        tokens = sqlglot.tokenize(sql, read="databricks")
    except sqlglot.errors.TokenError as error:
        raise WarehouseError("PARSE_SYNTAX_ERROR", f"Syntax error: {error}.", "42601") from error
    markers = [token for token in tokens if token.token_type == TokenType.PLACEHOLDER and token.text == "?"]
    for number, token in reversed(list(enumerate(markers, start=1))):
        sql = f"{sql[: token.start]}:{POSITIONAL_PREFIX}{number}{sql[token.end + 1 :]}"
    return sql


def bind_parameters(parameters: Sequence[Parameter], time_zone: tzinfo) -> dict[str, BoundParameter]:
    """Parameters by the marker name they answer: their own name, or `__pos_<n>` for the n-th `?`."""
    positional = sorted((p for p in parameters if p.name is None), key=lambda p: p.ordinal)
    bound: dict[str, BoundParameter] = {}
    for number, parameter in enumerate(positional, start=1):
        bound[f"{POSITIONAL_PREFIX}{number}"] = _bind(parameter, f"p{number}", time_zone)
    for number, parameter in enumerate((p for p in parameters if p.name is not None), start=1):
        assert parameter.name is not None
        bound[parameter.name] = _bind(parameter, f"n{number}", time_zone)
    return bound


def lookup(bound: dict[str, BoundParameter], marker: str) -> BoundParameter:
    """The parameter a marker names (names match case-insensitively, as in Databricks)."""
    if marker in bound:
        return bound[marker]
    for name, parameter in bound.items():
        if name.lower() == marker.lower():
            return parameter
    shown = f"?#{marker.removeprefix(POSITIONAL_PREFIX)}" if marker.startswith(POSITIONAL_PREFIX) else marker
    raise WarehouseError(
        "UNBOUND_SQL_PARAMETER",
        f"Found the unbound parameter: {shown}. Please, fix `args` and provide a mapping of the parameter to "
        "either a SQL literal or collection constructor functions such as `map()`, `array()`, `struct()`.",
        "42P02",
    )


def _bind(parameter: Parameter, duckdb_name: str, time_zone: tzinfo) -> BoundParameter:
    kind = parameter.type.strip().upper()
    if kind in ("VOID", "NULL"):
        return BoundParameter(duckdb_name, None, None)
    duckdb_type, convert = _conversion(kind, time_zone)
    if parameter.value is None:
        return BoundParameter(duckdb_name, None, duckdb_type)
    try:
        value = convert(parameter.value)
    except (ValueError, InvalidOperation) as error:
        raise WarehouseError(
            "CAST_INVALID_INPUT",
            f'The value \'{parameter.value}\' of the type "STRING" cannot be cast to "{kind}" because it is '
            "malformed. Correct the value as per the syntax, or change its target type.",
            "22018",
        ) from error
    return BoundParameter(duckdb_name, value, duckdb_type)


def _conversion(kind: str, time_zone: tzinfo) -> tuple[str, Callable[[str], object]]:
    simple: dict[str, tuple[str, Callable[[str], object]]] = {
        "TINYINT": ("TINYINT", int),
        "BYTE": ("TINYINT", int),
        "SMALLINT": ("SMALLINT", int),
        "SHORT": ("SMALLINT", int),
        "INT": ("INTEGER", int),
        "INTEGER": ("INTEGER", int),
        "BIGINT": ("BIGINT", int),
        "LONG": ("BIGINT", int),
        "FLOAT": ("FLOAT", float),
        "REAL": ("FLOAT", float),
        "DOUBLE": ("DOUBLE", float),
        "BOOLEAN": ("BOOLEAN", _boolean),
        "STRING": ("VARCHAR", str),
        "DATE": ("DATE", date.fromisoformat),
        "TIMESTAMP": ("TIMESTAMPTZ", lambda text: _instant(text, time_zone)),
        "TIMESTAMP_NTZ": ("TIMESTAMP", lambda text: datetime.fromisoformat(text).replace(tzinfo=None)),
        "BINARY": ("BLOB", lambda text: text.encode()),
    }
    if kind in simple:
        return simple[kind]
    decimal = _DECIMAL.match(kind)
    if decimal:
        precision, scale = int(decimal.group(1) or 10), int(decimal.group(2) or 0)
        return f"DECIMAL({precision},{scale})", Decimal
    raise WarehouseError(
        "UNSUPPORTED_FEATURE.PARAMETER_TYPE",
        f"The local warehouse cannot bind a parameter of type {kind}.",
        "0A000",
    )


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(text)
    return lowered in ("true", "1")


def _instant(text: str, time_zone: tzinfo) -> datetime:
    """A `TIMESTAMP` value; without an offset it is wall time in the session's time zone, as in Databricks."""
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=time_zone)

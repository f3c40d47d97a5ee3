"""What goes into Databricks SQL text: quoted identifiers and native (bound) parameter values.

Names are the only thing ever pasted into a statement, and always through `quote_identifier`: in backticks,
a backtick inside doubled, so that any name Unity Catalog allows (Unicode, spaces, dots, keywords, quotes)
reads as that one name and cannot change a statement's meaning. Names are quoted, not restricted: only what
Databricks itself refuses is refused. Values are never pasted: they travel as the connector's typed
parameters next to `:name` markers, whose names are ours and stay plain.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import re
from collections.abc import Mapping

from databricks.sql.parameters.native import (
    DbsqlParameterBase,
    TimestampNTZParameter,
    TimestampParameter,
    dbsql_parameter_from_primitive,
)

_MARKER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a `:name` parameter marker
_MAX_IDENTIFIER_LENGTH = 255  # Unity Catalog's limit for catalog, schema, table and column names

ParameterValue = (
    str | int | float | bool | decimal.Decimal | datetime.date | datetime.datetime | DbsqlParameterBase | None
)


class InvalidIdentifierError(ValueError):
    """A name that cannot be a Unity Catalog identifier here; it never reaches the warehouse."""


def quote_identifier(name: str) -> str:
    """`name` as a Databricks delimited identifier: in backticks, each backtick inside doubled
    (`` we`ird `` -> `` `we``ird` ``). Any character is kept as it is, so the statement reads the column the
    source spells that way.

    Raises `InvalidIdentifierError` only for what no Unity Catalog name can be: not a string, empty, longer
    than 255 characters, holding a NUL character (which ends text in the layers under the connector), or
    not encodable as UTF-8 (a lone surrogate).
    """
    problem = _identifier_problem(name)
    if problem is not None:
        raise InvalidIdentifierError(f"{name!r} cannot be a Unity Catalog name: {problem}")
    return "`" + name.replace("`", "``") + "`"


def _identifier_problem(name: object) -> str | None:
    if not isinstance(name, str):
        return "it is not text"
    if not name:
        return "it is empty"
    if len(name) > _MAX_IDENTIFIER_LENGTH:
        return f"it is {len(name)} characters long, and names are at most {_MAX_IDENTIFIER_LENGTH}"
    if "\x00" in name:
        return "it holds a NUL character"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid Unicode text (a lone surrogate)"
    return None


def quote_table(catalog: str, schema: str, table: str) -> str:
    """A three-part table name, each part quoted: `` `main`.`billing`.`usage_events` ``."""
    return ".".join(quote_identifier(part) for part in (catalog, schema, table))


def native_parameters(values: Mapping[str, ParameterValue]) -> list[DbsqlParameterBase]:
    """The connector's typed, named parameters for `:name` markers.

    The connector's own inference binds every `datetime` as TIMESTAMP (an instant read in the session time
    zone); here a naive `datetime` is wall-clock time and binds as TIMESTAMP_NTZ, an aware one as TIMESTAMP.
    Pass a `databricks.sql.parameters` object to choose the type yourself.
    """
    parameters: list[DbsqlParameterBase] = []
    for name, value in values.items():
        if not _MARKER.fullmatch(name):
            raise InvalidIdentifierError(f"parameter name {name!r} is not a valid marker name (:{name})")
        if isinstance(value, DbsqlParameterBase):
            named = copy.copy(value)
            named.name = name
            parameters.append(named)
        elif isinstance(value, datetime.datetime) and value.tzinfo is None:
            parameters.append(TimestampNTZParameter(value=value, name=name))
        elif isinstance(value, datetime.datetime):
            parameters.append(TimestampParameter(value=value, name=name))
        else:
            parameters.append(dbsql_parameter_from_primitive(value=value, name=name))
    return parameters

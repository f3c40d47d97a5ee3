"""What goes into Databricks SQL text: quoted, validated identifiers and native (bound) parameter values.

Names are the only thing ever pasted into a statement, and only after `quote_identifier` has checked them;
values never are: they travel as the connector's typed parameters next to `:name` markers.
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

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_IDENTIFIER_LENGTH = 255  # Unity Catalog's limit for catalog, schema, table and column names

ParameterValue = (
    str | int | float | bool | decimal.Decimal | datetime.date | datetime.datetime | DbsqlParameterBase | None
)


class InvalidIdentifierError(ValueError):
    """A name that cannot be a Unity Catalog identifier here; it never reaches the warehouse."""


def quote_identifier(name: str) -> str:
    """`name` in backticks, after checking it is a plain identifier (letters, digits, `_`; no leading digit).

    Anything else (spaces, dots, backticks, quotes, semicolons) is refused rather than escaped, so that no
    configured or discovered name can change a statement's meaning.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name) or len(name) > _MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifierError(
            f"{name!r} is not a valid identifier: use letters, digits and '_' only, not starting with a "
            f"digit, at most {_MAX_IDENTIFIER_LENGTH} characters"
        )
    return f"`{name}`"


def quote_table(catalog: str, schema: str, table: str) -> str:
    """A three-part table name, each part checked and quoted: `` `main`.`billing`.`usage_events` ``."""
    return ".".join(quote_identifier(part) for part in (catalog, schema, table))


def native_parameters(values: Mapping[str, ParameterValue]) -> list[DbsqlParameterBase]:
    """The connector's typed, named parameters for `:name` markers.

    The connector's own inference binds every `datetime` as TIMESTAMP (an instant read in the session time
    zone); here a naive `datetime` is wall-clock time and binds as TIMESTAMP_NTZ, an aware one as TIMESTAMP.
    Pass a `databricks.sql.parameters` object to choose the type yourself.
    """
    parameters: list[DbsqlParameterBase] = []
    for name, value in values.items():
        if not _IDENTIFIER.fullmatch(name):
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

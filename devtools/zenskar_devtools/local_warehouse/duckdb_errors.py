"""DuckDB's failures reported as Databricks reports the same mistake: error class, message and SQLSTATE.

Matching is on the message text, because an error raised while batches stream arrives wrapped by Arrow and
only its text survives; DuckDB starts every message with its kind (`Binder Error: ...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from zenskar_devtools.local_warehouse.errors import WarehouseError, parse_error, table_not_found

_TYPE_NAMES = {"INT8": "TINYINT", "INT16": "SMALLINT", "INT32": "INT", "INT64": "BIGINT", "VARCHAR": "STRING"}


def cancelled() -> WarehouseError:
    return WarehouseError("OPERATION_CANCELED", "The statement was cancelled.", "HY008")


def from_duckdb(message: str) -> WarehouseError:
    """The Databricks error for a DuckDB error message (first line is enough; the rest is a caret display)."""
    for pattern, build in _RULES:
        match = re.search(pattern, message, re.IGNORECASE | re.DOTALL)
        if match:
            return build(match)
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    return WarehouseError("INTERNAL_ERROR", f"The local warehouse failed: {first_line}", "XX000")


def _syntax(match: re.Match[str]) -> WarehouseError:
    near = match.group(1)
    return parse_error(f"at or near '{near}'" if near else "at or near end of input")


def _unresolved_column(match: re.Match[str]) -> WarehouseError:
    name, candidates = match.group(1), re.findall(r'"([^"]+)"', match.group(2) or "")
    message = f"A column, variable, or function parameter with name `{name}` cannot be resolved."
    if not candidates:
        return WarehouseError("UNRESOLVED_COLUMN.WITHOUT_SUGGESTION", message, "42703")
    suggestions = ", ".join(f"`{c.split('.')[-1]}`" for c in candidates[:5])
    return WarehouseError(
        "UNRESOLVED_COLUMN.WITH_SUGGESTION",
        f"{message} Did you mean one of the following? [{suggestions}].",
        "42703",
    )


def _unresolved_routine(match: re.Match[str]) -> WarehouseError:
    return WarehouseError(
        "UNRESOLVED_ROUTINE",
        f"Cannot resolve routine `{match.group(1)}` on search path [`system`.`builtin`, `system`.`session`].",
        "42883",
    )


def _datatype_mismatch(match: re.Match[str]) -> WarehouseError:
    return WarehouseError(
        "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE",
        f"Cannot resolve the expression due to data type mismatch: {_first_line(match.group(0))}",
        "42K09",
    )


def _cast_invalid_input(match: re.Match[str]) -> WarehouseError:
    value = re.search(r"Could not convert string '(.*?)' to (\w+)", match.group(0))
    if value:
        target = _TYPE_NAMES.get(value.group(2).upper(), value.group(2).upper())
        detail = f'The value \'{value.group(1)}\' of the type "STRING" cannot be cast to "{target}"'
    else:
        detail = f"The value cannot be cast ({_first_line(match.group(0))})"
    return WarehouseError(
        "CAST_INVALID_INPUT",
        f"{detail} because it is malformed. Correct the value as per the syntax, or change its target type. "
        "Use `try_cast` to tolerate malformed input and return NULL instead.",
        "22018",
    )


def _divide_by_zero(match: re.Match[str]) -> WarehouseError:
    return WarehouseError(
        "DIVIDE_BY_ZERO",
        "Division by zero. Use `try_divide` to tolerate divisor being 0 and return NULL instead.",
        "22012",
    )


def _overflow(match: re.Match[str]) -> WarehouseError:
    return WarehouseError("ARITHMETIC_OVERFLOW", _first_line(match.group(0)), "22003")


def _missing_aggregation(match: re.Match[str]) -> WarehouseError:
    return WarehouseError(
        "MISSING_AGGREGATION",
        f"The non-aggregating expression `{match.group(1)}` is based on columns which are not participating "
        "in the GROUP BY clause.",
        "42803",
    )


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0]


_UNRESOLVED_COLUMN = (
    r"Referenced column \"(.+?)\" (?:was )?not found[^\n]*(?:\s*Candidate bindings: ([^\n]*))?"
)
_Build = Callable[[re.Match[str]], WarehouseError]
_RULES: list[tuple[str, _Build]] = [
    (r"INTERRUPT", lambda _: cancelled()),
    (r"Parser Error: syntax error at or near \"(.*?)\"", _syntax),
    (r"Parser Error: syntax error at (end of input)", lambda _: parse_error("at or near end of input")),
    (r"Parser Error: .*", lambda m: parse_error(_first_line(m.group(0)).removeprefix("Parser Error: "))),
    (r"DIVIDE_BY_ZERO|Division by zero", _divide_by_zero),
    (_UNRESOLVED_COLUMN, _unresolved_column),
    (r"Referenced table \"(.+?)\" not found[^\n]*(?:\s*Candidate tables: ([^\n]*))?", _unresolved_column),
    (r"does not have a column named \"(.+?)\"()", _unresolved_column),
    (r"Table with name (\S+) does not exist", lambda m: table_not_found(m.group(1))),
    (r"(?:Scalar|Table|Aggregate) Function with name \"?(\w+)\"? does not exist", _unresolved_routine),
    (r"column \"(.+?)\" must appear in the GROUP BY clause", _missing_aggregation),
    (r"Conversion Error: .*", _cast_invalid_input),
    (
        r"Binder Error: (?:No function matches|Could not choose a best candidate|Cannot (?:compare|mix)).*",
        _datatype_mismatch,
    ),
    (r"Out of Range Error: .*", _overflow),
    (
        r"Permission Error: .*",
        lambda m: WarehouseError("INSUFFICIENT_PERMISSIONS", _first_line(m.group(0)), "42501"),
    ),
    (
        r"(?:Binder|Catalog|Invalid Input) Error: .*",
        lambda m: WarehouseError("INVALID_QUERY", _first_line(m.group(0)), "42000"),
    ),
]

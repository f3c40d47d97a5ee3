"""The data types of a usage event's fields, as Zenskar names them, and the checks every posted event passes.

An accepted event becomes a `Row`: its customer id and timestamp as received and its data as JSON text that
writes every value back exactly as it came (see `ENCODERS`), which is what `/_local/events` returns.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from json.encoder import encode_basestring
from typing import Any, NamedTuple

EVENT_TYPES = ("Int64", "Float64", "Decimal", "Bool", "Date32", "DateTime64", "String", "UUID")
DECIMAL_DIGITS = 38
EVENT_KEYS = frozenset({"customer_id", "timestamp", "data"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL_BOUND = 10**DECIMAL_DIGITS
_TOO_MANY_DIGITS = f"more than {DECIMAL_DIGITS} significant digits (Decimal)"
_HEX_DIGITS = "0123456789abcdefABCDEF"

# A check answers None for a good value and a message for a bad one; null never reaches it.
Check = Callable[[Any], str | None]


class SchemaError(ValueError):
    """A usage event's schema that names a type Zenskar does not have."""


class Row(NamedTuple):
    customer_id: str
    timestamp: str
    data: str  # JSON text


@dataclass(frozen=True)
class FieldError:
    index: int
    field: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "message": self.message}


def _int64(value: Any) -> str | None:
    if type(value) is not int:
        return "expected an integer (Int64)"
    if not _INT64_MIN <= value <= _INT64_MAX:
        return "out of the signed 64-bit range (Int64)"
    return None


def _float64(value: Any) -> str | None:
    if type(value) is not int and type(value) is not Decimal:
        return "expected a number (Float64)"
    try:
        finite = math.isfinite(float(value))
    except OverflowError:
        finite = False
    return None if finite else "out of the 64-bit floating-point range (Float64)"


def decimal_digits(value: Decimal) -> int:
    """Significant digits, counting the integer part's zeros but not the fraction's trailing ones:
    12345.678900 has 9, 1E+40 has 41."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked by the caller
    kept = len(digits)
    while kept and digits[kept - 1] == 0:
        kept -= 1
        exponent += 1
    return kept + exponent if exponent > 0 else kept


def _decimal(value: Any) -> str | None:
    if type(value) is str:
        # Decimal() alone would also take " 1", "1_000" and other scripts' digits; a decimal is plain ASCII.
        if not value.isascii() or "_" in value or value != value.strip():
            return "not a decimal number (Decimal)"
        try:
            number = Decimal(value)
        except InvalidOperation:
            return "not a decimal number (Decimal)"
        if not number.is_finite():
            return "not a finite decimal number (Decimal)"
        text = value
    elif type(value) is Decimal:
        number, text = value, str(value)
    elif type(value) is int:
        return None if -_DECIMAL_BOUND < value < _DECIMAL_BOUND else _TOO_MANY_DIGITS
    else:
        return "expected a number or a string holding one (Decimal)"
    # Counting digits is the slow part; a number written without an exponent has fewer than characters.
    if (len(text) > DECIMAL_DIGITS or "E" in text or "e" in text) and decimal_digits(number) > DECIMAL_DIGITS:
        return _TOO_MANY_DIGITS
    return None


def _bool(value: Any) -> str | None:
    return None if type(value) is bool else "expected true or false (Bool)"


def _date32(value: Any) -> str | None:
    # date.fromisoformat also reads 2024-W01-1 and 20240101; Zenskar's dates are YYYY-MM-DD.
    if type(value) is not str or len(value) != 10 or value[4] != "-" or value[7] != "-":
        return "expected a date as YYYY-MM-DD (Date32)"
    try:
        date.fromisoformat(value)
    except ValueError:
        return "not a valid date (Date32)"
    return None


def zoned_datetime_error(value: Any, type_name: str) -> str | None:
    """Why `value` is not an ISO 8601 date-time with a zone (Z or an offset), or None when it is one."""
    if type(value) is not str:
        return f"expected an ISO 8601 date-time string ({type_name})"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"not an ISO 8601 date-time ({type_name})"
    if parsed.tzinfo is None:
        return f"no time zone: add Z or an offset such as +00:00 ({type_name})"
    return None


def _datetime64(value: Any) -> str | None:
    return zoned_datetime_error(value, "DateTime64")


def _string(value: Any) -> str | None:
    return None if type(value) is str else "expected a string (String)"


def _uuid(value: Any) -> str | None:
    if type(value) is not str:
        return "expected a UUID string (UUID)"
    # The usual 8-4-4-4-12 form without building a uuid.UUID, which costs ten times as much; any other form
    # is left to uuid.UUID, so that what passes is exactly what it reads.
    if len(value) == 36 and value[8] == value[13] == value[18] == value[23] == "-":
        digits = value.replace("-", "")
        if len(digits) == 32 and not digits.strip(_HEX_DIGITS):
            return None
    try:
        uuid.UUID(value)
    except ValueError:
        return "not a UUID (UUID)"
    return None


CHECKS: dict[str, Check] = {
    "Int64": _int64,
    "Float64": _float64,
    "Decimal": _decimal,
    "Bool": _bool,
    "Date32": _date32,
    "DateTime64": _datetime64,
    "String": _string,
    "UUID": _uuid,
}
assert tuple(CHECKS) == EVENT_TYPES


def check_schema(schema: Any) -> dict[str, str]:
    """A usage event's schema ({field: type}) as sent to `PUT /_local/usage-events/<slug>`, checked."""
    if not isinstance(schema, Mapping) or not schema:
        raise SchemaError("a schema is a non-empty JSON object of field names to types")
    checked: dict[str, str] = {}
    for name, type_name in schema.items():
        if not isinstance(name, str) or not name:
            raise SchemaError(f"field name {name!r} is not a non-empty string")
        if type_name not in CHECKS:
            raise SchemaError(
                f"field {name!r}: unknown type {type_name!r}; the types are {', '.join(EVENT_TYPES)}"
            )
        checked[name] = type_name
    return checked


# How each type's (checked, non-null) values are written back: as JSON text that reads back as what was
# received. The json module can write a Decimal only through float, which would lose its digits.
Encode = Callable[[Any], str]


def _number_text(value: Any) -> str:
    if type(value) is int:
        return str(value)
    text = str(value)
    # str() writes a Decimal as it was sent, except that a small one sent as 0.0000001 comes out as 1E-7
    # (only a number sent in exponent notation, such as 1e5, keeps one: as 1E+5).
    return format(value, "f") if "E-" in text else text


def _decimal_text(value: Any) -> str:
    return encode_basestring(value) if type(value) is str else _number_text(value)


def _bool_text(value: Any) -> str:
    return "true" if value else "false"


ENCODERS: dict[str, Encode] = {
    "Int64": str,
    "Float64": _number_text,
    "Decimal": _decimal_text,
    "Bool": _bool_text,
    "Date32": encode_basestring,
    "DateTime64": encode_basestring,
    "String": encode_basestring,
    "UUID": encode_basestring,
}


class EventSchema:
    """One usage event's schema, ready to check posted events against."""

    def __init__(self, slug: str, fields: Mapping[str, str]) -> None:
        self.slug = slug
        self.fields = dict(fields)
        # Per field: its check, its encoder and its JSON key with the colon, looked up once per value.
        self._fields = {
            name: (CHECKS[type_name], ENCODERS[type_name], encode_basestring(name) + ":")
            for name, type_name in self.fields.items()
        }

    def validate(
        self, events: list[Any], rejected_customers: frozenset[str] = frozenset()
    ) -> tuple[list[Row], list[FieldError]]:
        """The rows of the events, or every error found (then the rows are not to be stored)."""
        rows: list[Row] = []
        errors: list[FieldError] = []
        for index, event in enumerate(events):
            row = self._row(index, event, rejected_customers, errors)
            if row is not None:
                rows.append(row)
        return rows, errors

    def _row(
        self, index: int, event: Any, rejected_customers: frozenset[str], errors: list[FieldError]
    ) -> Row | None:
        if type(event) is not dict:
            errors.append(FieldError(index, "event", "an event is a JSON object"))
            return None
        found = len(errors)
        if not event.keys() <= EVENT_KEYS:
            for key in event.keys() - EVENT_KEYS:
                errors.append(
                    FieldError(index, key, "not a field of an event (customer_id, timestamp, data)")
                )
        customer_id: Any = event.get("customer_id")
        if type(customer_id) is not str or not customer_id:
            errors.append(FieldError(index, "customer_id", "required: a non-empty string"))
        elif customer_id in rejected_customers:
            errors.append(FieldError(index, "customer_id", "rejected by the local API's reject_customer_ids"))
        timestamp: Any = event.get("timestamp")
        problem = "required" if timestamp is None else zoned_datetime_error(timestamp, "timestamp")
        if problem is not None:
            errors.append(FieldError(index, "timestamp", problem))
        data = event.get("data", {})
        if type(data) is not dict:
            errors.append(FieldError(index, "data", "expected a JSON object of the usage event's fields"))
            return None
        parts = []
        for name, value in data.items():
            field = self._fields.get(name)
            if field is None:
                errors.append(FieldError(index, f"data.{name}", f"not a field of usage event '{self.slug}'"))
            elif value is None:
                parts.append(field[2] + "null")
            elif (problem := field[0](value)) is None:
                parts.append(field[2] + field[1](value))
            else:
                errors.append(FieldError(index, f"data.{name}", problem))
        if len(errors) > found:
            return None
        if len(data) < len(self._fields):  # fields left out are stored as null
            parts += [key + "null" for name, (_, _, key) in self._fields.items() if name not in data]
        return Row(customer_id, timestamp, "{" + ",".join(parts) + "}")

"""How an incoming batch's columns meet a copy's columns: added columns appear, safe widenings widen the
copy, anything else is a `SchemaDriftError` before a byte is written.

Types compare as Delta types (so `string`, `large_string` and `string_view` are all STRING). Allowed
widenings, each lossless for every value:
- byte -> short -> integer -> long (any step up);
- float -> double;
- decimal(p, s) -> decimal(p', s) with p' > p (same scale: a scale change would re-spell every value).
A column the source dropped stays in the copy, NULL in new rows. Every column of a copy is nullable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from deltalake import Schema as DeltaSchema

_INTEGER_RANK = {"byte": 0, "short": 1, "integer": 2, "long": 3}


class SchemaDriftError(ValueError):
    """A source column changed to a type its copy cannot hold without losing or re-spelling values."""

    def __init__(self, table_uri: str, column: str, old: str, new: str) -> None:
        super().__init__(
            f"column {column!r} of {table_uri} changed type from {old} to {new}, which is not a safe "
            "widening; nothing was written. Reset the stream (`zenskar-pipeline reset`) to copy it afresh."
        )
        self.column = column
        self.old = old
        self.new = new


@dataclass(frozen=True)
class SchemaPlan:
    """The schema to write with, and whether the copy's schema changes on the way."""

    schema: pa.Schema  # incoming columns first (copy's types where kept), then columns only the copy has
    added: tuple[str, ...]  # columns new to the copy
    widened: tuple[str, ...]  # columns whose type the copy must widen first


def plan_schema(table_uri: str, current: pa.Schema | None, incoming: pa.Schema) -> SchemaPlan:
    """Check `incoming` against the copy's `current` schema (None: no copy yet)."""
    if current is None:
        return SchemaPlan(_nullable(incoming), tuple(incoming.names), ())
    fields: list[pa.Field] = []
    added: list[str] = []
    widened: list[str] = []
    for field in incoming:
        index = current.get_field_index(field.name)
        if index < 0:
            fields.append(field.with_nullable(True))
            added.append(field.name)
            continue
        old, new = _delta_type(current.field(index)), _delta_type(field)
        if old == new:
            fields.append(current.field(index))
        elif _widens(old, new):
            fields.append(field.with_nullable(True))
            widened.append(field.name)
        else:
            raise SchemaDriftError(table_uri, field.name, old, new)
    fields.extend(field for field in current if field.name not in incoming.names)
    return SchemaPlan(pa.schema(fields), tuple(added), tuple(widened))


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` in `schema`'s column order and types; columns it lacks as NULLs."""
    arrays = [
        batch.column(field.name).cast(field.type)
        if field.name in batch.schema.names
        else pa.nulls(batch.num_rows, field.type)
        for field in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _delta_type(field: pa.Field) -> str:
    return _bare(str(DeltaSchema.from_arrow(pa.schema([field.with_nullable(True)])).fields[0].type))


def _widens(old: str, new: str) -> bool:
    if old in _INTEGER_RANK and new in _INTEGER_RANK:
        return _INTEGER_RANK[new] > _INTEGER_RANK[old]
    if (old, new) == ("float", "double"):
        return True
    if old.startswith("decimal(") and new.startswith("decimal("):
        (old_precision, old_scale), (new_precision, new_scale) = _decimal(old), _decimal(new)
        return new_scale == old_scale and new_precision > old_precision
    return False


def _bare(delta_type: str) -> str:
    """`PrimitiveType("long")` -> `long`; other types unchanged."""
    prefix = 'PrimitiveType("'
    return delta_type[len(prefix) : -2] if delta_type.startswith(prefix) else delta_type


def _decimal(bare: str) -> tuple[int, int]:
    precision, scale = bare[len("decimal(") : -1].split(",")
    return int(precision), int(scale)


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_nullable(True) for field in schema])

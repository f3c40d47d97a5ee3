"""What one statement takes in and gives back, shared by the SQL engine and the Thrift service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass(frozen=True)
class Parameter:
    """A native parameter as the connector sends it: `:name` (name set) or `?` (ordinal only).

    `type` is the connector's type name (INT, BIGINT, STRING, DATE, TIMESTAMP, TIMESTAMP_NTZ, DECIMAL(p,s),
    BOOLEAN, DOUBLE, FLOAT, SMALLINT, TINYINT, BINARY, VOID); `value` is its string form, None for NULL.
    """

    name: str | None
    ordinal: int
    type: str
    value: str | None


@dataclass
class SessionState:
    """Per-session settings that statements read and `USE` changes."""

    catalog: str = "main"
    schema: str = "default"
    configuration: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ResultColumn:
    """A result column with its Databricks type name, e.g. `DECIMAL(18,6)`, `ARRAY<STRING>`."""

    name: str
    databricks_type: str


@dataclass
class StatementResult:
    """A result whose batches are produced lazily, so that a large SELECT is never held whole.

    `schema` is the Arrow schema every batch has (already in types the connector accepts); `columns` gives
    the Databricks type of each field, in order. `cancel` interrupts a running query; `close` frees it.
    """

    columns: list[ResultColumn]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    num_modified_rows: int | None = None
    cancel: Callable[[], None] = lambda: None
    close: Callable[[], None] = lambda: None

"""What a stream's `deliver:` block asks of its source table: columns of types Zenskar's usage events can
hold, and rows the sync mode can tell apart. Checked with the rest of the streams file, before data moves."""

from __future__ import annotations

import re
from enum import StrEnum

from zenskar_pipeline.config import Problem, ResolvedStream
from zenskar_pipeline.databricks.discovery import DiscoveredColumn, DiscoveredTable
from zenskar_pipeline.sync.modes import strategy_for
from zenskar_pipeline.sync.modes.base import EventRows


class EventType(StrEnum):
    """The field types a Zenskar usage event's schema declares."""

    INT64 = "Int64"
    FLOAT64 = "Float64"
    DECIMAL = "Decimal"
    BOOL = "Bool"
    DATE32 = "Date32"
    DATETIME64 = "DateTime64"
    STRING = "String"
    UUID = "UUID"


# Databricks type (the part before any `(` or `<`) -> the usage event type its values are sent as.
EVENT_TYPES: dict[str, EventType] = {
    **dict.fromkeys(
        ("tinyint", "byte", "smallint", "short", "int", "integer", "bigint", "long"), EventType.INT64
    ),
    **dict.fromkeys(("float", "real", "double"), EventType.FLOAT64),
    **dict.fromkeys(("decimal", "dec", "numeric"), EventType.DECIMAL),
    "boolean": EventType.BOOL,
    "date": EventType.DATE32,
    **dict.fromkeys(("timestamp", "timestamp_ltz", "timestamp_ntz"), EventType.DATETIME64),
    **dict.fromkeys(("string", "char", "varchar"), EventType.STRING),
}
CUSTOMER_TYPES = (EventType.STRING, EventType.INT64)  # a customer id is sent as text
TIMESTAMP_TYPES = (EventType.DATETIME64, EventType.DATE32)


def event_type(column: DiscoveredColumn) -> EventType | None:
    """The usage event type a column's values are sent as; None when Zenskar has none for its type."""
    base = re.split(r"[(<]", column.full_data_type.strip().lower(), maxsplit=1)[0].strip()
    return EVENT_TYPES.get(base)


def delivery_problems(stream: ResolvedStream, table: DiscoveredTable) -> list[Problem]:
    """What keeps the stream's rows from being delivered as written: columns Zenskar has no type for, a
    customer or timestamp column of the wrong kind, rows its sync mode cannot tell apart. Unknown columns
    are `source_problems`' to report."""
    spec = stream.settings.deliver
    if spec is None:
        return []
    where = f"stream {stream.name}"
    problems: list[Problem] = []
    for key, name in spec.columns.items():
        column = table.column(name)
        if column is None:
            continue
        kind = event_type(column)
        if key == "deliver.customer_id" and kind not in CUSTOMER_TYPES:
            problems.append(
                Problem(
                    where,
                    key,
                    f"{column.name!r} is {column.full_data_type}; a customer id is sent as text",
                    "choose a STRING or integer column that holds Zenskar's customer id",
                )
            )
        elif key == "deliver.timestamp" and kind not in TIMESTAMP_TYPES:
            problems.append(
                Problem(
                    where,
                    key,
                    f"{column.name!r} is {column.full_data_type}, not a time",
                    "choose the TIMESTAMP, TIMESTAMP_NTZ or DATE column of the event",
                )
            )
        elif kind is None:
            listed = ", ".join(sorted({t.value for t in EventType} - {EventType.UUID}))
            problems.append(
                Problem(
                    where,
                    key,
                    f"{column.name!r} is {column.full_data_type}, which a Zenskar usage event has no "
                    f"type for ({listed})",
                    "send a column of one of those types (cast it in a view), or leave the field out",
                )
            )
    try:
        events = events_of(stream, table)
    except ValueError:
        return problems  # a key or cursor the mode needs is missing: reported with the mode's own problems
    if events is None:
        problems.append(
            Problem(
                where,
                "deliver",
                f"sync_mode {stream.settings.sync_mode.value}"
                f"{' with change_feed' if stream.settings.change_feed else ''} without a primary key cannot "
                "tell one event from another, so a row could go out twice",
                "set primary_key (or declare one in Unity Catalog), or use sync_mode incremental_append",
            )
        )
    return problems


def events_of(stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
    """Which rows of the stream's copy are events (its sync mode decides); None when it cannot say."""
    return strategy_for(stream.settings).event_rows(stream, table)

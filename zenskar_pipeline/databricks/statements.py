"""The one statement builder: every read the sync sends to Databricks is spelled here, version-pinned reads
and change-feed reads alike, with quoted names and bound values.

The incremental range is spelled out in one function, `read_at_version` (as dlt's `_make_query`):
- every read is of one Delta version (`VERSION AS OF`), the one `latest_version` returned at the start of
  the run, so that what a run compares and what it reads agree;
- per partition window `[start, end)` (half open), the cursor's lower bound is closed:
  `cursor >= mark - lag`, so rows sharing the boundary value that arrive later are read again, and the
  writer drops those already landed; there is no upper cursor bound: the version read is the end;
- a window without a mark (nothing landed yet) reads all of its rows, and neighbouring windows without
  marks read as one range;
- a scope of more than `MAX_ALTERNATIVES` ranges is not spelled range by range: its windows and marks travel
  as one JSON value, joined to the rows by window (`_joined_read`), so that the statement's text is the same
  for 40 partitions and for 8,760;
- NULL cursors are read in the same statement only to be counted (the reader never lands them), and so are
  rows whose partition field is NULL or outside every window (`before` / `after`), so that "nothing new"
  still costs one statement.

Names are quoted by `sql_text` (any name Unity Catalog allows); values travel as native parameters.
Versions are ints written as literals: Databricks' time travel and `table_changes` take literals, not
parameter markers.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from zenskar_pipeline.config.models import TableName
from zenskar_pipeline.databricks.sql_text import ParameterValue, quote_identifier, quote_table

MAX_ALTERNATIVES = 32  # ranges spelled one by one; a larger scope is joined to its windows as one JSON value
# The change feed's own columns (Databricks `table_changes`).
CHANGE_TYPE = "_change_type"
COMMIT_VERSION = "_commit_version"
COMMIT_TIMESTAMP = "_commit_timestamp"


@dataclass(frozen=True)
class Statement:
    """SQL text and the values bound to its `:name` markers."""

    sql: str
    parameters: Mapping[str, ParameterValue] = field(default_factory=dict)


@dataclass(frozen=True)
class WindowRange:
    """One partition window of a read: `start <= field < end`, and from `cursor_from` on when given."""

    start: ParameterValue
    end: ParameterValue
    cursor_from: ParameterValue | None = None  # None: every row of the window


@dataclass(frozen=True)
class ReadRange:
    """Which rows of the table a versioned read returns (None of everything: the whole table).

    `windows` need `partition_field`; `before` also reads rows with the field before it, `after` rows at or
    after it and rows whose field is NULL (so that the reader can count what falls outside every window).
    `cursor_from` bounds an unpartitioned read. `cursor_field` is the column both bounds compare with.
    """

    partition_field: str | None = None
    windows: Sequence[WindowRange] = ()
    before: ParameterValue | None = None
    after: ParameterValue | None = None
    cursor_field: str | None = None
    cursor_from: ParameterValue | None = None
    # Databricks type names of the partition field and the cursor (e.g. TIMESTAMP, DECIMAL(18,6)), which a
    # joined read casts its windows and marks to.
    partition_type: str = "TIMESTAMP"
    cursor_type: str = "TIMESTAMP"


def latest_version(table: TableName) -> Statement:
    """The table's latest Delta version: `DESCRIBE HISTORY` lists the newest first."""
    return Statement(f"DESCRIBE HISTORY {_table(table)} LIMIT 1")


def last_altered(catalog: str, schemas: Sequence[str]) -> Statement:
    """When each table of `schemas` in `catalog` was last altered (`information_schema.tables`): a hint of
    new versions, never proof of none (Databricks documents it for changes of a table's definition)."""
    markers = ", ".join(f":s{index}" for index in range(len(schemas)))
    return Statement(
        "SELECT table_schema, table_name, last_altered "
        f"FROM {quote_identifier(catalog)}.information_schema.tables WHERE table_schema IN ({markers})",
        {f"s{index}": schema for index, schema in enumerate(schemas)},
    )


def read_at_version(
    table: TableName, version: int, columns: Sequence[str], where: ReadRange | None = None
) -> Statement:
    """`columns` of the rows `where` selects, at `version` (see the module docstring)."""
    sql = f"SELECT {_columns(columns)} FROM {_table(table)} VERSION AS OF {int(version)}"
    if where is None:
        return Statement(sql)
    parameters: dict[str, ParameterValue] = {}
    cursor = quote_identifier(where.cursor_field) if where.cursor_field else ""

    def from_mark(name: str, mark: ParameterValue | None) -> str | None:
        if mark is None or not cursor:
            return None
        parameters[name] = mark
        return f"({cursor} >= :{name} OR {cursor} IS NULL)"

    if where.partition_field is None:
        condition = from_mark("cursor_from", where.cursor_from)
        return Statement(sql if condition is None else f"{sql} WHERE {condition}", parameters)
    ranges = _merged(where.windows)
    if len(ranges) > MAX_ALTERNATIVES:
        return _joined_read(table, version, where, ranges, columns)
    field_sql = quote_identifier(where.partition_field)
    alternatives = []
    for index, window in enumerate(ranges):
        parameters[f"w{index}_start"] = window.start
        parameters[f"w{index}_end"] = window.end
        parts = [f"{field_sql} >= :w{index}_start", f"{field_sql} < :w{index}_end"]
        mark = from_mark(f"w{index}_cursor_from", window.cursor_from)
        alternatives.append("(" + " AND ".join(parts if mark is None else [*parts, mark]) + ")")
    alternatives += _outside(where, field_sql, parameters)
    if not alternatives:
        return Statement(sql)
    return Statement(f"{sql} WHERE " + " OR ".join(alternatives), parameters)


def _merged(windows: Sequence[WindowRange]) -> list[WindowRange]:
    """`windows` (contiguous, in order) with each run of neighbours without a mark as one range."""
    ranges: list[WindowRange] = []
    for window in windows:
        last = ranges[-1] if ranges else None
        if (
            last is not None
            and last.cursor_from is None
            and window.cursor_from is None
            and last.end == window.start
        ):
            ranges[-1] = replace(last, end=window.end)
        else:
            ranges.append(window)
    return ranges


def _outside(where: ReadRange, field_sql: str, parameters: dict[str, ParameterValue]) -> list[str]:
    """The conditions of the rows read only to be counted: before the first window, after the last, NULL."""
    conditions = []
    if where.before is not None:
        parameters["defined_start"] = where.before
        conditions.append(f"{field_sql} < :defined_start")
    if where.after is not None:
        parameters["defined_end"] = where.after
        conditions.append(f"{field_sql} >= :defined_end OR {field_sql} IS NULL")
    return conditions


def _joined_read(
    table: TableName, version: int, where: ReadRange, ranges: Sequence[WindowRange], columns: Sequence[str]
) -> Statement:
    """A read of many windows in a statement of constant size: the windows and their marks are one JSON
    value (`:windows`, an array of {s, e, m} as text), exploded and cast to the field's and the cursor's
    types, and joined to the rows by `s <= field < e` (a point-in-interval join, which Databricks runs as a
    range join with the hint's bin size). A row keeps its window's mark rule; rows in no window of the
    scope are read only when they are outside every window (before the first, after the last, NULL)."""
    assert where.partition_field is not None
    field_sql = f"src.{quote_identifier(where.partition_field)}"
    cursor_sql = f"src.{quote_identifier(where.cursor_field)}" if where.cursor_field else None
    table_sql = f"{_table(table)} VERSION AS OF {int(version)}"
    chosen = ", ".join(f"src.{quote_identifier(name)}" for name in columns)
    windows = json.dumps(
        [{"s": _text(r.start), "e": _text(r.end), "m": _text(r.cursor_from)} for r in ranges]
    )
    parameters: dict[str, ParameterValue] = {
        "windows": windows,
        "scope_start": ranges[0].start,
        "scope_end": ranges[-1].end,
    }
    mark = f"win.m IS NULL OR {cursor_sql} >= win.m OR {cursor_sql} IS NULL" if cursor_sql else "true"
    outside = _outside(where, field_sql, parameters)
    in_no_window = f" OR (win.s IS NULL AND ({' OR '.join(outside)}))" if outside else ""
    scope = f"({field_sql} >= :scope_start AND {field_sql} < :scope_end)"
    prefilter = " OR ".join([scope, *outside])
    p_type, c_type = _type(where.partition_type), _type(where.cursor_type)
    sql = (
        f"SELECT /*+ RANGE_JOIN(win, {_bin_seconds(ranges)}) */ {chosen} FROM {table_sql} AS src "
        f"LEFT JOIN (SELECT CAST(x.w.s AS {p_type}) AS s, CAST(x.w.e AS {p_type}) AS e, "
        f"CAST(x.w.m AS {c_type}) AS m "
        "FROM explode(from_json(:windows, 'ARRAY<STRUCT<s: STRING, e: STRING, m: STRING>>')) AS x(w)) AS win "
        f"ON {field_sql} >= win.s AND {field_sql} < win.e "
        f"WHERE ({prefilter}) AND ((win.s IS NOT NULL AND ({mark})){in_no_window})"
    )
    return Statement(sql, parameters)


def _text(value: ParameterValue | None) -> str | None:
    """A window bound or mark as the text its CAST reads (instants with their offset, exact decimals)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | int | float | str):
        return str(value)
    raise TypeError(f"not a window bound or mark: {value!r}")


def _type(name: str) -> str:
    """A Databricks type name to CAST to: letters, digits, parentheses, commas and spaces only."""
    if not name or not all(ch.isalnum() or ch in "(), _" for ch in name):
        raise ValueError(f"{name!r} is not a type name")
    return name.upper()


def _bin_seconds(ranges: Sequence[WindowRange]) -> int:
    """The range join's bin size: the first window's length in seconds (days for DATE bounds)."""
    start, end = ranges[0].start, ranges[0].end
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return max(1, int((end - start).total_seconds()))
    if isinstance(start, dt.date) and isinstance(end, dt.date):
        return max(1, (end - start).days)
    return 1


def count_at_version(
    table: TableName,
    version: int,
    partition_field: str | None = None,
    start: ParameterValue | None = None,
    end: ParameterValue | None = None,
) -> Statement:
    """`COUNT(*) AS n` of the table at `version`, within `start <= partition_field < end` when given."""
    sql = f"SELECT COUNT(*) AS n FROM {_table(table)} VERSION AS OF {int(version)}"
    if partition_field is None:
        return Statement(sql)
    quoted = quote_identifier(partition_field)
    return Statement(f"{sql} WHERE {quoted} >= :start AND {quoted} < :end", {"start": start, "end": end})


def read_changes(
    table: TableName, first: int, last: int, columns: Sequence[str], *, commit_timestamp: bool = False
) -> Statement:
    """Every change of versions `first..last` (inclusive, update pre-images too): `columns`, then the feed's
    `_change_type` and `_commit_version` (and `_commit_timestamp` when asked)."""
    extra = (CHANGE_TYPE, COMMIT_VERSION) + ((COMMIT_TIMESTAMP,) if commit_timestamp else ())
    return Statement(f"SELECT {_columns([*columns, *extra])} FROM {_changes(table, first, last)}")


def buckets_from_cursor(
    table: TableName, version: int, bucket_sql: str, cursor_field: str, mark: ParameterValue
) -> Statement:
    """Rows at `version` whose cursor is at or above `mark`, counted per bucket of the partition field."""
    return Statement(
        f"SELECT {bucket_sql} AS bucket, count(*) AS n FROM {_table(table)} VERSION AS OF {int(version)} "
        f"WHERE {quote_identifier(cursor_field)} >= :mark GROUP BY 1",
        {"mark": mark},
    )


def buckets_in_range(
    table: TableName,
    version: int,
    bucket_sql: str,
    field_sql: str,
    start: ParameterValue,
    end: ParameterValue,
) -> Statement:
    """Rows at `version` with `start <= partition field < end`, counted per bucket of the partition field."""
    return Statement(
        f"SELECT {bucket_sql} AS bucket, count(*) AS n FROM {_table(table)} VERSION AS OF {int(version)} "
        f"WHERE {field_sql} >= :start AND {field_sql} < :end GROUP BY 1",
        {"start": start, "end": end},
    )


def buckets_of_changes(table: TableName, first: int, last: int, bucket_sql: str) -> Statement:
    """Changes of versions `first..last`, pre-images too, counted per bucket of the partition field."""
    return Statement(
        f"SELECT {bucket_sql} AS bucket, count(*) AS n FROM {_changes(table, first, last)} GROUP BY 1"
    )


def bucket_expression(field_sql: str, *, wall_clock: bool, whole_hours: bool, date: bool) -> str:
    """The partition field (`field_sql`, quoted) grouped as finely as a window boundary can fall: a DATE as
    it is, TIMESTAMP_NTZ (`wall_clock`) by wall-clock hour, TIMESTAMP by UTC hour when the zone's offsets
    are whole hours, else by minute."""
    if date:
        return field_sql
    if wall_clock:
        # Databricks' date_trunc takes and returns TIMESTAMP (an NTZ argument is read in the session's UTC):
        # cast back, so that the bucket is wall-clock time again, as the calendar compares it.
        return f"CAST(date_trunc('HOUR', {field_sql}) AS TIMESTAMP_NTZ)"
    if whole_hours:
        return f"date_trunc('HOUR', {field_sql})"
    return f"date_trunc('MINUTE', {field_sql})"


def _table(table: TableName) -> str:
    return quote_table(*table.parts)


def _columns(columns: Sequence[str]) -> str:
    return ", ".join(quote_identifier(name) for name in columns)


def _changes(table: TableName, first: int, last: int) -> str:
    # The quoted name goes inside a string literal: `TableName` holds letters, digits and underscores only,
    # so no quote or backslash can end the literal early.
    quoted = _table(table)
    if "'" in quoted or "\\" in quoted:
        raise ValueError(f"{table} cannot be named inside table_changes('...')")
    return f"table_changes('{quoted}', {int(first)}, {int(last)})"

"""The one statement builder: every read the sync sends to Databricks is spelled here, version-pinned reads
and change-feed reads alike, with quoted names and bound values.

The incremental range is spelled out in one function, `read_at_version` (as dlt's `_make_query`):
- every read is of one Delta version (`VERSION AS OF`), the one `latest_version` returned at the start of
  the run, so that what a run compares and what it reads agree;
- per partition window `[start, end)` (half open), the cursor's lower bound is closed:
  `cursor >= mark - lag`, so rows sharing the boundary value that arrive later are read again, and the
  writer drops those already landed; there is no upper cursor bound: the version read is the end;
- a window without a mark (nothing landed yet) reads all of its rows;
- NULL cursors are read in the same statement only to be counted (the reader never lands them), and so are
  rows whose partition field is NULL or outside every window (`before` / `after`), so that "nothing new"
  still costs one statement.

Names are validated and quoted by `sql_text`; values travel as native parameters. Versions are ints written
as literals: Databricks' time travel and `table_changes` take literals, not parameter markers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zenskar_pipeline.config.models import TableName
from zenskar_pipeline.databricks.sql_text import ParameterValue, quote_identifier, quote_table

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


def latest_version(table: TableName) -> Statement:
    """The table's latest Delta version: `DESCRIBE HISTORY` lists the newest first."""
    return Statement(f"DESCRIBE HISTORY {_table(table)} LIMIT 1")


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
    field_sql = quote_identifier(where.partition_field)
    alternatives = []
    for index, window in enumerate(where.windows):
        parameters[f"w{index}_start"] = window.start
        parameters[f"w{index}_end"] = window.end
        parts = [f"{field_sql} >= :w{index}_start", f"{field_sql} < :w{index}_end"]
        mark = from_mark(f"w{index}_cursor_from", window.cursor_from)
        alternatives.append("(" + " AND ".join(parts if mark is None else [*parts, mark]) + ")")
    if where.before is not None:
        parameters["defined_start"] = where.before
        alternatives.append(f"{field_sql} < :defined_start")
    if where.after is not None:
        parameters["defined_end"] = where.after
        alternatives.append(f"{field_sql} >= :defined_end OR {field_sql} IS NULL")
    if not alternatives:
        return Statement(sql)
    return Statement(f"{sql} WHERE " + " OR ".join(alternatives), parameters)


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
    # The quoted name goes inside a string literal: quoted names hold no single quote (sql_text refuses it).
    return f"table_changes('{_table(table)}', {int(first)}, {int(last)})"

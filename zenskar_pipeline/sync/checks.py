"""The checks a sync mode can promise for its copy, and their evaluation after a run, as plain data (Dagster
glue in `defs/checks.py` turns them into asset checks). Each strategy says which it carries.

- `no_rows_outside_partition_windows`: rows the run read whose partition field is NULL or outside every
  window (they are not landed).
- `row_count_matches_source`: one `COUNT(*)` of the source at a version, in some windows, against the copy's
  count from its Delta log (soft-deleted rows left out where the copy keeps them).
- `primary_key_unique`: no key value held by two rows of the copy.
Every run is checked, also one that found nothing new: Dagster expects each declared check to be answered.
A check with an answer per partition (rows outside windows, a full refresh's row count) carries it in
`CheckOutcome.partitions`; the others (a key held twice, a change-feed copy's count) are properties of the
whole copy, the same answer for every partition the run covered.
A check that reads the copy (its keys) answers from its last evaluation when the copy's Delta version is the
one that evaluation read (`copy_version` in its metadata): a run that wrote nothing reads nothing, and a copy
edited by hand has a new version, so it is read again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zenskar_pipeline.config import TableName
from zenskar_pipeline.databricks import statements
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.destinations import Destination
from zenskar_pipeline.sync.calendar import PartitionCalendar, Window
from zenskar_pipeline.sync.report import PartitionReport


@dataclass(frozen=True)
class CheckSpec:
    name: str
    description: str


@dataclass(frozen=True)
class CheckOutcome:
    """A check's answer for a run; `partitions`: its answer for each partition, when it has one per
    partition (a partition missing there gets the run's answer)."""

    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    partitions: dict[str, CheckOutcome] = field(default_factory=dict)

    def for_partition(self, key: str) -> CheckOutcome:
        return self.partitions.get(key, self)


OUTSIDE_WINDOWS = CheckSpec(
    "no_rows_outside_partition_windows",
    "Source rows the run read whose partition field is NULL or outside every partition window; they are "
    "not landed, so the copy misses them until the data or partitions.start moves.",
)
ROW_COUNT = CheckSpec(
    "row_count_matches_source",
    "The copy holds as many rows as the source at the version synced, in the windows the run covered "
    "(change feed: in every window; soft-deleted rows left out).",
)
UNIQUE_KEY = CheckSpec("primary_key_unique", "No primary key value is held by two rows of the copy.")


def outside_windows(reports: Sequence[PartitionReport]) -> CheckOutcome:
    """Rows each partition's read found outside every window (counted where the read was made)."""
    skipped = {report.partition or "": report.skipped_outside_windows for report in reports}
    total = sum(skipped.values())
    return CheckOutcome(
        OUTSIDE_WINDOWS.name,
        total == 0,
        {
            "rows_outside_windows": total,
            "by_partition": {k: v for k, v in skipped.items() if v},
            "partitions": [k for k in skipped if k],
        },
        {
            key: CheckOutcome(OUTSIDE_WINDOWS.name, n == 0, {"rows_outside_windows": n})
            for key, n in skipped.items()
            if key
        },
    )


def row_count(
    session: DatabricksSession,
    source: TableName,
    version: int,
    copy_rows: int,
    *,
    partition_field: str | None = None,
    calendar: PartitionCalendar | None = None,
) -> CheckOutcome:
    """The source's rows at `version` (in every window of `calendar` when partitioned, else all of them)
    against `copy_rows`: the whole copy's count (`row_count_by_window` counts window by window)."""
    covered = calendar.all_windows() if calendar is not None else ()
    if calendar is None or partition_field is None:
        source_rows = _count(session, statements.count_at_version(source, version))
    elif not covered:
        source_rows = 0
    else:
        start, end = calendar.bound(covered[0].start), calendar.bound(covered[-1].end)
        source_rows = _count(
            session, statements.count_at_version(source, version, partition_field, start, end)
        )
    return CheckOutcome(
        ROW_COUNT.name,
        source_rows == copy_rows,
        {"source_rows": source_rows, "copy_rows": copy_rows, "source_version": version, "partitions": "all"},
    )


def row_count_by_window(
    session: DatabricksSession,
    source: TableName,
    version: int,
    copy_rows: Mapping[str | None, int],
    *,
    field_sql: str,
    bucket_sql: str,
    calendar: PartitionCalendar,
    windows: Sequence[Window],
) -> CheckOutcome:
    """The source's rows at `version` in each of `windows` (one statement, grouped by buckets of the
    partition field mapped to keys as the reader maps rows) against the copy's rows per partition."""
    counted: dict[str, int] = dict.fromkeys((w.key for w in windows), 0)
    if windows:
        start, end = calendar.bound(windows[0].start), calendar.bound(windows[-1].end)
        statement = statements.buckets_in_range(source, version, bucket_sql, field_sql, start, end)
        buckets = session.query_table(statement)
        located = calendar.locate(buckets.column("bucket"))
        for key, outside, n in zip(
            located.keys.to_pylist(),
            located.outside.to_pylist(),
            buckets.column("n").to_pylist(),
            strict=True,
        ):
            if key in counted and not outside:
                counted[key] += int(n)
    per_partition = {
        key: CheckOutcome(
            ROW_COUNT.name,
            n == copy_rows.get(key, 0),
            {"source_rows": n, "copy_rows": copy_rows.get(key, 0), "source_version": version},
        )
        for key, n in counted.items()
    }
    source_rows, landed = sum(counted.values()), sum(copy_rows.get(key, 0) for key in counted)
    return CheckOutcome(
        ROW_COUNT.name,
        all(outcome.passed for outcome in per_partition.values()),
        {
            "source_rows": source_rows,
            "copy_rows": landed,
            "source_version": version,
            "partitions": list(counted),
        },
        per_partition,
    )


def unique_key(
    destination: Destination, key: Sequence[str], earlier: CheckOutcome | None = None
) -> CheckOutcome:
    """No two rows share a key value; `earlier`: the check's last evaluation, reused if still true."""
    return keys_once(UNIQUE_KEY.name, "duplicate_keys", destination, key, None, earlier)


def keys_once(
    name: str,
    figure: str,
    destination: Destination,
    key: Sequence[str],
    only_where: str | None,
    earlier: CheckOutcome | None,
) -> CheckOutcome:
    """A check that no key value is held twice (among the rows flagged `only_where`), answered from `earlier`
    when that evaluation read the copy at its current version."""
    version = destination.version()
    if earlier is not None and version is not None and earlier.metadata.get("copy_version") == version:
        return CheckOutcome(name, earlier.passed, {**earlier.metadata, "reused": True})
    duplicates = destination.duplicate_keys(key, only_where=only_where)
    metadata = {figure: duplicates, "primary_key": list(key), "copy_version": version, "reused": False}
    return CheckOutcome(name, duplicates == 0, metadata)


def _count(session: DatabricksSession, statement: statements.Statement) -> int:
    row = session.query_one(statement)
    return int(row["n"]) if row is not None else 0

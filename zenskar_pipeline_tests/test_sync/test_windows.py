"""Partition windows in a non-UTC time zone, for TIMESTAMP (instants), TIMESTAMP_NTZ (wall-clock) and DATE."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from zenskar_pipeline.config import Granularity, SyncMode
from zenskar_pipeline.destinations import PARTITION

ZONE = "America/New_York"  # UTC-5 in January


@pytest.mark.parametrize("mode", list(SyncMode))
def test_timestamp_windows_compare_instants_in_the_zone(make_source: Any, mode: SyncMode) -> None:
    schema = pa.schema([("id", pa.int64()), ("updated_at", pa.timestamp("us", tz="UTC"))])
    source = make_source(schema, mode, primary_key=("id",), partition_field="updated_at", timezone=ZONE)
    source.append(
        [
            {"id": 1, "updated_at": dt.datetime(2026, 1, 2, 4, 59, tzinfo=dt.UTC)},  # Jan 1 23:59 local
            {"id": 2, "updated_at": dt.datetime(2026, 1, 2, 5, 0, tzinfo=dt.UTC)},  # Jan 2 00:00 local
        ]
    )
    reports = source.sync("2026-01-01", "2026-01-02")
    assert [(r.partition, r.rows_written) for r in reports] == [("2026-01-01", 1), ("2026-01-02", 1)]
    assert source.landed("id", PARTITION) == [(1, "2026-01-01"), (2, "2026-01-02")]


def test_timestamp_ntz_windows_compare_wall_clock(make_source: Any) -> None:
    schema = pa.schema([("id", pa.int64()), ("updated_at", pa.timestamp("us"))])
    source = make_source(
        schema, SyncMode.INCREMENTAL_APPEND, primary_key=("id",), partition_field="updated_at", timezone=ZONE
    )
    source.append(
        [
            {"id": 1, "updated_at": dt.datetime(2026, 1, 1, 23, 59)},
            {"id": 2, "updated_at": dt.datetime(2026, 1, 2, 0, 0)},
        ]
    )
    reports = source.sync("2026-01-01", "2026-01-02")
    assert [(r.partition, r.rows_written) for r in reports] == [("2026-01-01", 1), ("2026-01-02", 1)]
    assert source.landed("id", PARTITION) == [(1, "2026-01-01"), (2, "2026-01-02")]


def test_date_windows_weekly_in_a_zone(make_source: Any) -> None:
    schema = pa.schema(
        [("id", pa.int64()), ("day", pa.date32()), ("updated_at", pa.timestamp("us", tz="UTC"))]
    )
    source = make_source(
        schema,
        SyncMode.INCREMENTAL_APPEND_DEDUPED,
        primary_key=("id",),
        partition_field="day",
        granularity=Granularity.WEEKLY,
        timezone=ZONE,
        start=dt.datetime(2026, 1, 4),  # a Sunday
    )
    stamp = dt.datetime(2026, 1, 20, tzinfo=dt.UTC)
    source.append(
        [
            {"id": 1, "day": dt.date(2026, 1, 10), "updated_at": stamp},  # Saturday: week of Jan 4
            {"id": 2, "day": dt.date(2026, 1, 11), "updated_at": stamp},  # Sunday: week of Jan 11
        ]
    )
    reports = source.sync("2026-01-04", "2026-01-11")
    assert [(r.partition, r.rows_written) for r in reports] == [("2026-01-04", 1), ("2026-01-11", 1)]
    assert source.landed("id", PARTITION) == [(1, "2026-01-04"), (2, "2026-01-11")]


def test_keys_must_be_a_contiguous_range_of_the_definition(make_source: Any) -> None:
    schema = pa.schema([("id", pa.int64()), ("updated_at", pa.timestamp("us", tz="UTC"))])
    source = make_source(schema, SyncMode.INCREMENTAL_APPEND, partition_field="updated_at")
    with pytest.raises(ValueError, match="contiguous"):
        source.sync("2026-01-01", "2026-01-03")
    with pytest.raises(ValueError, match="not a partition"):
        source.sync("2025-12-31")


def test_hourly_timestamp_windows_across_fall_back_land_each_pass_in_its_own_partition(
    make_source: Any,
) -> None:
    """New York repeats 01:00-02:00 on 2026-11-01; Dagster keys the second pass `2026-11-01-01:00-0500`."""
    schema = pa.schema([("id", pa.int64()), ("updated_at", pa.timestamp("us", tz="UTC"))])
    source = make_source(
        schema,
        SyncMode.INCREMENTAL_APPEND_DEDUPED,
        primary_key=("id",),
        partition_field="updated_at",
        granularity=Granularity.HOURLY,
        timezone=ZONE,
        start=dt.datetime(2026, 11, 1),
    )
    source.append(
        [
            {"id": 1, "updated_at": dt.datetime(2026, 11, 1, 5, 30, tzinfo=dt.UTC)},  # 01:30 EDT
            {"id": 2, "updated_at": dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC)},  # 01:30 EST
            {"id": 3, "updated_at": dt.datetime(2026, 11, 1, 7, 0, tzinfo=dt.UTC)},  # 02:00 EST
        ]
    )
    keys = ["2026-11-01-01:00", "2026-11-01-01:00-0500", "2026-11-01-02:00"]
    reports = source.sync(*keys)
    assert [(r.partition, r.rows_written) for r in reports] == [(key, 1) for key in keys]
    assert source.landed("id", PARTITION) == list(zip([1, 2, 3], keys, strict=True))


def test_hourly_wall_clock_in_a_skipped_hour_lands_in_the_hour_that_spans_the_gap(make_source: Any) -> None:
    """New York skips 02:00-03:00 on 2026-03-08: `2026-03-08-01:00` spans wall-clock [01:00, 03:00)."""
    schema = pa.schema([("id", pa.int64()), ("updated_at", pa.timestamp("us"))])
    source = make_source(
        schema,
        SyncMode.INCREMENTAL_APPEND,
        primary_key=("id",),
        partition_field="updated_at",
        granularity=Granularity.HOURLY,
        timezone=ZONE,
        start=dt.datetime(2026, 3, 8),
    )
    source.append(
        [
            {"id": 1, "updated_at": dt.datetime(2026, 3, 8, 1, 15)},
            {"id": 2, "updated_at": dt.datetime(2026, 3, 8, 2, 30)},  # a wall-clock time that never was
            {"id": 3, "updated_at": dt.datetime(2026, 3, 8, 3, 0)},
        ]
    )
    reports = source.sync("2026-03-08-01:00", "2026-03-08-03:00")
    assert [(r.partition, r.rows_written) for r in reports] == [
        ("2026-03-08-01:00", 2),
        ("2026-03-08-03:00", 1),
    ]
    assert source.landed("id", PARTITION) == [
        (1, "2026-03-08-01:00"),
        (2, "2026-03-08-01:00"),
        (3, "2026-03-08-03:00"),
    ]

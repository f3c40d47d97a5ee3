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

"""What a new source version asks to sync, against local-warehouse tables: change-feed windows in any time
zone and type of partition field, cursor windows above the copy's high-water mark, the latest partitions with
lookback, and the definition's bounds."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.config import (
    Granularity,
    PartitionSpec,
    ResolvedStream,
    StreamSettings,
    SyncMode,
    TableName,
)
from zenskar_pipeline.databricks import DatabricksSession
from zenskar_pipeline.databricks.discovery import DiscoveredColumn, DiscoveredTable, TypeFamily
from zenskar_pipeline.destinations import PARTITION, DeltaDestination
from zenskar_pipeline.sync.calendar import PartitionCalendar
from zenskar_pipeline.sync.changed_partitions import (
    Requested,
    bucket_expression,
)
from zenskar_pipeline.sync.watch import changed_partitions
from zenskar_pipeline_tests.test_sync.conftest import full_type, utc

NOW = dt.datetime(2026, 1, 20, 12, tzinfo=dt.UTC)
_numbers = itertools.count()


@dataclass
class Source:
    warehouse: LocalWarehouse
    session: DatabricksSession
    name: str
    schema: pa.Schema
    stream: ResolvedStream

    @property
    def table(self) -> DiscoveredTable:
        columns = tuple(
            DiscoveredColumn(f.name, full_type(f.type), f.nullable, i) for i, f in enumerate(self.schema)
        )
        return DiscoveredTable(TableName.parse(self.name), columns, ("id",))

    @property
    def version(self) -> int:
        return tables.open_table(self.warehouse.root, self.name).version()

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        tables.upsert(self.warehouse.root, self.name, pa.Table.from_pylist(rows, self.schema), ["id"])

    def asks(self, since: int | None, *, stream: ResolvedStream | None = None) -> Requested:
        stream = stream or self.stream
        destination = DeltaDestination.for_stream(stream)
        return changed_partitions(self.session, stream, self.table, destination, since, self.version, now=NOW)


@pytest.fixture
def make(warehouse: LocalWarehouse, session: DatabricksSession, tmp_path: Path) -> Any:
    def build(
        field_type: pa.DataType,
        rows: list[dict[str, Any]],
        *,
        change_feed: bool = True,
        timezone: str = "UTC",
        granularity: Granularity = Granularity.DAILY,
        mode: SyncMode = SyncMode.INCREMENTAL_APPEND_DEDUPED,
        lookback: int = 0,
        lag: dt.timedelta = dt.timedelta(0),
        table_feed: bool = True,
    ) -> Source:
        schema = pa.schema(
            [
                pa.field("id", pa.int64(), nullable=False),
                ("at", field_type),
                ("updated_at", pa.timestamp("us", "UTC")),
            ]
        )
        name = f"zchanged.s.t{next(_numbers)}"
        data = pa.Table.from_pylist(rows, schema)
        tables.create_table(warehouse.root, name, data, primary_key=["id"], change_data_feed=table_feed)
        start = dt.datetime(2026, 1, 1)
        spec = PartitionSpec("at", granularity, start, timezone, include_current=True)
        settings = StreamSettings(
            sync_mode=mode,
            cursor_field=None if change_feed else "updated_at",
            cursor_lag=lag,
            primary_key=("id",),
            change_feed=change_feed,
            partitions=spec,
            lookback=lookback,
        )
        uri = str(tmp_path / name.replace(".", "_"))
        stream = ResolvedStream(TableName.parse(name), settings, uri, "zchanged_s", name.split(".")[-1])
        return Source(warehouse, session, name, schema, stream)

    return build


def _row(id_: int, at: Any, updated: dt.datetime | None = None) -> dict[str, Any]:
    return {"id": id_, "at": at, "updated_at": updated or utc(1)}


# -- change feed ---------------------------------------------------------------------------------------------


# Each pair straddles a local midnight: New York is UTC-5, Kolkata UTC+5:30 (a boundary on the half hour).
ZONES = [
    ("America/New_York", "HOUR", [utc(2, 4, 59), utc(2, 5)], ("2026-01-01", "2026-01-02")),
    ("Asia/Kolkata", "MINUTE", [utc(4, 18, 29), utc(4, 18, 30)], ("2026-01-04", "2026-01-05")),
    ("UTC", "HOUR", [utc(2, 23, 59), utc(3)], ("2026-01-02", "2026-01-03")),
]


@pytest.mark.parametrize(("zone", "unit", "instants", "keys"), ZONES)
def test_timestamp_changes_fall_in_their_windows_in_any_zone(
    make: Any, zone: str, unit: str, instants: list[dt.datetime], keys: tuple[str, ...]
) -> None:
    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(1, 12))], timezone=zone)
    before = source.version
    source.upsert([_row(2, instants[0]), _row(3, instants[1])])
    assert source.asks(before).ranges == (keys,)
    calendar = PartitionCalendar(source.stream.settings.partitions, TypeFamily.TIMESTAMP, NOW)
    assert bucket_expression("`at`", TypeFamily.TIMESTAMP, calendar) == f"date_trunc('{unit}', `at`)"


def test_timestamp_ntz_and_date_fields_compare_wall_clock(make: Any) -> None:
    wall = make(pa.timestamp("us"), [_row(1, dt.datetime(2026, 1, 1, 9))], timezone="America/New_York")
    before = wall.version
    wall.upsert([_row(2, dt.datetime(2026, 1, 5, 23, 59)), _row(3, dt.datetime(2026, 1, 7, 0, 0))])
    assert wall.asks(before).ranges == (("2026-01-05",), ("2026-01-07",))
    calendar = PartitionCalendar(wall.stream.settings.partitions, TypeFamily.TIMESTAMP_NTZ, NOW)
    expression = bucket_expression("`at`", TypeFamily.TIMESTAMP_NTZ, calendar)
    assert expression == "CAST(date_trunc('HOUR', `at`) AS TIMESTAMP_NTZ)"  # Databricks truncates TIMESTAMPs

    dated = make(pa.date32(), [_row(1, dt.date(2026, 1, 1))], granularity=Granularity.WEEKLY)
    before = dated.version
    dated.upsert([_row(2, dt.date(2026, 1, 10)), _row(3, dt.date(2026, 1, 11))])  # Saturday, Sunday
    assert dated.asks(before).ranges == (("2026-01-04", "2026-01-11"),)


def test_an_update_asks_for_the_window_it_left_and_the_one_it_entered(make: Any) -> None:
    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(2, 3)), _row(2, utc(3))])
    before = source.version
    source.upsert([_row(1, utc(9, 3))])
    assert source.asks(before).ranges == (("2026-01-02",), ("2026-01-09",))


def test_changes_outside_the_definition_are_dropped(make: Any) -> None:
    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(2))])
    before = source.version
    source.upsert([_row(2, dt.datetime(2025, 12, 31, tzinfo=dt.UTC)), _row(3, None), _row(4, utc(25))])
    assert source.asks(before) == Requested(reason=f"changes {before + 1}..{source.version}")
    assert source.asks(before).empty


def test_first_sight_without_a_copy_asks_for_the_latest_partition(make: Any) -> None:
    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(2))])
    assert source.asks(None).ranges == (("2026-01-20",),)


def test_an_unreadable_feed_asks_for_the_latest_partition(make: Any) -> None:
    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(2))], table_feed=False)
    before = source.version
    source.upsert([_row(2, utc(3))])
    requested = source.asks(before)  # the table records no change data: the run will say so
    assert requested.keys == ("2026-01-20",)
    assert "change feed unreadable" in requested.reason


def test_the_copys_synced_through_version_is_where_first_sight_starts(make: Any) -> None:
    from zenskar_pipeline.destinations.delta import AppTransaction
    from zenskar_pipeline.sync import app_id

    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(2))])
    synced = source.version
    rows = pa.table({"id": [1], "at": [utc(2)], PARTITION: ["2026-01-02"]})
    destination = DeltaDestination.for_stream(source.stream)
    transaction = AppTransaction(app_id(source.name), synced)
    destination.replace(rows, ["2026-01-02"], source_version=synced, app_transaction=transaction)
    assert source.asks(None).empty  # synced through the latest version: nothing to run
    source.upsert([_row(5, utc(5))])
    assert source.asks(None).keys == ("2026-01-05",)


# -- cursor streams ------------------------------------------------------------------------------------------


def test_cursor_windows_above_the_mark_minus_lag_plus_the_latest(make: Any) -> None:
    rows = [_row(1, utc(1), utc(1)), _row(2, utc(2), utc(2)), _row(3, utc(3), utc(3))]
    source = make(
        pa.timestamp("us", "UTC"),
        rows,
        change_feed=False,
        mode=SyncMode.INCREMENTAL_APPEND,
        lookback=2,
        lag=dt.timedelta(hours=12),
    )
    latest = ("2026-01-18", "2026-01-19", "2026-01-20")
    assert source.asks(None).ranges == (latest,)  # no copy yet: never the whole history
    copy = pa.table({"id": [1], "at": [utc(1)], "updated_at": [utc(3)], PARTITION: ["2026-01-01"]})
    DeltaDestination.for_stream(source.stream).replace(copy, ["2026-01-01"], source_version=1)
    source.upsert([_row(4, utc(6), dt.datetime(2026, 1, 2, 13, tzinfo=dt.UTC))])  # within the 12 h lag
    requested = source.asks(None)
    assert requested.ranges == (("2026-01-03",), ("2026-01-06",), latest)
    assert "updated_at >= 2026-01-02T12:00:00+00:00" in requested.reason


def test_full_refresh_and_unpartitioned_streams(make: Any) -> None:
    source = make(pa.timestamp("us", "UTC"), [_row(1, utc(2))], change_feed=False, mode=SyncMode.FULL_REFRESH)
    assert source.asks(None).keys == ("2026-01-20",)
    whole = replace(source.stream, settings=replace(source.stream.settings, partitions=None))
    assert source.asks(None, stream=whole) == Requested(whole=True, reason="unpartitioned: the whole table")


# -- the calendar --------------------------------------------------------------------------------------------


def _calendar(include_current: bool, granularity: Granularity = Granularity.DAILY) -> PartitionCalendar:
    spec = PartitionSpec("at", granularity, dt.datetime(2026, 1, 1), "UTC", include_current)
    return PartitionCalendar(spec, TypeFamily.TIMESTAMP, NOW)


def test_latest_keys_respect_the_start_and_the_window_in_progress() -> None:
    assert _calendar(True).latest_keys(2) == ["2026-01-19", "2026-01-20"]
    assert _calendar(False).latest_keys(1) == ["2026-01-19"]
    assert _calendar(True).latest_keys(50) == [f"2026-01-{day:02d}" for day in range(1, 21)]
    assert _calendar(True, Granularity.MONTHLY).latest_keys(3) == ["2026-01-01"]


def test_contiguous_ranges_cut_at_gaps() -> None:
    keys = ["2026-01-05", "2026-01-02", "2026-01-03", "2026-01-09", "2026-01-03"]
    assert _calendar(True).contiguous_ranges(keys) == (
        ("2026-01-02", "2026-01-03"),
        ("2026-01-05",),
        ("2026-01-09",),
    )
    assert _calendar(True).contiguous_ranges([]) == ()

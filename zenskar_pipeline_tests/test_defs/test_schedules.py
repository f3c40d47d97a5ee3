"""Schedules: one per (cron, partitions definition); a tick asks for each stream's latest partition plus
`lookback` earlier ones as one range run (the whole table when unpartitioned), and the request runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.defs.schedules import cron_words
from zenskar_pipeline.destinations import PARTITION
from zenskar_pipeline_tests.test_defs.watched_tables import Pipeline, cursor_stream, event

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
HOURLY = {"field": "event_time", "granularity": "hourly", "start": "2026-01-01-00:00"}


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as real:
        yield real


@pytest.fixture
def pipeline(warehouse: LocalWarehouse, tmp_path: Path) -> Pipeline:
    return Pipeline(warehouse, tmp_path, "zsched")


def _asked(
    defs: dg.Definitions, name: str, at: dt.datetime, instance: dg.DagsterInstance
) -> dict[str, tuple[str, dg.RunRequest]]:
    """Per stream: what the schedule's tick at `at` asks for (`key`, `first..last` or `whole`)."""
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    )
    asked = {}
    for request in schedule.evaluate_tick(context).run_requests or []:
        tags = request.tags
        if request.partition_key is not None:
            keys = request.partition_key
        elif RANGE_START in tags:
            keys = f"{tags[RANGE_START]}..{tags[RANGE_END]}"
        else:
            keys = "whole"
        asked[tags["zenskar/stream"]] = (keys, request)
    return asked


def _scheduled(table: str, cron: str, **settings: Any) -> dict[str, Any]:
    return cursor_stream(table, schedule=cron, **settings)


@pytest.mark.parametrize(
    ("cron", "name"),
    [
        ("15 * * * *", "hourly_at_15"),
        ("*/15 * * * *", "every_15_minutes"),
        ("0 3 * * *", "daily_at_0300"),
        ("15 6 * * 1-5", "weekly_on_mon_to_fri_at_0615"),
        ("0 0 * * sat,sun", "weekly_on_sat_sun_at_0000"),
        ("0 0 1 * *", "monthly_on_day_1_at_0000"),
        ("0 */2 * * *", "cron_0_x_2_x_x_x"),
    ],
)
def test_a_schedule_is_named_by_when_it_runs(cron: str, name: str) -> None:
    assert cron_words(cron) == name


def test_one_schedule_per_cron_and_partitions_definition(pipeline: Pipeline) -> None:
    a, b, hourly, whole, zoned, unscheduled = (pipeline.table([event("e1", 1)]) for _ in range(6))
    defs = pipeline.definitions(
        _scheduled(a, "0 * * * *"),
        _scheduled(b, "0 * * * *", lookback=3),
        _scheduled(hourly, "0 * * * *", partitions=HOURLY),
        {"table": whole, "sync_mode": "full_refresh", "partitions": None, "schedule": "15 6 * * 1-5"},
        _scheduled(
            zoned, "0 * * * *", partitions={**HOURLY, "granularity": "daily", "timezone": "Asia/Tokyo"}
        ),
        cursor_stream(unscheduled),
    )
    schedules = {s.name: s for s in defs.schedules or []}
    assert isinstance(next(iter(schedules.values())), dg.ScheduleDefinition)
    daily = sorted(name for name in schedules if name.startswith("daily_copies_hourly_at_00_"))
    assert len(daily) == 2  # UTC and Tokyo days differ: the same cron and granularity, two definitions
    assert {name for name in schedules if name not in daily} == {
        "hourly_copies_hourly_at_00",
        "unpartitioned_copies_weekly_on_mon_to_fri_at_0615",
    }
    for name in schedules:
        resolved = defs.resolve_schedule_def(name)
        assert resolved.default_status == dg.DefaultScheduleStatus.RUNNING
    tokyo = [defs.resolve_schedule_def(name) for name in daily]
    assert sorted(s.execution_timezone or "" for s in tokyo) == ["Asia/Tokyo", "UTC"]
    # The UTC daily schedule targets a and b; every schedule targets copies of one partitions definition.
    (utc_daily,) = [s for s in tokyo if s.execution_timezone == "UTC"]
    job = defs.resolve_job_def(utc_daily.job_name)
    assert {key.path[-1] for key in job.asset_layer.executable_asset_keys} == {
        a.split(".")[-1],
        b.split(".")[-1],
    }


def test_a_tick_asks_for_the_latest_partition_plus_lookback(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    deep, shallow, hourly, whole, zoned = (pipeline.table([event("e1", 1)]) for _ in range(5))
    defs = pipeline.definitions(
        _scheduled(deep, "30 * * * *", lookback=2),
        _scheduled(shallow, "30 * * * *"),
        _scheduled(hourly, "30 * * * *", partitions=HOURLY, lookback=1),
        {"table": whole, "sync_mode": "full_refresh", "partitions": None, "schedule": "30 * * * *"},
        _scheduled(
            zoned, "0 * * * *", partitions={**HOURLY, "granularity": "daily", "timezone": "America/New_York"}
        ),
    )
    at = dt.datetime(2026, 1, 10, 0, 30, tzinfo=dt.UTC)
    asked = _asked(defs, "daily_copies_hourly_at_30", at, instance)
    assert {stream: keys for stream, (keys, _) in asked.items()} == {
        deep: "2026-01-08..2026-01-10",
        shallow: "2026-01-10",
    }
    request = asked[deep][1]
    assert request.asset_selection == [dg.AssetKey(["zenskar", *deep.split(".")])]
    assert request.run_key == f"{deep}:2026-01-08..2026-01-10@2026-01-10T00:30:00+00:00"
    hours = _asked(defs, "hourly_copies_hourly_at_30", at, instance)
    assert hours[hourly][0] == "2026-01-09-23:00..2026-01-10-00:00"
    assert _asked(defs, "unpartitioned_copies_hourly_at_30", at, instance)[whole][0] == "whole"
    # 03:00 UTC is still January 9 in New York; at the start of the definition there is nothing before it.
    zoned_at = dt.datetime(2026, 1, 10, 3, tzinfo=dt.UTC)
    assert _asked(defs, "daily_copies_hourly_at_00", zoned_at, instance)[zoned][0] == "2026-01-09"
    first_day = dt.datetime(2026, 1, 1, 5, 30, tzinfo=dt.UTC)
    assert _asked(defs, "daily_copies_hourly_at_30", first_day, instance)[deep][0] == "2026-01-01"


def test_a_scheduled_request_runs_on_a_real_instance(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table([event("a", 7), event("b", 8), event("c", 9, hour=5), event("d", 10)])
    other = pipeline.table([event("x", 9)])
    defs = pipeline.definitions(_scheduled(table, "0 0 * * *", lookback=1), _scheduled(other, "0 0 * * *"))
    at = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    name = "daily_copies_daily_at_0000"
    keys, request = _asked(defs, name, at, instance)[table]
    assert keys == "2026-01-09..2026-01-10"
    job = defs.resolve_job_def(defs.resolve_schedule_def(name).job_name)
    result = job.execute_in_process(
        instance=instance, asset_selection=request.asset_selection, tags=request.tags
    )
    assert result.success
    ran = {(e.asset_key.path[-1], e.partition) for e in result.get_asset_materialization_events()}
    copy = table.split(".")[-1]
    assert ran == {(copy, "2026-01-09"), (copy, "2026-01-10")}  # the other stream of the schedule did not run
    landed = DeltaTable(pipeline.destination(table)).to_pyarrow_table(columns=["event_id", PARTITION])
    assert sorted((r["event_id"], r[PARTITION]) for r in landed.to_pylist()) == [
        ("c", "2026-01-09"),
        ("d", "2026-01-10"),
    ]
    run = instance.get_run_by_id(result.run_id)
    assert run is not None and run.tags["zenskar/stream"] == table

"""`delta_version_sensor` evaluated as the daemon does, on a real instance, against local-warehouse tables:
what it asks for, what it never asks for twice, and what it records."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.destinations import PARTITION, DeltaDestination
from zenskar_pipeline.destinations.delta import AppTransaction
from zenskar_pipeline.sync import app_id
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_defs.watched_tables import (
    EVENTS,
    Pipeline,
    change_feed_stream,
    cursor_stream,
    event,
    latest_key,
    tick,
    utc,
)

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as real:
        yield real


@pytest.fixture
def pipeline(warehouse: LocalWarehouse, tmp_path: Path) -> Pipeline:
    return Pipeline(warehouse, tmp_path, "zsensor")


def _days(*days: int) -> list[dict[str, object]]:
    return [event(f"e{day}", day) for day in days]


def _version(pipeline: Pipeline, table: str) -> int:
    return tables.open_table(pipeline.warehouse.root, table).version()


def test_nothing_changed_asks_for_no_run(pipeline: Pipeline, instance: dg.DagsterInstance) -> None:
    table = pipeline.table(_days(1, 2, 3))
    defs = pipeline.definitions(change_feed_stream(table))
    first = tick(defs, instance)
    # First sight of a copy never synced: the latest partition (its first run snapshots the whole table).
    assert first.asked == [(table, latest_key(defs, table))]
    assert json.loads(first.cursor or "") == {table: _version(pipeline, table)}
    (observation,) = first.asset_events
    assert isinstance(observation, dg.AssetObservation)
    assert observation.asset_key == dg.AssetKey(["databricks", *table.split(".")])
    assert observation.tags["dagster/data_version"] == str(_version(pipeline, table))

    again = tick(defs, instance, first.cursor)
    assert again.run_requests == [] and again.asset_events == []
    assert again.cursor == first.cursor


def test_a_change_in_one_old_partition_asks_for_that_partition_only(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1, 2, 3, 4, 5))
    defs = pipeline.definitions(change_feed_stream(table))
    before = tick(defs, instance)
    pipeline.upsert(table, [{**event("e2", 2), "quantity": 7}])
    after = tick(defs, instance, before.cursor)
    (request,) = after.run_requests
    version = _version(pipeline, table)
    assert request.partition_key == "2026-01-02"
    assert request.job_name == "zenskar_sync_daily_2026_01_01_UTC"
    assert request.asset_selection == [dg.AssetKey(["zenskar", *table.split(".")])]
    assert request.run_key == f"{table}:2026-01-02..2026-01-02@{version}"
    assert request.tags["zenskar/stream"] == table
    assert json.loads(after.cursor or "") == {table: version}


def test_an_update_that_moves_a_row_across_partitions_asks_for_both(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1, 2, 3))
    defs = pipeline.definitions(change_feed_stream(table))
    before = tick(defs, instance)
    pipeline.upsert(table, [event("e2", 6)])  # e2 moves from January 2 to January 6
    after = tick(defs, instance, before.cursor)
    assert after.asked == [(table, "2026-01-02"), (table, "2026-01-06")]


def test_a_quiet_table_beside_a_busy_one_gets_no_run(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    busy = pipeline.table(_days(1, 2))
    quiet = pipeline.table(_days(1, 2))
    defs = pipeline.definitions(change_feed_stream(busy), change_feed_stream(quiet))
    before = tick(defs, instance)
    pipeline.upsert(busy, [event("e9", 9)])
    after = tick(defs, instance, before.cursor)
    assert after.asked == [(busy, "2026-01-09")]
    assert [event.asset_key.path[-1] for event in after.asset_events] == [busy.split(".")[-1]]
    assert json.loads(after.cursor or "") == {
        busy: _version(pipeline, busy),
        quiet: _version(pipeline, quiet),
    }


def test_the_same_version_is_never_asked_for_twice_across_a_restart(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1, 2, 3, 4))
    stream = change_feed_stream(table)
    defs = pipeline.definitions(stream)
    first = tick(defs, instance)
    pipeline.upsert(table, [{**event("e2", 2), "quantity": 5}])
    second = tick(defs, instance, first.cursor)
    assert second.asked == [(table, "2026-01-02")]
    pipeline.upsert(table, [{**event("e4", 4), "quantity": 5}])

    # A restart: the code location loads again and the sensor resumes from the cursor the instance stored.
    restarted = pipeline.definitions(stream)
    third = tick(restarted, instance, second.cursor)
    assert third.asked == [(table, "2026-01-04")]  # not January 2 again, and January 4 not skipped
    assert {r.run_key for r in third.run_requests}.isdisjoint({r.run_key for r in second.run_requests})
    assert tick(restarted, instance, third.cursor).run_requests == []


def test_a_burst_of_50_versions_gives_one_request_per_contiguous_range(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(*range(1, 21)))
    defs = pipeline.definitions(change_feed_stream(table))
    before = tick(defs, instance)
    start = _version(pipeline, table)
    changed = [3, 4, 5, 10, 11]
    for n in range(50):
        day = changed[n % len(changed)]
        pipeline.upsert(table, [{**event(f"e{day}", day), "quantity": n}])
    assert _version(pipeline, table) == start + 50
    after = tick(defs, instance, before.cursor)
    assert after.asked == [(table, "2026-01-03..2026-01-05"), (table, "2026-01-10..2026-01-11")]
    ranged = [r for r in after.run_requests if RANGE_START in r.tags]
    assert {(r.tags[RANGE_START], r.tags[RANGE_END]) for r in ranged} == {
        ("2026-01-03", "2026-01-05"),
        ("2026-01-10", "2026-01-11"),
    }


def test_late_rows_in_a_cursor_streams_old_partition_are_found(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1, 2, 3), change_feed=False)
    defs = pipeline.definitions(cursor_stream(table, lookback=1))
    job = defs.resolve_job_def("zenskar_sync_daily_2026_01_01_UTC")
    landed = job.execute_in_process(
        instance=instance, tags={RANGE_START: "2026-01-01", RANGE_END: "2026-01-03"}
    )
    assert landed.success
    definition = defs.resolve_assets_def(dg.AssetKey(["zenskar", *table.split(".")])).partitions_def
    assert definition is not None
    lookback = "..".join(definition.get_partition_keys()[-2:])  # the latest partition and one before

    # Rows at the copy's high-water mark (January 3, inclusive) and the latest partition with its lookback.
    first = tick(defs, instance)
    assert first.asked == [(table, "2026-01-03"), (table, lookback)]

    pipeline.upsert(table, [event("late", 1, hour=5, updated=utc(10))])  # an old window, a new cursor
    second = tick(defs, instance, first.cursor)
    assert second.asked == [(table, "2026-01-01"), (table, "2026-01-03"), (table, lookback)]

    # The request resolves on the instance and lands the late row.
    (old,) = [r for r in second.run_requests if r.partition_key == "2026-01-01"]
    ran = job.execute_in_process(
        instance=instance,
        partition_key=old.partition_key,
        tags=old.tags,
        asset_selection=old.asset_selection,
    )
    assert ran.success
    copy = DeltaTable(pipeline.destination(table)).to_pyarrow_table(columns=["event_id", PARTITION])
    assert ("late", "2026-01-01") in {(r["event_id"], r[PARTITION]) for r in copy.to_pylist()}


def test_first_sight_of_a_synced_change_feed_copy_starts_at_its_synced_through_version(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1, 2, 3))
    synced = _version(pipeline, table)
    pipeline.upsert(table, [{**event("e3", 3), "quantity": 9}])  # after the copy's version: to be found
    destination = DeltaDestination(pipeline.destination(table), partitioned=True)
    rows = pa.Table.from_pylist([event("e1", 1)], EVENTS).append_column(PARTITION, pa.array(["2026-01-01"]))
    destination.replace(
        rows,
        ["2026-01-01"],
        source_version=synced,
        app_transaction=AppTransaction(app_id(table), synced),
    )
    defs = pipeline.definitions(change_feed_stream(table))
    assert tick(defs, instance).asked == [(table, "2026-01-03")]


def test_a_table_that_fails_is_skipped_and_keeps_its_version(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    kept = pipeline.table(_days(1))
    dropped = pipeline.table(_days(1))
    defs = pipeline.definitions(change_feed_stream(kept), change_feed_stream(dropped))
    before = tick(defs, instance)
    seen = json.loads(before.cursor or "")
    shutil.rmtree(pipeline.warehouse.root / dropped.replace(".", "/"))
    pipeline.upsert(kept, [event("e5", 5)])
    after = tick(defs, instance, before.cursor)
    assert after.asked == [(kept, "2026-01-05")]
    assert json.loads(after.cursor or "") == {kept: _version(pipeline, kept), dropped: seen[dropped]}


def test_an_unpartitioned_stream_runs_whole_once_per_version(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1), change_feed=False)
    defs = pipeline.definitions({"table": table, "sync_mode": "full_refresh", "partitions": None})
    first = tick(defs, instance)
    assert first.asked == [(table, "whole")]
    assert first.run_requests[0].run_key == f"{table}:whole@{_version(pipeline, table)}"
    assert tick(defs, instance, first.cursor).run_requests == []
    pipeline.upsert(table, [event("e2", 2)])
    assert tick(defs, instance, first.cursor).asked == [(table, "whole")]


@pytest.mark.parametrize("feed", [False, True])
def test_first_sight_of_an_unpartitioned_copy_already_synced_asks_for_no_run(
    pipeline: Pipeline, instance: dg.DagsterInstance, feed: bool
) -> None:
    """A copy synced before the sensor first looked (the demo's, a `sync`'s) is not synced again for the
    version it holds; a later version is."""
    table = pipeline.table(_days(1, 2), change_feed=feed)
    settings = change_feed_stream(table) if feed else {"table": table, "sync_mode": "full_refresh"}
    defs = pipeline.definitions({**settings, "partitions": None})
    copy_key = dg.AssetKey(["zenskar", *table.split(".")])
    synced = dg.materialize([defs.resolve_assets_def(copy_key)], instance=instance)
    assert synced.success
    first = tick(defs, instance)
    assert first.run_requests == []
    assert json.loads(first.cursor or "") == {table: _version(pipeline, table)}
    pipeline.upsert(table, [event("e3", 3)])
    assert tick(defs, instance, first.cursor).asked == [(table, "whole")]


def test_the_sensor_runs_by_default_at_the_configured_interval(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = pipeline.table(_days(1))
    monkeypatch.setenv("ZENSKAR_PIPELINE_SENSOR_INTERVAL", "5")
    sensor = pipeline.definitions(change_feed_stream(table)).resolve_sensor_def("delta_version_sensor")
    assert sensor.minimum_interval_seconds == 5
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("ZENSKAR_PIPELINE_SENSOR_INTERVAL", "soon")
    with pytest.raises(ValueError, match="ZENSKAR_PIPELINE_SENSOR_INTERVAL='soon'"):
        pipeline.definitions(change_feed_stream(table))


def test_an_unreachable_warehouse_fails_the_tick(pipeline: Pipeline, instance: dg.DagsterInstance) -> None:
    table = pipeline.table(_days(1))
    defs = pipeline.definitions(change_feed_stream(table))
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens here once the socket closes
    nowhere = DatabricksResource(**{**databricks_resource(pipeline.warehouse).model_dump(), "port": port})
    sensor = defs.resolve_sensor_def("delta_version_sensor")
    context = dg.build_sensor_context(
        instance=instance,
        resources={"databricks": nowhere, "destination": (defs.resources or {})["destination"]},
        definitions=defs,
    )
    with pytest.raises(Exception, match="cannot reach the Databricks warehouse"):
        sensor.evaluate_tick(context)


def test_a_waiting_run_of_a_change_feed_stream_takes_the_new_version(
    pipeline: Pipeline, instance: dg.DagsterInstance
) -> None:
    table = pipeline.table(_days(1, 2, 3))
    defs = pipeline.definitions(change_feed_stream(table))
    first = tick(defs, instance)
    (request,) = first.run_requests
    # Created and not started, as a run waits while another run of the stream holds its slot.
    waiting = instance.create_run_for_job(defs.resolve_job_def(request.job_name or ""), tags=request.tags)
    assert waiting.status is dg.DagsterRunStatus.NOT_STARTED
    pipeline.upsert(table, [{**event("e2", 2), "quantity": 7}])
    busy = tick(defs, instance, first.cursor)
    # The queued run applies every change up to the version current when it starts: none is added behind it.
    assert busy.run_requests == []
    assert json.loads(busy.cursor or "") == {table: _version(pipeline, table)}
    assert len(busy.asset_events) == 1  # the new version is still recorded on the source asset
    instance.delete_run(waiting.run_id)  # it ran (or went): the next version asks again
    pipeline.upsert(table, [{**event("e3", 3), "quantity": 9}])
    assert tick(defs, instance, busy.cursor).asked == [(table, "2026-01-03")]

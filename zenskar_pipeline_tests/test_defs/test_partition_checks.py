"""Asset checks answered per partition: Dagster plans a range run's checks once per partition, and each
planned evaluation gets its answer (none left "Skipped" in the UI's check history)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import OUTSIDE_WINDOWS, build_definitions
from zenskar_pipeline.defs.checks import PER_PARTITION_LIMIT, ROW_COUNT, UNIQUE_KEY
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_defs.conftest import EVENTS, Project, source_tables

EVENTS_KEY = dg.AssetKey(["zenskar", "zdefs", "billing", "usage_events"])
RANGE = {
    "dagster/asset_partition_range_start": "2026-01-01",
    "dagster/asset_partition_range_end": "2026-01-03",
}
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03"]


def _history(instance: dg.DagsterInstance, name: str) -> list[tuple[str | None, str]]:
    """(partition, status) of every execution of one check of the events copy, oldest first."""
    key = dg.AssetCheckKey(EVENTS_KEY, name)
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
    return sorted((record.partition, record.status.value) for record in records)


def test_a_range_run_answers_each_check_for_each_partition_it_covered(project: Project) -> None:
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([defs.resolve_assets_def(EVENTS_KEY)], instance=instance, tags=RANGE)
    assert result.success
    succeeded = AssetCheckExecutionRecordStatus.SUCCEEDED.value
    for name in (OUTSIDE_WINDOWS, UNIQUE_KEY):
        # One answered execution per partition of the range: no "Skipped" partition, no answer without one.
        assert _history(instance, name) == [(day, succeeded) for day in DAYS]
    evaluations = result.get_asset_check_evaluations()
    assert sorted((e.check_name, e.partition) for e in evaluations) == sorted(
        (name, day) for name in (OUTSIDE_WINDOWS, UNIQUE_KEY) for day in DAYS
    )


def test_a_partitioned_full_refresh_counts_rows_partition_by_partition(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    """Source days hold 1, 2 and 3 rows; a row added to the copy's second day by hand fails that day's
    check alone, naming its counts."""
    source_tables(warehouse.root)
    streams = tmp_path / "streams.yaml"
    streams.write_text(
        textwrap.dedent(f"""\
            destination:
              uri: {tmp_path / "destination"}
            streams:
              - table: {EVENTS}
                sync_mode: full_refresh
                partitions:
                  field: event_time
                  granularity: daily
                  start: "2026-01-01"
            """)
    )
    config = load_config(streams, env={})
    databricks = databricks_resource(warehouse)
    with databricks.session() as session:
        state = discover_tables(session, config)
    asset = build_definitions(config, state, databricks=databricks).resolve_assets_def(EVENTS_KEY)
    instance = dg.DagsterInstance.ephemeral()

    def row_counts() -> dict[str | None, tuple[bool, int, int]]:
        result = dg.materialize([asset], instance=instance, tags=RANGE)
        assert result.success
        return {
            e.partition: (e.passed, e.metadata["source_rows"].value, e.metadata["copy_rows"].value)
            for e in result.get_asset_check_evaluations()
            if e.check_name == ROW_COUNT
        }

    assert row_counts() == {
        "2026-01-01": (True, 1, 1),
        "2026-01-02": (True, 2, 2),
        "2026-01-03": (True, 3, 3),
    }
    uri = str(tmp_path / "destination/zdefs/billing/usage_events")
    copy = DeltaTable(uri).to_pyarrow_table()
    second_day = copy.filter(pc.equal(copy.column("_zenskar_partition"), "2026-01-02"))
    write_deltalake(uri, second_day.slice(0, 1), mode="append", partition_by=["_zenskar_partition"])
    # The source has not moved: the run keeps the copy as it is, and its checks see the extra row.
    assert row_counts() == {
        "2026-01-01": (True, 1, 1),
        "2026-01-02": (False, 2, 3),
        "2026-01-03": (True, 3, 3),
    }


def test_a_run_of_history_answers_each_check_once(project: Project) -> None:
    """Over `PER_PARTITION_LIMIT` partitions (here 101 hours) a run answers each check once, naming its
    partitions: an answer per partition is an event each, and history would cost minutes of them."""
    readings = dg.AssetKey(["zenskar", "zdefs", "metering", "readings"])
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    hours = {
        "dagster/asset_partition_range_start": "2026-01-01-00:00",
        "dagster/asset_partition_range_end": "2026-01-05-04:00",
    }
    assert PER_PARTITION_LIMIT == 100
    result = dg.materialize(
        [defs.resolve_assets_def(readings)], instance=dg.DagsterInstance.ephemeral(), tags=hours
    )
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.check_name, evaluation.partition, evaluation.passed) == (OUTSIDE_WINDOWS, None, True)
    assert len(evaluation.metadata["partitions"].value) == 101

"""Change-feed copies through real Dagster runs: a run reports every partition its changes touched, a
backfill rebuilds its window as of the synced-through version, and the checks catch a copy that drifted."""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.defs.checks import ROW_COUNT, UNIQUE_KEY
from zenskar_pipeline.destinations import PARTITION
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_defs.conftest import EVENT_SCHEMA, event

_names = itertools.count()
STREAMS = """\
destination:
  uri: {uri}
streams:
  - table: {table}
    sync_mode: incremental_append_deduped
    change_feed: true
    deletes: {deletes}
    partitions:
      field: event_time
      granularity: daily
      start: "2026-01-01"
"""


@dataclass
class FeedProject:
    warehouse: LocalWarehouse
    table: str
    key: dg.AssetKey
    defs: dg.Definitions
    uri: str

    def materialize(self, **kwargs: Any) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [self.defs.resolve_assets_def(self.key)], instance=dg.DagsterInstance.ephemeral(), **kwargs
        )

    def landed(self) -> list[tuple[Any, ...]]:
        rows = DeltaTable(self.uri).to_pyarrow_table(columns=["event_id", "quantity", PARTITION]).to_pylist()
        return sorted((r["event_id"], r["quantity"], r[PARTITION]) for r in rows)


def _project(warehouse: LocalWarehouse, tmp_path: Path, deletes: str = "hard") -> FeedProject:
    table = f"zfeed.billing.events{next(_names)}"
    rows = [event("a1", 1), event("b1", 2), event("c1", 3)]
    tables.create_table(
        warehouse.root,
        table,
        pa.Table.from_pylist(rows, EVENT_SCHEMA),
        primary_key=["event_id"],
        change_data_feed=True,
    )
    streams = tmp_path / "streams.yaml"
    text = STREAMS.format(uri=tmp_path / "destination", table=table, deletes=deletes)
    streams.write_text(textwrap.dedent(text))
    config = load_config(streams, env={})
    databricks = databricks_resource(warehouse)
    with databricks.session() as session:
        state = discover_tables(session, config)
    defs = build_definitions(config, state, databricks=databricks)
    key = dg.AssetKey(["zenskar", *table.split(".")])
    uri = str(tmp_path / "destination" / "zfeed" / "billing" / table.split(".")[-1])
    return FeedProject(warehouse, table, key, defs, uri)


def _partitions(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    materializations = [event.materialization for event in result.get_asset_materialization_events()]
    return {
        str(m.partition): {name: value.value for name, value in m.metadata.items()} for m in materializations
    }


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {check.check_name: check for check in result.get_asset_check_evaluations()}


def test_a_run_reports_every_partition_its_changes_touched(warehouse: LocalWarehouse, tmp_path: Path) -> None:
    project = _project(warehouse, tmp_path)
    first = project.materialize(partition_key="2026-01-03")
    assert sorted(_partitions(first)) == ["2026-01-01", "2026-01-02", "2026-01-03"]  # the snapshot
    moved = {**event("a1", 2), "quantity": 5}
    tables.upsert(warehouse.root, project.table, pa.Table.from_pylist([moved], EVENT_SCHEMA), ["event_id"])
    second = project.materialize(partition_key="2026-01-03")
    assert second.success
    reports = _partitions(second)
    assert sorted(reports) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert reports["2026-01-02"]["rows_written"] == 1 and reports["2026-01-02"]["dagster/row_count"] == 2
    assert reports["2026-01-01"]["dagster/row_count"] == 0  # the row left it
    assert reports["2026-01-03"]["rows_written"] == 0  # asked for, nothing changed there
    version = tables.open_table(warehouse.root, project.table).version()
    assert {r["synced_through_version"] for r in reports.values()} == {version}
    assert project.landed() == [("a1", 5, "2026-01-02"), ("b1", 1, "2026-01-02"), ("c1", 1, "2026-01-03")]
    checks = _checks(second)
    assert checks[ROW_COUNT].passed and checks[ROW_COUNT].metadata["source_rows"].value == 3
    assert checks[UNIQUE_KEY].passed


def test_a_backfill_rebuilds_its_window_as_of_the_synced_version(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    project = _project(warehouse, tmp_path)
    project.materialize(partition_key="2026-01-01")
    DeltaTable(project.uri).delete(f"{PARTITION} = '2026-01-02'")  # the copy lost a window
    later = {**event("b1", 2), "quantity": 9}
    tables.upsert(warehouse.root, project.table, pa.Table.from_pylist([later], EVENT_SCHEMA), ["event_id"])
    rebuilt = project.materialize(partition_key="2026-01-02", tags={"dagster/backfill": "abcdefgh"})
    assert rebuilt.success
    assert ("b1", 1, "2026-01-02") in project.landed()  # as of the synced version, not the later one
    assert _checks(rebuilt)[ROW_COUNT].passed
    project.materialize(partition_key="2026-01-02")
    assert ("b1", 9, "2026-01-02") in project.landed()


@pytest.mark.parametrize("deletes", ["hard", "soft"])
def test_the_row_count_check_catches_a_copy_that_lost_a_row(
    warehouse: LocalWarehouse, tmp_path: Path, deletes: str
) -> None:
    project = _project(warehouse, tmp_path, deletes)
    project.materialize(partition_key="2026-01-01")
    tables.delete(warehouse.root, project.table, "event_id = 'c1'")
    synced = project.materialize(partition_key="2026-01-01")
    assert _checks(synced)[ROW_COUNT].passed  # a delete, hard or soft, keeps the counts equal
    DeltaTable(project.uri).delete("event_id = 'a1'")  # someone edits the copy by hand
    result = project.materialize(partition_key="2026-01-01")
    check = _checks(result)[ROW_COUNT]
    assert not check.passed
    assert (check.metadata["source_rows"].value, check.metadata["copy_rows"].value) == (2, 1)


def test_the_unique_key_check_catches_a_duplicated_key(warehouse: LocalWarehouse, tmp_path: Path) -> None:
    project = _project(warehouse, tmp_path)
    project.materialize(partition_key="2026-01-01")
    copy = DeltaTable(project.uri)
    duplicate = copy.to_pyarrow_table(filters=[("event_id", "=", "b1")])
    write_deltalake(project.uri, duplicate, mode="append")
    result = project.materialize(partition_key="2026-01-01")
    check = _checks(result)[UNIQUE_KEY]
    assert not check.passed and check.metadata["duplicate_keys"].value == 1

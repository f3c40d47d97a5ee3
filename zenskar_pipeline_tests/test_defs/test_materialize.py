"""Materializing copies through real Dagster against the local warehouse: one partition, a single-run range
that reports each partition on its own, an unpartitioned full refresh, and the outside-windows check."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from deltalake import DeltaTable, write_deltalake

from zenskar_pipeline.defs import OUTSIDE_WINDOWS, build_definitions
from zenskar_pipeline.defs.checks import ROW_COUNT, UNIQUE_KEY
from zenskar_pipeline_tests.test_defs.conftest import Project

EVENTS_KEY = dg.AssetKey(["zenskar", "zdefs", "billing", "usage_events"])
CUSTOMERS_KEY = dg.AssetKey(["zenskar", "zdefs", "billing", "customers"])
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _materialize(project: Project, key: dg.AssetKey, **kwargs: Any) -> dg.ExecuteInProcessResult:
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    return dg.materialize(
        [defs.resolve_assets_def(key)],
        instance=dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def _by_partition(result: dg.ExecuteInProcessResult) -> dict[str | None, dict[str, Any]]:
    return {
        m.partition: {name: value.value for name, value in m.metadata.items()}
        for m in result.asset_materializations_for_node(result.all_node_events[0].node_name)
    }


def _landed(project: Project, path: str) -> list[dict[str, Any]]:
    return DeltaTable(str(project.destination / path)).to_pyarrow_table().to_pylist()


def test_one_partition_lands_its_rows_and_reports_them(project: Project) -> None:
    result = _materialize(project, EVENTS_KEY, partition_key="2026-01-02")
    assert result.success
    reports = _by_partition(result)
    assert list(reports) == ["2026-01-02"]
    report = reports["2026-01-02"]
    assert report["dagster/row_count"] == 2
    assert report["rows_read"] == 2 and report["rows_written"] == 2 and report["rows_deleted"] == 0
    assert report["skipped_null_cursor"] == 0 and report["skipped_outside_windows"] == 0
    assert report["dagster/uri"] == str(project.destination / "zdefs/billing/usage_events")
    assert report["cursor_before"] is None
    assert report["cursor_after"] == "2026-01-02T05:00:00+00:00"
    assert isinstance(report["source_version"], int)
    assert report["run_seconds"] > 0 and report["run_partitions"] == 1
    assert report["run_rows_per_second"] == pytest.approx(2 / report["run_seconds"], rel=0.05)
    landed = _landed(project, "zdefs/billing/usage_events")
    assert sorted(row["event_id"] for row in landed) == ["b1", "b2"]
    checks = {check.check_name: check for check in result.get_asset_check_evaluations()}
    assert set(checks) == {OUTSIDE_WINDOWS, UNIQUE_KEY} and all(c.passed for c in checks.values())
    assert checks[UNIQUE_KEY].metadata["duplicate_keys"].value == 0


def test_a_single_run_range_reports_each_partition_on_its_own(project: Project) -> None:
    tags = {RANGE_START: "2026-01-01", RANGE_END: "2026-01-03"}
    result = _materialize(project, EVENTS_KEY, tags=tags)
    assert result.success
    reports = _by_partition(result)
    assert sorted(k for k in reports if k) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert {k: r["rows_written"] for k, r in reports.items()} == {
        "2026-01-01": 1,
        "2026-01-02": 2,
        "2026-01-03": 3,
    }
    assert {k: r["dagster/row_count"] for k, r in reports.items()} == {
        "2026-01-01": 1,
        "2026-01-02": 2,
        "2026-01-03": 3,
    }
    assert len(_landed(project, "zdefs/billing/usage_events")) == 6
    # Dagster's own record agrees: one materialization per partition, each with its own count.
    assert len(result.get_asset_materialization_events()) == 3
    # One read and one commit for the range: its time is the run's, said so on each partition, with the
    # rate of all 6 rows over it (not each partition's rows over the whole run's time).
    (run_seconds,) = {r["run_seconds"] for r in reports.values()}
    (rate,) = {r["run_rows_per_second"] for r in reports.values()}
    assert {r["run_partitions"] for r in reports.values()} == {3}
    assert rate == pytest.approx(6 / run_seconds, rel=0.05)  # the figures are rounded
    assert all("seconds" not in r and "rows_per_second" not in r for r in reports.values())


def test_nothing_new_lands_nothing_and_says_so(project: Project) -> None:
    _materialize(project, EVENTS_KEY, partition_key="2026-01-03")
    result = _materialize(project, EVENTS_KEY, partition_key="2026-01-03")
    assert result.success
    again = _by_partition(result)["2026-01-03"]
    assert again["rows_written"] == 0 and again["destination_version"] is None
    assert again["dagster/row_count"] == 3  # what the partition holds, not what this run wrote
    assert all(check.passed for check in result.get_asset_check_evaluations())
    assert again["cursor_before"] == again["cursor_after"] == "2026-01-03T00:00:00+00:00"


def test_an_unpartitioned_full_refresh_copies_the_whole_table(project: Project) -> None:
    result = _materialize(project, CUSTOMERS_KEY)
    assert result.success
    reports = _by_partition(result)
    assert list(reports) == [None]
    assert reports[None]["rows_written"] == 2 and reports[None]["dagster/row_count"] == 2
    landed = _landed(project, "zdefs/billing/customers")
    assert sorted(row["customer_id"] for row in landed) == ["c1", "c2"]
    assert all("email" not in row for row in landed)
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == ROW_COUNT and check.passed
    assert (check.metadata["source_rows"].value, check.metadata["copy_rows"].value) == (2, 2)


def test_a_range_run_records_only_the_partitions_it_changed_or_never_recorded(project: Project) -> None:
    """Each recorded partition is an event Dagster writes; a range run that changes one partition of three,
    all recorded before, records that one and its latest partition. A run of a Dagster backfill records
    every partition: the backfill completes when each of its partitions is recorded."""
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    asset = defs.resolve_assets_def(EVENTS_KEY)
    instance = dg.DagsterInstance.ephemeral()
    tags = {RANGE_START: "2026-01-01", RANGE_END: "2026-01-03"}
    first = dg.materialize([asset], instance=instance, tags=tags)
    assert sorted(_by_partition(first)) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    again = dg.materialize([asset], instance=instance, tags=tags)  # nothing new
    assert list(_by_partition(again)) == ["2026-01-03"]  # the latest: the copy is current as of this run
    backfill = dg.materialize([asset], instance=instance, tags={**tags, "dagster/backfill": "b1"})
    assert sorted(_by_partition(backfill)) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert instance.get_materialized_partitions(EVENTS_KEY) == {"2026-01-01", "2026-01-02", "2026-01-03"}


def test_a_run_that_wrote_nothing_answers_the_key_check_without_reading_the_copy(project: Project) -> None:
    """The unique-key check reads every key of the copy; a later run answers from it while the copy's Delta
    version is the one it read, and reads again once the copy moved (here: edited by hand)."""
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    asset = defs.resolve_assets_def(EVENTS_KEY)
    instance = dg.DagsterInstance.ephemeral()

    def unique_key_check() -> Any:
        result = dg.materialize([asset], instance=instance, partition_key="2026-01-02")
        (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == UNIQUE_KEY]
        return check

    first = unique_key_check()
    assert first.passed and first.metadata["reused"].value is False
    again = unique_key_check()  # nothing new: nothing written, the copy's version unchanged
    assert again.passed and again.metadata["reused"].value is True
    uri = str(project.destination / "zdefs/billing/usage_events")
    write_deltalake(uri, DeltaTable(uri).to_pyarrow_table().slice(0, 1), mode="append")  # a key twice
    edited = unique_key_check()
    assert not edited.passed and edited.metadata["reused"].value is False
    assert edited.metadata["duplicate_keys"].value == 1


def test_each_materialization_shows_the_columns_the_copy_landed(project: Project) -> None:
    """`dagster/column_schema` per partition (and on the spec) lists exactly the landed Delta table's
    columns: the selected source columns and the system columns of the stream's sync mode."""
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    specs = {spec.key: spec for spec in defs.resolve_all_asset_specs()}
    for key, path, scope in (
        (EVENTS_KEY, "zdefs/billing/usage_events", {"partition_key": "2026-01-01"}),
        (CUSTOMERS_KEY, "zdefs/billing/customers", {}),
    ):
        result = _materialize(project, key, **scope)
        assert result.success
        landed = DeltaTable(str(project.destination / path)).schema().to_arrow().names
        for report in _by_partition(result).values():
            assert [column.name for column in report["dagster/column_schema"].columns] == landed
        assert [column.name for column in specs[key].metadata["dagster/column_schema"].columns] == landed

"""What the code location shows: keys, groups, kinds, descriptions, partitions; loaded from the cache only."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from zenskar_pipeline.config import Deletes, ResolvedStream, StreamSettings, SyncMode, TableName
from zenskar_pipeline.defs import STREAM_TAG, WAREHOUSE_POOL, StreamTranslator, build_definitions
from zenskar_pipeline.defs.translator import system_columns
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.test_defs.conftest import EVENTS, Project, write_streams

REPO = Path(__file__).resolve().parents[2]
EVENTS_KEY = dg.AssetKey(["zenskar", "zdefs", "billing", "usage_events"])
CUSTOMERS_KEY = dg.AssetKey(["zenskar", "zdefs", "billing", "customers"])
READINGS_KEY = dg.AssetKey(["zenskar", "zdefs", "metering", "readings"])


def _specs(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def test_keys_groups_kinds_and_descriptions(project: Project) -> None:
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    specs = _specs(defs)
    source = specs[dg.AssetKey(["databricks", "zdefs", "billing", "usage_events"])]
    assert source.kinds == {"databricks"}
    assert source.description == "Usage"
    copy = specs[EVENTS_KEY]
    assert [dep.asset_key for dep in copy.deps] == [source.key]
    assert copy.group_name == "zdefs_billing"
    assert specs[READINGS_KEY].group_name == "zdefs_metering"
    assert copy.kinds == {"databricks", "delta"}
    assert copy.description is not None and copy.description.startswith("Usage")
    assert copy.metadata["dagster/uri"] == str(project.destination / "zdefs/billing/usage_events")
    assert copy.metadata["table"] == "zdefs.billing.usage_events"
    columns = [c.name for c in copy.metadata["dagster/column_schema"].columns]
    assert columns[:5] == ["event_id", "customer_id", "event_time", "quantity", "updated_at"]
    customer_columns = [c.name for c in specs[CUSTOMERS_KEY].metadata["dagster/column_schema"].columns]
    assert "email" not in customer_columns


def test_table_names_and_column_schemas_of_source_and_copy(project: Project) -> None:
    specs = _specs(build_definitions(project.config, project.state, databricks=project.databricks))
    source = specs[dg.AssetKey(["databricks", "zdefs", "billing", "customers"])]
    assert source.metadata["dagster/table_name"] == "zdefs.billing.customers"
    source_columns = source.metadata["dagster/column_schema"].columns
    assert [(c.name, c.type) for c in source_columns] == [
        ("customer_id", "string"),
        ("email", "string"),  # the source has it; the copy leaves it out
        ("plan", "string"),
    ]
    copy = specs[CUSTOMERS_KEY]
    uri = str(project.destination / "zdefs/billing/customers")
    assert copy.metadata["dagster/table_name"] == f"delta.`{uri}`"
    assert [(c.name, c.type) for c in copy.metadata["dagster/column_schema"].columns] == [
        ("customer_id", "string"),
        ("plan", "string"),
        ("_zenskar_source_version", "bigint"),
        ("_zenskar_synced_at", "timestamp"),
    ]
    events = [c.name for c in specs[EVENTS_KEY].metadata["dagster/column_schema"].columns]
    assert events[5:] == [
        "_zenskar_partition",
        "_zenskar_source_version",
        "_zenskar_synced_at",
        "_zenskar_content_hash",
    ]
    readings = [c.name for c in specs[READINGS_KEY].metadata["dagster/column_schema"].columns]
    assert readings[2:] == [
        "_zenskar_partition",
        "_zenskar_source_version",
        "_zenskar_synced_at",
        "_zenskar_row_id",
    ]


def test_freshness_becomes_a_time_window_policy_on_the_copy(project: Project, tmp_path: Path) -> None:
    text = write_streams(tmp_path).read_text()
    with_freshness = text.replace(f"  - table: {EVENTS}\n", f"  - table: {EVENTS}\n    freshness: 1h30m\n")
    (tmp_path / "streams.yaml").write_text(with_freshness)
    config = load_config(tmp_path / "streams.yaml", env={})
    specs = _specs(build_definitions(config, project.state, databricks=project.databricks))
    assert specs[EVENTS_KEY].freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(hours=1, minutes=30)
    )
    assert specs[CUSTOMERS_KEY].freshness_policy is None  # no freshness: no policy


def test_partitions_policies_pool_and_tags(project: Project) -> None:
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    events = defs.resolve_assets_def(EVENTS_KEY)
    daily = events.partitions_def
    assert isinstance(daily, dg.DailyPartitionsDefinition)
    assert daily.get_first_partition_key() == "2026-01-01"
    assert daily.end_offset == 1
    hourly = defs.resolve_assets_def(READINGS_KEY).partitions_def
    assert isinstance(hourly, dg.HourlyPartitionsDefinition)
    assert hourly.get_first_partition_key() == "2026-01-01-00:00"
    assert defs.resolve_assets_def(CUSTOMERS_KEY).partitions_def is None
    assert events.backfill_policy == dg.BackfillPolicy.single_run()
    assert events.op.retry_policy is not None
    assert events.op.pool == WAREHOUSE_POOL
    assert events.op.tags[STREAM_TAG] == "zdefs.billing.usage_events"
    assert {check.name for check in events.check_specs} == {
        "no_rows_outside_partition_windows",
        "primary_key_unique",
    }
    customers = defs.resolve_assets_def(CUSTOMERS_KEY).check_specs
    assert {check.name for check in customers} == {"row_count_matches_source"}
    # One job per partitions definition: the daily events share theirs with no other stream here.
    job = defs.resolve_job_def("zenskar_sync_daily_2026_01_01_UTC")
    assert job.asset_layer.executable_asset_keys == {events.key}


class ShortKeys(StreamTranslator):
    def copy_key(self, stream: ResolvedStream) -> dg.AssetKey:
        return dg.AssetKey(["copies", stream.table.table])

    def group_name(self, stream: ResolvedStream) -> str:
        return "billing_copies"


def test_a_translator_subclass_changes_keys_and_groups(project: Project) -> None:
    defs = build_definitions(project.config, project.state, ShortKeys(), databricks=project.databricks)
    specs = _specs(defs)
    copy = specs[dg.AssetKey(["copies", "usage_events"])]
    assert copy.group_name == "billing_copies"
    assert EVENTS_KEY not in specs
    assert [dep.asset_key for dep in copy.deps] == [
        dg.AssetKey(["databricks", "zdefs", "billing", "usage_events"])
    ]


def _validate(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`dagster definitions validate` on definitions.py, with the streams file in `folder`."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-m",
            "zenskar_pipeline.definitions",
        ],
        cwd=folder,
        env={**os.environ, "DAGSTER_HOME": str(folder), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_definitions_module_loads_from_the_cache_without_databricks(project: Project, tmp_path: Path) -> None:
    folder = tmp_path / "location"
    folder.mkdir()
    config = load_config(write_streams(folder), env={})
    save_state(project.state, config.state_path)
    env = {
        "ZENSKAR_PIPELINE_CONFIG": str(folder / "streams.yaml"),
        "DATABRICKS_SERVER_HOSTNAME": "nowhere.invalid",
        "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/none",
        "DATABRICKS_TOKEN": "not-a-token",
        "PYTHONPATH": str(REPO),
    }
    result = _validate(folder, env)
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    assert "nowhere.invalid" not in shown and "not-a-token" not in shown


def test_a_missing_cache_says_to_run_discover(tmp_path: Path) -> None:
    write_streams(tmp_path)
    env = {"ZENSKAR_PIPELINE_CONFIG": str(tmp_path / "streams.yaml"), "PYTHONPATH": str(REPO)}
    result = _validate(tmp_path, env)
    assert result.returncode != 0
    shown = result.stdout + result.stderr
    assert "StateMissingError: no discovered tables at" in shown
    assert "run `zenskar-pipeline discover`" in shown


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (StreamSettings(SyncMode.FULL_REFRESH), []),
        (StreamSettings(SyncMode.INCREMENTAL_APPEND), ["_zenskar_row_id"]),
        (StreamSettings(SyncMode.INCREMENTAL_APPEND, primary_key=("id",)), []),
        (
            StreamSettings(SyncMode.INCREMENTAL_APPEND, primary_key=("id",), change_feed=True),
            ["_zenskar_row_id", "_zenskar_change_type"],
        ),
        (StreamSettings(primary_key=("id",)), ["_zenskar_content_hash"]),
        (
            StreamSettings(primary_key=("id",), change_feed=True, deletes=Deletes.SOFT),
            ["_zenskar_content_hash", "_zenskar_deleted"],
        ),
        (
            StreamSettings(SyncMode.HISTORY, primary_key=("id",)),
            ["_zenskar_content_hash", "_zenskar_valid_from", "_zenskar_valid_to", "_zenskar_is_current"],
        ),
    ],
)
def test_each_mode_lists_the_system_columns_it_writes(settings: StreamSettings, expected: list[str]) -> None:
    """As the reference's System columns table says (unpartitioned: no `_zenskar_partition`)."""
    stream = ResolvedStream(TableName("main", "billing", "t"), settings, "/copies/t", "main/billing", "t")
    names = [name for name, _, _ in system_columns(stream)]
    assert names == ["_zenskar_source_version", "_zenskar_synced_at", *expected]

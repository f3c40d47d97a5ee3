"""The Dagster instance settings, the local instance's (zenskar_pipeline/dagster.yaml) and production's
(deploy/dagster.yaml), as Dagster reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from zenskar_pipeline.defs import STREAM_TAG, WAREHOUSE_POOL
from zenskar_pipeline.runner import LOCAL_INSTANCE_SETTINGS

ROOT = Path(__file__).resolve().parents[1]


def test_one_run_per_stream_and_a_bounded_warehouse_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # dagster.yaml keeps its storage under DAGSTER_HOME
    shutil.copyfile(LOCAL_INSTANCE_SETTINGS, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        settings = instance.get_concurrency_config()
        limits = settings.run_queue_config.tag_concurrency_limits if settings.run_queue_config else []
        assert {"key": STREAM_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
        assert settings.pool_config.default_pool_limit == 4
        assert WAREHOUSE_POOL == "databricks_warehouse"


def test_the_local_instance_sends_no_telemetry_and_runs_print_info_and_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copyfile(LOCAL_INSTANCE_SETTINGS, tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert not instance.telemetry_enabled
        # the level of a run's console logger when its config names none (devtools/tests/test_dev.py
        # watches what a run launched in `make dev` prints)
        assert instance.python_log_level == "INFO"


@pytest.mark.parametrize("settings", ["zenskar_pipeline/dagster.yaml", "deploy/dagster.yaml"])
def test_runs_are_watched_retried_and_free_their_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: str
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for name, value in {
        "HOST": "localhost",
        "PORT": "5432",
        "USERNAME": "u",
        "PASSWORD": "p",
        "DB": "d",
    }.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)  # read, not connected to: no storage is opened
    shutil.copyfile(ROOT / settings, tmp_path / "dagster.yaml")
    from dagster._core.instance.config import dagster_instance_config

    config, _ = dagster_instance_config(str(tmp_path))
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] and monitoring["start_timeout_seconds"] and monitoring["max_runtime_seconds"]
    assert monitoring["free_slots_after_run_end_seconds"] == 60  # a killed run's pool slots come back
    retries = config["run_retries"]
    assert retries == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}

"""The Dagster instance settings in dagster.yaml, as Dagster reads them."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from zenskar_pipeline.defs import STREAM_TAG, WAREHOUSE_POOL

ROOT = Path(__file__).resolve().parents[1]


def test_one_run_per_stream_and_a_bounded_warehouse_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # dagster.yaml keeps its storage under DAGSTER_HOME
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        settings = instance.get_concurrency_config()
        limits = settings.run_queue_config.tag_concurrency_limits if settings.run_queue_config else []
        assert {"key": STREAM_TAG, "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
        assert settings.pool_config.default_pool_limit == 4
        assert WAREHOUSE_POOL == "databricks_warehouse"

"""Real syncs with a token or as a service principal, and failed runs, leave no secret in the output, the
Dagster home (SQLite event logs, compute logs), the discovery cache or the copy and its Delta log."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline import runner
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.streams import load_config, validate_streams
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_end_to_end.project import (
    connection_files,
    files_holding,
    new_dagster_home,
    run_cli,
    secrets_left,
    user_env,
)

EVENTS = "ze2e_secrets.billing.usage_events"
COPY = ("ze2e_secrets", "billing", "usage_events")
STREAMS = f"""\
destination:
  uri: destination
streams:
  - table: {EVENTS}
    sync_mode: incremental_append_deduped
    cursor_field: updated_at
    partitions:
      field: event_time
      granularity: daily
      start: "2026-01-01"
"""


@pytest.fixture(scope="module")
def source(warehouse: LocalWarehouse) -> LocalWarehouse:
    """Four events on 2026-01-02, keyed by event_id (the Unity Catalog primary key)."""
    if (warehouse.root / EVENTS.split(".")[0]).exists():
        return warehouse
    when = dt.datetime(2026, 1, 2, 6, tzinfo=dt.UTC)
    rows = [{"event_id": f"e{i}", "event_time": when, "updated_at": when, "quantity": i} for i in range(4)]
    tables.create_table(warehouse.root, EVENTS, pa.Table.from_pylist(rows), primary_key=["event_id"])
    return warehouse


def _project(folder: Path) -> Path:
    folder.mkdir()
    config = folder / "streams.yaml"
    config.write_text(STREAMS)
    return config


def _every_secret(warehouse: LocalWarehouse) -> list[str]:
    return [warehouse.info.access_token, warehouse.info.client_secret]


@pytest.mark.parametrize("auth", ["token", "service-principal"])
def test_a_sync_leaves_no_secret_behind(source: LocalWarehouse, tmp_path: Path, auth: str) -> None:
    token_env, oauth_env = connection_files(source)
    config = _project(tmp_path / "project")
    home = new_dagster_home(tmp_path / "dagster_home")
    env = user_env(token_env if auth == "token" else oauth_env, dagster_home=home)
    result = run_cli("sync", "--config", str(config), "--partition", "2026-01-02", env=env, cwd=config.parent)
    assert result.returncode == 0, result.stderr
    copy = config.parent / "destination" / Path(*COPY)
    assert DeltaTable(str(copy)).to_pyarrow_table().num_rows == 4
    # The scan reads what the run recorded: its materialization is in the Dagster home's event log.
    assert files_holding(home, "rows_written")
    outputs = [result.stdout, result.stderr]
    assert secrets_left(_every_secret(source), outputs=outputs, folders=[home, config.parent]) == []


@pytest.mark.parametrize("auth", ["token", "service-principal"])
def test_a_run_that_cannot_reach_the_warehouse_records_no_secret(
    source: LocalWarehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    auth: str,
) -> None:
    """As in `dagster dev` with a wrong host: definitions load from the cache, the run's step fails."""
    config = load_config(_project(tmp_path / "project"), env={})
    with databricks_resource(source).session() as session:
        state = discover_tables(session, config)
    token_env, oauth_env = connection_files(source)
    for name in [name for name in os.environ if name.startswith(("DATABRICKS_", "ZENSKAR_PIPELINE_"))]:
        monkeypatch.delenv(name)
    for name, value in (token_env if auth == "token" else oauth_env).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABRICKS_SERVER_HOSTNAME", "no-such-workspace.invalid")
    home = new_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    defs = build_definitions(config, state)  # the resource reads DATABRICKS_* when the step runs
    (stream,) = validate_streams(config, state)
    plan = runner.plan_stream(stream, runner.Selection(partition="2026-01-02"))
    with runner.dagster_instance() as instance:
        result = runner.run_plan(defs, plan, instance)
    assert not result.ok
    assert result.error is not None and "check DATABRICKS_SERVER_HOSTNAME" in result.error
    assert files_holding(home, "no-such-workspace.invalid")  # the failure is recorded, and scanned below
    captured = capfd.readouterr()
    outputs = [captured.out, captured.err, caplog.text, result.error]
    assert secrets_left(_every_secret(source), outputs=outputs, folders=[home, tmp_path / "project"]) == []

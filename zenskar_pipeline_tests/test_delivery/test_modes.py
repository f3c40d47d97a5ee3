"""What counts as one event, by sync mode, delivered for real: an append log without a key (two identical
rows are two events), and a change feed with a key (an update after delivery is a correction, never sent)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pyarrow as pa
import yaml

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.zenskar_api import LocalZenskarApi
from zenskar_pipeline import runner
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config, validate_streams
from zenskar_pipeline_tests.conftest import databricks_resource

SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("customer_id", pa.string()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("quantity", pa.int64()),
    ]
)
DAY = "2026-02-02"
WHEN = dt.datetime(2026, 2, 2, 10, tzinfo=dt.UTC)


def _deliver_stream(
    warehouse: LocalWarehouse, api: LocalZenskarApi, folder: Path, table: str, settings: dict[str, object]
) -> dg.Definitions:
    """Discover `table` with `settings`, sync its day, and return definitions that deliver to `api`."""
    api.define("calls", {"quantity": "Int64"})
    stream = {
        "table": table,
        **settings,
        "partitions": {"field": "event_time", "granularity": "daily", "start": "2026-02-01"},
        "deliver": {
            "api_slug": "calls",
            "customer_id": "customer_id",
            "timestamp": "event_time",
            "data": {"quantity": "quantity"},
        },
    }
    streams = {"destination": {"uri": str(folder / "destination")}, "streams": [stream]}
    (folder / "streams.yaml").write_text(yaml.safe_dump(streams))
    config = load_config(folder / "streams.yaml", env={})
    with databricks_resource(warehouse).session() as session:
        state = discover_tables(session, config)
    save_state(state, config.state_path)
    zenskar = ZenskarResource(api_url=api.api_url, organisation=api.organisation, api_key=api.api_key)
    defs = build_definitions(config, state, databricks=databricks_resource(warehouse), zenskar=zenskar)
    _sync(defs, config, state)
    return defs


def _sync(defs: dg.Definitions, config: object, state: object) -> None:
    [stream] = validate_streams(config, state)  # type: ignore[arg-type]
    with dg.DagsterInstance.ephemeral() as instance:
        plan = runner.plan_stream(stream, runner.Selection(partition=DAY))
        result = runner.run_plan(defs, plan, instance)
        assert result.ok, result.error


def _deliver(defs: dg.Definitions, table: str) -> dg.ExecuteInProcessResult:
    key = dg.AssetKey(["zenskar", *table.split("."), "delivered"])
    return dg.materialize(
        [defs.resolve_assets_def(key)], partition_key=DAY, instance=dg.DagsterInstance.ephemeral()
    )


def test_an_append_log_without_a_key_delivers_two_identical_rows_as_two_events(
    warehouse: LocalWarehouse, zenskar_api: LocalZenskarApi, tmp_path: Path
) -> None:
    table = "zdeliver.modes.keyless_log"
    same = {"event_id": "x", "customer_id": "c1", "event_time": WHEN, "quantity": 1}
    tables.create_table(warehouse.root, table, pa.Table.from_pylist([same, same], SCHEMA))
    defs = _deliver_stream(
        warehouse,
        zenskar_api,
        tmp_path,
        table,
        {"sync_mode": "incremental_append", "cursor_field": "event_time"},
    )
    assert _deliver(defs, table).success
    assert len(zenskar_api.events("calls")) == 2
    assert _deliver(defs, table).success
    assert len(zenskar_api.events("calls")) == 2  # the ledger knows both, by their row ids


def test_a_change_feed_update_after_delivery_is_a_correction_not_a_second_event(
    warehouse: LocalWarehouse, zenskar_api: LocalZenskarApi, tmp_path: Path
) -> None:
    table = "zdeliver.modes.feed_events"
    rows = [
        {"event_id": "a", "customer_id": "c1", "event_time": WHEN, "quantity": 1},
        {"event_id": "b", "customer_id": "c2", "event_time": WHEN, "quantity": 2},
    ]
    tables.create_table(
        warehouse.root,
        table,
        pa.Table.from_pylist(rows, SCHEMA),
        primary_key=["event_id"],
        change_data_feed=True,
    )
    settings = {"sync_mode": "incremental_append", "change_feed": True, "primary_key": ["event_id"]}
    defs = _deliver_stream(warehouse, zenskar_api, tmp_path, table, settings)
    assert _deliver(defs, table).success
    assert sorted(e["customer_id"] for e in zenskar_api.events("calls")) == ["c1", "c2"]
    changed = [{"event_id": "a", "customer_id": "c1", "event_time": WHEN, "quantity": 10}]
    tables.upsert(warehouse.root, table, pa.Table.from_pylist(changed, SCHEMA), ["event_id"])
    tables.delete(warehouse.root, table, "event_id = 'b'")
    config = load_config(tmp_path / "streams.yaml", env={})
    with databricks_resource(warehouse).session() as session:
        state = discover_tables(session, config)
    _sync(defs, config, state)
    result = _deliver(defs, table)
    assert len(zenskar_api.events("calls")) == 2  # neither the update nor the delete went out
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "delivered_rows_unchanged"]
    assert not check.passed
    assert check.metadata["sample_event_ids"].value == ['["a"]', '["b"]']

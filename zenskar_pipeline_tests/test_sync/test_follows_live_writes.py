"""The demo's usage events under the live writer (new events, late ones, corrections that move a day,
deletes), followed by change-feed runs through Dagster: after every run the copy equals the source."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.live import LiveMix, LiveUsageWriter
from zenskar_devtools.local_warehouse.seed import USAGE_EVENTS, seed_demo
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.destinations import PARTITION
from zenskar_pipeline.destinations.landing import DELETED
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource

STREAM = """\
destination:
  uri: {uri}
streams:
  - table: main.billing.usage_events
    sync_mode: incremental_append_deduped
    change_feed: true
    deletes: {deletes}
    partitions:
      field: event_time
      granularity: daily
      start: "{start}"
"""
EVERY_KIND = LiveMix(correction_chance=1.0, max_corrections=8, delete_chance=1.0, max_deletes=4)
COLUMNS = ["event_id", "customer_id", "event_time", "updated_at", "metric", "quantity"]


@pytest.fixture(scope="module")
def live_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWarehouse]:
    root = tmp_path_factory.mktemp("live")
    seed_demo(root, rows=3_000, seed=11, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    server = LocalWarehouse(root)
    server.start()
    yield server
    server.stop()


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted(tuple(row[c] for c in COLUMNS) for row in table.select(COLUMNS).to_pylist())


@pytest.mark.parametrize("deletes", ["hard", "soft"])
def test_the_copy_equals_the_source_after_every_run(
    live_warehouse: LocalWarehouse, tmp_path: Path, deletes: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=90)).replace(day=1)
    streams = tmp_path / "streams.yaml"
    text = STREAM.format(uri=tmp_path / "copies", deletes=deletes, start=f"{start:%Y-%m-%d}")
    streams.write_text(textwrap.dedent(text))
    config = load_config(streams, env={})
    databricks = databricks_resource(live_warehouse)
    with databricks.session() as session:
        defs = build_definitions(config, discover_tables(session, config), databricks=databricks)
    key = dg.AssetKey(["zenskar", "main", "billing", "usage_events"])
    asset = defs.resolve_assets_def(key)
    instance = dg.DagsterInstance.ephemeral()
    writer = LiveUsageWriter.open(live_warehouse.root, seed=5 if deletes == "hard" else 6, mix=EVERY_KIND)
    source_path = str(USAGE_EVENTS.path(live_warehouse.root))
    copy_path = str(tmp_path / "copies" / "main" / "billing" / "usage_events")
    today = f"{now:%Y-%m-%d}"
    for step in range(4):
        if step:
            writer.write_step(now - dt.timedelta(minutes=30) + dt.timedelta(minutes=step))
        result = dg.materialize([asset], instance=instance, partition_key=today)
        assert result.success
        source = DeltaTable(source_path).to_pyarrow_table()
        copy = DeltaTable(copy_path).to_pyarrow_table()
        if deletes == "soft":
            copy = copy.filter(pa.compute.invert(copy.column(DELETED)))
        assert _rows(copy) == _rows(source)
        assert all(check.passed for check in result.get_asset_check_evaluations())
        keys = copy.column(PARTITION).to_pylist()
        days = [f"{t:%Y-%m-%d}" for t in copy.column("event_time").to_pylist()]
        assert keys == days  # every row in its own window

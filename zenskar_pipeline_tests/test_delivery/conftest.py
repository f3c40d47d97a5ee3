"""A usage table in the local warehouse whose copy is delivered to the local Zenskar API: every type a usage
event can hold, NULLs, non-ASCII text, wall-clock times on both sides of a DST change; landed for real
through the runner before each test, which then delivers through Dagster (or the engine itself)."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.zenskar_api import LocalZenskarApi
from zenskar_pipeline import runner
from zenskar_pipeline.config import PipelineConfig
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config, validate_streams
from zenskar_pipeline_tests.conftest import databricks_resource

SLUG = "api_calls"
SCHEMA = {
    "quantity": "Int64",
    "amount": "Decimal",
    "ratio": "Float64",
    "metric": "String",
    "billable": "Bool",
    "day": "Date32",
    "seen_at": "DateTime64",
}
ROW_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("quantity", pa.int64()),
        pa.field("amount", pa.decimal128(38, 18)),
        pa.field("ratio", pa.float64()),
        pa.field("metric", pa.string()),
        pa.field("billable", pa.bool_()),
        pa.field("day", pa.date32()),
        pa.field("seen_at", pa.timestamp("us")),  # TIMESTAMP_NTZ: wall-clock time in America/New_York
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
STREAMS = """\
destination:
  uri: {uri}
streams:
  - table: {table}
    sync_mode: incremental_append_deduped
    cursor_field: updated_at
    primary_key: [event_id]
    partitions:
      field: event_time
      granularity: daily
      start: "2026-03-01"
      timezone: America/New_York
    deliver:
      api_slug: api_calls
      customer_id: customer_id
      timestamp: event_time
      data:
        quantity: quantity
        amount: amount
        ratio: ratio
        metric: metric
        billable: billable
        day: day
        seen_at: seen_at
"""
# 2026-03-08 is the day New York's clocks go forward (02:00 -> 03:00 EST -> EDT).
DAY = "2026-03-08"


def row(event_id: str, hour: int, **values: Any) -> dict[str, Any]:
    """An event of March 8th (New York) at `hour` UTC, every field set unless `values` say otherwise."""
    when = dt.datetime(2026, 3, 8, hour, tzinfo=dt.UTC)
    base = {
        "event_id": event_id,
        "customer_id": "cust-1",
        "event_time": when,
        "quantity": 3,
        "amount": Decimal("12345678901234567890.123456789012345678"),
        "ratio": 0.1,
        "metric": "api.calls",
        "billable": True,
        "day": dt.date(2026, 3, 8),
        "seen_at": dt.datetime(2026, 3, 8, 1, 30),  # before the change: EST, -05:00
        "updated_at": when,
    }
    return {**base, **values}


ROWS = [
    row("e1", 6),
    row("e2", 7, metric="Grüße, 東京 🚀", seen_at=dt.datetime(2026, 3, 8, 3, 30)),  # after: EDT, -04:00
    row("e3", 8, quantity=None, amount=None, ratio=None, metric=None, billable=None, day=None, seen_at=None),
    row("e4", 9, amount=Decimal("-0.000000000000000001"), ratio=-2.5e-300, billable=False),
    row("e5", 10, customer_id="cust-2", metric='quote " and \\ and \n newline'),
]


@dataclass
class Delivery:
    """A landed copy and the local API it delivers to."""

    warehouse: LocalWarehouse
    config_file: Path
    config: PipelineConfig
    state: DiscoveredCatalog
    api: LocalZenskarApi
    table: str
    folder: Path

    def definitions(self, **resources: Any) -> dg.Definitions:
        zenskar = resources.pop("zenskar", None) or self.zenskar()
        return build_definitions(
            self.config, self.state, databricks=databricks_resource(self.warehouse), zenskar=zenskar
        )

    def zenskar(self, **settings: Any) -> ZenskarResource:
        values = {
            "api_url": self.api.api_url,
            "organisation": self.api.organisation,
            "api_key": self.api.api_key,
        }
        return ZenskarResource(
            **{**values, "requests_per_second": None, "max_backoff_seconds": 0.1, **settings}
        )

    def sync(self, partition: str = DAY) -> None:
        """Land the source's current rows of `partition` in the copy (a real sync through the runner)."""
        defs = self.definitions()
        stream = validate_streams(self.config, self.state)[0]
        with dg.DagsterInstance.ephemeral() as instance:
            result = runner.run_plan(
                defs, runner.plan_stream(stream, runner.Selection(partition=partition)), instance
            )
        assert result.ok, result.error

    def deliver(
        self, partition: str = DAY, instance: dg.DagsterInstance | None = None, **settings: Any
    ) -> dg.ExecuteInProcessResult:
        """Materialize the delivery asset of `partition` through Dagster."""
        defs = self.definitions(zenskar=self.zenskar(**settings))
        key = dg.AssetKey(["zenskar", *self.table.split("."), "delivered"])
        return dg.materialize(
            [defs.resolve_assets_def(key)],
            partition_key=partition,
            instance=instance or dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )

    def received(self) -> list[dict[str, Any]]:
        return self.api.events(SLUG)

    def copy_uri(self) -> str:
        return str(self.folder / "destination" / self.table.replace(".", "/"))


def figures(result: dg.ExecuteInProcessResult) -> dict[str | None, dict[str, Any]]:
    node = result.all_node_events[0].node_name
    return {
        m.partition: {name: value.value for name, value in m.metadata.items()}
        for m in result.asset_materializations_for_node(node)
    }


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {check.check_name: check for check in result.get_asset_check_evaluations()}


def data_of(event: dict[str, Any]) -> str:
    return json.dumps(event["data"], sort_keys=True, default=str)


_TABLES = iter(range(10_000))


@pytest.fixture
def delivery(warehouse: LocalWarehouse, zenskar_api: LocalZenskarApi, tmp_path: Path) -> Iterator[Delivery]:
    """A fresh source table (its own name per test), its copy of March 8th landed, the API's slug defined."""
    table = f"zdeliver.billing.usage_{tmp_path.name.lower().replace('-', '_')[:40]}_{next(_TABLES)}"
    tables.create_table(
        warehouse.root, table, pa.Table.from_pylist(ROWS, ROW_SCHEMA), primary_key=["event_id"]
    )
    config_file = tmp_path / "streams.yaml"
    config_file.write_text(textwrap.dedent(STREAMS.format(uri=tmp_path / "destination", table=table)))
    config = load_config(config_file, env={})
    with databricks_resource(warehouse).session() as session:
        state = discover_tables(session, config)
    save_state(state, config.state_path)
    zenskar_api.define(SLUG, SCHEMA)
    project = Delivery(warehouse, config_file, config, state, zenskar_api, table, tmp_path)
    project.sync()
    yield project

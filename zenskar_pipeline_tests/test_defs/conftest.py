"""A streams file over tables in the local warehouse, discovered for real, ready for `build_definitions`."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.config import PipelineConfig
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, discover_tables
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource

EVENTS = "zdefs.billing.usage_events"
CUSTOMERS = "zdefs.billing.customers"
READINGS = "zdefs.metering.readings"


def utc(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, tzinfo=dt.UTC)


EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string()),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("quantity", pa.int64()),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def event(event_id: str, day: int, hour: int = 0) -> dict[str, object]:
    when = utc(day, hour)
    return {"event_id": event_id, "customer_id": "c1", "event_time": when, "quantity": 1, "updated_at": when}


STREAMS = """\
destination:
  uri: {uri}
streams:
  - table: {events}
    sync_mode: incremental_append_deduped
    cursor_field: updated_at
    primary_key: [event_id]
    partitions:
      field: event_time
      granularity: daily
      start: "2026-01-01"
  - table: {customers}
    sync_mode: full_refresh
    columns: {{exclude: [email]}}
    partitions: null
  - table: {readings}
    sync_mode: incremental_append
    cursor_field: read_at
    partitions:
      field: read_at
      granularity: hourly
      start: "2026-01-01-00:00"
"""


def source_tables(root: Path) -> None:
    """Written once per warehouse: three days of events (1, 2 and 3 rows), two customers, no readings."""
    if (root / "zdefs").exists():
        return
    rows = [event("a1", 1), event("b1", 2), event("b2", 2, 5), event("c1", 3), event("c2", 3), event("c3", 3)]
    tables.create_table(
        root, EVENTS, pa.Table.from_pylist(rows, EVENT_SCHEMA), primary_key=["event_id"], comment="Usage"
    )
    customers = pa.schema([("customer_id", pa.string()), ("email", pa.string()), ("plan", pa.string())])
    people = [{"customer_id": "c1", "email": "x@example.com", "plan": "pro"}, {"customer_id": "c2"}]
    tables.create_table(root, CUSTOMERS, pa.Table.from_pylist(people, customers))
    readings = pa.schema([("meter", pa.string()), ("read_at", pa.timestamp("us", tz="UTC"))])
    tables.create_table(root, READINGS, readings.empty_table())


@dataclass
class Project:
    config: PipelineConfig
    state: DiscoveredCatalog
    databricks: DatabricksResource
    destination: Path


def write_streams(folder: Path) -> Path:
    path = folder / "streams.yaml"
    text = STREAMS.format(uri=folder / "destination", events=EVENTS, customers=CUSTOMERS, readings=READINGS)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(warehouse: LocalWarehouse, tmp_path: Path) -> Iterator[Project]:
    source_tables(warehouse.root)
    config = load_config(write_streams(tmp_path), env={})
    databricks = databricks_resource(warehouse)
    with databricks.session() as session:
        state = discover_tables(session, config)
    yield Project(config, state, databricks, tmp_path / "destination")

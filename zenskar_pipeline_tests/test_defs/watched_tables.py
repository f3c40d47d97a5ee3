"""Builders for sensor and schedule tests: event tables under a catalog of the test module's own in the
session's warehouse, a streams file over them, discovered for real, and the definitions built from it."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import yaml

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.defs.requests import RANGE_END, RANGE_START
from zenskar_pipeline.defs.sensor import SENSOR_NAME
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource

_numbers = itertools.count()

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_time", pa.timestamp("us", tz="UTC")),
        pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        pa.field("quantity", pa.int64()),
    ]
)


def utc(day: int, hour: int = 0, month: int = 1) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, tzinfo=dt.UTC)


def event(event_id: str, day: int, *, hour: int = 0, updated: dt.datetime | None = None) -> dict[str, Any]:
    """A row of `EVENTS` on January `day`; `updated_at` defaults to the event time."""
    when = utc(day, hour)
    return {"event_id": event_id, "event_time": when, "updated_at": updated or when, "quantity": 1}


def change_feed_stream(table: str, **settings: Any) -> dict[str, Any]:
    """A deduped change-feed stream, daily on `event_time` from 2026-01-01."""
    daily = {"field": "event_time", "granularity": "daily", "start": "2026-01-01"}
    return {
        "table": table,
        "sync_mode": "incremental_append_deduped",
        "change_feed": True,
        "primary_key": ["event_id"],
        "partitions": daily,
        **settings,
    }


def cursor_stream(table: str, **settings: Any) -> dict[str, Any]:
    """A deduped cursor stream on `updated_at`, daily on `event_time` from 2026-01-01."""
    daily = {"field": "event_time", "granularity": "daily", "start": "2026-01-01"}
    return {
        "table": table,
        "sync_mode": "incremental_append_deduped",
        "cursor_field": "updated_at",
        "primary_key": ["event_id"],
        "partitions": daily,
        **settings,
    }


@dataclass
class Pipeline:
    """Tables under `catalog`, and definitions over streams of them with copies under `folder`."""

    warehouse: LocalWarehouse
    folder: Path
    catalog: str

    def table(self, rows: list[dict[str, Any]], *, change_feed: bool = True) -> str:
        """A new events table holding `rows` (a CREATE version, then one write when there are rows)."""
        name = f"{self.catalog}.billing.events_{next(_numbers)}"
        data = pa.Table.from_pylist(rows, EVENTS)
        tables.create_table(
            self.warehouse.root, name, data, primary_key=["event_id"], change_data_feed=change_feed
        )
        return name

    def upsert(self, name: str, rows: list[dict[str, Any]]) -> None:
        tables.upsert(self.warehouse.root, name, pa.Table.from_pylist(rows, EVENTS), ["event_id"])

    def definitions(self, *streams: dict[str, Any]) -> dg.Definitions:
        """`build_definitions` over `streams` (streams-file entries), discovered from the warehouse."""
        path = self.folder / "streams.yaml"
        document = {"destination": {"uri": str(self.folder / "destination")}, "streams": list(streams)}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        config = load_config(path, env={})
        databricks = databricks_resource(self.warehouse)
        with databricks.session() as session:
            state = discover_tables(session, config)
        return build_definitions(config, state, databricks=databricks)

    def destination(self, table: str) -> str:
        return str(self.folder / "destination" / table.replace(".", "/"))


@dataclass(frozen=True)
class Tick:
    """One sensor evaluation: its requests as (job, partition key or range, run key), its cursor, events."""

    run_requests: list[dg.RunRequest]
    cursor: str | None
    asset_events: list[Any]

    @property
    def asked(self) -> list[tuple[str, str]]:
        """Per request: (stream tag, `key` or `first..last` or `whole`), sorted."""
        out = []
        for request in self.run_requests:
            tags = request.tags
            if request.partition_key is not None:
                keys = request.partition_key
            elif RANGE_START in tags:
                keys = f"{tags[RANGE_START]}..{tags[RANGE_END]}"
            else:
                keys = "whole"
            out.append((tags["zenskar/stream"], keys))
        return sorted(out)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None = None) -> Tick:
    """Evaluate the sensor as the daemon does, with the definitions' own `databricks` resource."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    resources = {name: (defs.resources or {})[name] for name in ("databricks", "destination")}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
    data = sensor.evaluate_tick(context)
    return Tick(list(data.run_requests or []), data.cursor, list(data.asset_events))


def latest_key(defs: dg.Definitions, table: str) -> str:
    """The stream's latest partition now, as Dagster's own partitions definition has it."""
    key = dg.AssetKey(["zenskar", *table.split(".")])
    definition = defs.resolve_assets_def(key).partitions_def
    assert definition is not None
    last = definition.get_last_partition_key()
    assert last is not None
    return last

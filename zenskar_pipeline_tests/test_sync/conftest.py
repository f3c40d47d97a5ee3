"""Builders for sync tests: a source table in the local warehouse, its stream, and a session to read it."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.config import (
    Deletes,
    Granularity,
    OnMissingHistory,
    PartitionSpec,
    ResolvedStream,
    StreamSettings,
    SyncMode,
    TableName,
)
from zenskar_pipeline.databricks import DatabricksSession
from zenskar_pipeline.databricks.discovery import DiscoveredColumn, DiscoveredTable
from zenskar_pipeline.destinations import DeltaDestination
from zenskar_pipeline.sync import PartitionReport, Scope, run_sync
from zenskar_pipeline_tests.conftest import databricks_resource

_names = itertools.count()


def utc(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 1, day, hour, minute, tzinfo=dt.UTC)


def full_type(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "timestamp" if kind.tz else "timestamp_ntz"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_integer(kind):
        return "bigint"
    return "string"


@dataclass
class Source:
    """One source table and its copy: write rows with `append`/`upsert`, then `sync`."""

    warehouse: LocalWarehouse
    session: DatabricksSession
    name: str
    schema: pa.Schema
    stream: ResolvedStream
    primary_key: tuple[str, ...]

    def append(self, rows: list[dict[str, Any]]) -> None:
        tables.append(self.warehouse.root, self.name, pa.Table.from_pylist(rows, self.schema))

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        tables.upsert(
            self.warehouse.root, self.name, pa.Table.from_pylist(rows, self.schema), self.primary_key
        )

    def delete(self, predicate: str) -> None:
        tables.delete(self.warehouse.root, self.name, predicate)

    @property
    def table(self) -> DiscoveredTable:
        columns = tuple(
            DiscoveredColumn(f.name, full_type(f.type), f.nullable, i) for i, f in enumerate(self.schema)
        )
        return DiscoveredTable(TableName.parse(self.name), columns, self.primary_key)

    @property
    def destination(self) -> DeltaDestination:
        return DeltaDestination.for_stream(self.stream)

    def sync(
        self, *keys: str, stream: ResolvedStream | None = None, rebuild: bool = False
    ) -> list[PartitionReport]:
        stream = stream or self.stream
        scope = Scope.partitions(keys) if keys else Scope.whole_table()
        destination = DeltaDestination.for_stream(stream)
        return run_sync(self.session, stream, self.table, destination, scope, rebuild=rebuild)

    def landed(self, *columns: str, uri: str | None = None) -> list[tuple[Any, ...]]:
        table = DeltaTable(uri or self.stream.destination_uri).to_pyarrow_table(columns=list(columns))
        rows = [tuple(row[c] for c in columns) for row in table.to_pylist()]
        return sorted(rows, key=lambda r: tuple((v is not None, v or 0) for v in r))

    def copy_version(self) -> int | None:
        return self.destination.version()


@pytest.fixture
def session(warehouse: LocalWarehouse) -> Iterator[DatabricksSession]:
    with databricks_resource(warehouse).session() as opened:
        yield opened


@pytest.fixture
def make_source(warehouse: LocalWarehouse, session: DatabricksSession, tmp_path: Path) -> Any:
    def make(
        schema: pa.Schema,
        mode: SyncMode,
        *,
        cursor: str | None = "updated_at",
        primary_key: tuple[str, ...] = (),
        partition_field: str | None = None,
        granularity: Granularity = Granularity.DAILY,
        timezone: str = "UTC",
        lag: dt.timedelta = dt.timedelta(0),
        start: dt.datetime = dt.datetime(2026, 1, 1),
        change_feed: bool = False,
        change_data_feed: bool | None = None,  # the source table's feed; default: as change_feed
        deletes: Deletes = Deletes.HARD,
        on_missing_history: OnMissingHistory = OnMissingHistory.ERROR,
    ) -> Source:
        name = f"zsync.s.t{next(_names)}"
        feed_on = change_feed if change_data_feed is None else change_data_feed
        tables.create_table(
            warehouse.root, name, schema.empty_table(), primary_key=primary_key, change_data_feed=feed_on
        )
        partitions = None
        if partition_field is not None:
            partitions = PartitionSpec(partition_field, granularity, start, timezone, include_current=True)
        settings = StreamSettings(
            sync_mode=mode,
            cursor_field=cursor,
            cursor_lag=lag,
            primary_key=primary_key or None,
            partitions=partitions,
            change_feed=change_feed,
            deletes=deletes,
            on_missing_history=on_missing_history,
        )
        uri = str(tmp_path / name.replace(".", "_"))
        stream = ResolvedStream(TableName.parse(name), settings, uri, "zsync_s", name.split(".")[-1])
        return Source(warehouse, session, name, schema, stream, primary_key)

    return make

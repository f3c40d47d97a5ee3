"""Two Dagster runs of one partition of an incremental_append stream at once (as a manual backfill and a
schedule tick outside the run queue would): both plan from the same empty copy, and each row lands once."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_end_to_end.races import race_two_runs

EVENTS = "ze2e_race.metering.events"
COPY_KEY = dg.AssetKey(["zenskar", "ze2e_race", "metering", "events"])
PARTITION = "2026-01-02"


def _events() -> list[dict[str, Any]]:
    """Keyless meter readings, two of them identical: a multiset the copy must hold exactly."""
    start = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    rows = [
        {"meter": f"m{i % 7}", "read_at": start + dt.timedelta(minutes=i), "value": i} for i in range(200)
    ]
    return [*rows, dict(rows[0])]


def test_two_runs_of_one_partition_at_once_land_each_row_once(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    source = pa.Table.from_pylist(_events())
    tables.create_table(warehouse.root, EVENTS, source)
    config_file = tmp_path / "streams.yaml"
    config_file.write_text(
        f"destination: {{uri: {tmp_path / 'destination'}}}\n"
        "streams:\n"
        f"  - table: {EVENTS}\n"
        "    sync_mode: incremental_append\n"
        "    cursor_field: read_at\n"
        "    partitions: {granularity: daily, start: '2026-01-01'}\n"
    )
    config = load_config(config_file, env={})
    databricks = databricks_resource(warehouse)
    with databricks.session() as session:
        state = discover_tables(session, config)
    asset = build_definitions(config, state, databricks=databricks).resolve_assets_def(COPY_KEY)

    reports = race_two_runs(warehouse, asset, PARTITION)

    copy = tmp_path / "destination" / "ze2e_race" / "metering" / "events"
    landed = DeltaTable(str(copy)).to_pyarrow_table()
    columns = source.column_names
    as_rows = Counter(tuple(row[c] for c in columns) for row in landed.select(columns).to_pylist())
    assert as_rows == Counter(tuple(row[c] for c in columns) for row in source.to_pylist())
    assert sorted(report["rows_written"] for report in reports) == [0, source.num_rows]

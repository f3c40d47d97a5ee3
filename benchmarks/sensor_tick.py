"""Benchmark: ticks of `delta_version_sensor` over 2,000 streams on 2,000 small tables of a local warehouse
(in its own process): statements the warehouse received and seconds, when nothing changed (target <= 10 s)
and when one table changed (a change-feed stream, then a cursor stream with a copy).

Half the streams follow the change feed, half a cursor; all are daily partitions. Each tick is evaluated as
the daemon does (`evaluate_tick` on a real instance, the same sensor definition from tick to tick, as in one
code server), reading the cursor the previous tick returned. The first tick sees every table for the first
time; the quiet ticks after it show the steady state.

    .venv/bin/python benchmarks/sensor_tick.py [--streams 2000] [--workers 4] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import psutil
import pyarrow as pa
import yaml
from _support import (
    databricks_resource,
    local_warehouse,
    machine_note,
    print_table,
    verdict,
    warehouse_counts,
)

from zenskar_devtools.local_warehouse import tables
from zenskar_pipeline.databricks import DatabricksResource, DatabricksSession

CATALOG = "main"
SCHEMA = "bench_sensor"
DAYS = 10
ROWS_PER_TABLE = 100
TARGET_SECONDS = 10.0
SCHEMA_ARROW = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        pa.field("event_time", pa.timestamp("us", "UTC")),
        pa.field("updated_at", pa.timestamp("us", "UTC")),
        pa.field("quantity", pa.int64()),
    ]
)
OPENED: list[int] = []  # one entry per session the sensor opened


class CountingDatabricks(DatabricksResource):
    """The product's resource, counting the sessions it opens (the warehouse counts the statements)."""

    @contextmanager
    def session(self) -> Iterator[DatabricksSession]:
        OPENED.append(1)
        with super().session() as opened:
            yield opened


def rows(first_id: int, count: int, updated: dt.datetime | None = None) -> pa.Table:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    events = []
    for n in range(first_id, first_id + count):
        when = start + dt.timedelta(hours=(n * 7) % (DAYS * 24))
        events.append({"event_id": n, "event_time": when, "updated_at": updated or when, "quantity": n})
    return pa.Table.from_pylist(events, SCHEMA_ARROW)


def table_name(index: int) -> str:
    return f"{CATALOG}.{SCHEMA}.t{index:04d}"


def stream_entry(index: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "table": table_name(index),
        "sync_mode": "incremental_append_deduped",
        "primary_key": ["event_id"],
        "partitions": {"field": "event_time", "granularity": "daily", "start": "2026-01-01"},
    }
    if index % 2 == 0:
        entry["change_feed"] = True
    else:
        entry["cursor_field"] = "updated_at"
    return entry


def build(root: Path, folder: Path, info: dict[str, Any], streams: int) -> dg.Definitions:
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.defs import build_definitions
    from zenskar_pipeline.streams import load_config

    path = folder / "streams.yaml"
    document = {
        "destination": {"uri": str(folder / "destination")},
        "streams": [stream_entry(i) for i in range(streams)],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(path, env={})
    plain = databricks_resource(info)
    with plain.session() as session:
        state = discover_tables(session, config)
    counting = CountingDatabricks(**plain.model_dump())
    return build_definitions(config, state, databricks=counting)


def tick(
    defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None, info: dict[str, Any]
) -> dict[str, Any]:
    """One evaluation, with its wall-clock seconds and the CPU seconds of this process and the server's."""
    from zenskar_pipeline.defs.sensor import SENSOR_NAME

    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    resources = {name: (defs.resources or {})[name] for name in ("databricks", "destination")}
    (server,) = psutil.Process().children()  # the warehouse, started by `local_warehouse`
    OPENED.clear()
    warehouse_counts(info, reset=True)
    server_before, client_before = _cpu(server), time.process_time()
    started = time.perf_counter()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
    data = sensor.evaluate_tick(context)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "client_cpu": time.process_time() - client_before,
        "server_cpu": _cpu(server) - server_before,
        "statements": warehouse_counts(info)["statements"],
        "sessions": len(OPENED),
        "runs": len(data.run_requests or []),
        "cursor": data.cursor,
    }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def copy_one_cursor_stream(defs: dg.Definitions, instance: dg.DagsterInstance, index: int) -> None:
    """A real sync of one cursor stream's partitions, so that its changed tick has a high-water mark."""
    job = defs.resolve_job_def("zenskar_sync_daily_2026_01_01_UTC")
    tags = {
        "dagster/asset_partition_range_start": "2026-01-01",
        "dagster/asset_partition_range_end": "2026-01-10",
    }
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    copy = dg.AssetKey(["zenskar", *table_name(index).split(".")])
    ran = job.execute_in_process(instance=instance, tags=tags, run_config=quiet, asset_selection=[copy])
    assert ran.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4, help="ZENSKAR_PIPELINE_SENSOR_WORKERS")
    parser.add_argument("--repeat", type=int, default=3, help="ticks when nothing changed")
    parser.add_argument("--quick", action="store_true", help="20 streams, one repeat")
    args = parser.parse_args()
    streams, repeat = (20, 1) if args.quick else (args.streams, args.repeat)
    os.environ["ZENSKAR_PIPELINE_SENSOR_WORKERS"] = str(args.workers)
    logging.disable(logging.INFO)  # the sensor logs a line per new version: not figures
    print(machine_note())
    with tempfile.TemporaryDirectory() as tmp:
        root, folder = Path(tmp) / "warehouse", Path(tmp) / "project"
        folder.mkdir()
        for index in range(streams):
            tables.create_table(
                root,
                table_name(index),
                rows(0, ROWS_PER_TABLE),
                primary_key=["event_id"],
                change_data_feed=True,
            )
        with local_warehouse(root) as info, dg.instance_for_test() as instance:
            defs = build(root, folder, info, streams)
            copy_one_cursor_stream(defs, instance, 1)
            results: list[tuple[str, dict[str, Any]]] = []
            first = tick(defs, instance, None, info)
            results.append(("first sight (no cursor)", first))
            cursor = first["cursor"]
            quiet = [tick(defs, instance, cursor, info) for _ in range(repeat)]
            results += [("nothing changed", q) for q in quiet]

            tables.upsert(
                root, table_name(0), rows(3, 1).set_column(3, "quantity", pa.array([-1])), ["event_id"]
            )
            changed_feed = tick(defs, instance, cursor, info)
            results.append(("one change-feed table changed", changed_feed))
            cursor = changed_feed["cursor"]

            # A late update of an old row (January 3) with a new cursor.
            late = rows(10, 1, updated=dt.datetime(2026, 1, 20, tzinfo=dt.UTC))
            tables.upsert(root, table_name(1), late, ["event_id"])
            changed_cursor = tick(defs, instance, cursor, info)
            results.append(("one cursor table changed", changed_cursor))

    print(f"sensor tick over {streams} streams ({streams} tables), {args.workers} workers")
    print_table(
        ("tick", "statements", "sessions", "runs", "seconds", "client CPU s", "server CPU s"),
        [
            (
                name,
                r["statements"],
                r["sessions"],
                r["runs"],
                f"{r['seconds']:.3f}",
                f"{r['client_cpu']:.2f}",
                f"{r['server_cpu']:.2f}",
            )
            for name, r in results
        ],
    )
    worst = max(q["seconds"] for q in quiet)
    median = statistics.median(q["seconds"] for q in quiet)
    print(
        f"nothing changed: median {median:.3f} s, worst {worst:.3f} s, {quiet[0]['statements']} statements "
        f"(target <= {TARGET_SECONDS:g} s: {verdict(worst <= TARGET_SECONDS)})"
    )
    print(
        f"one table changed: change feed {changed_feed['statements']} statements, "
        f"{changed_feed['seconds']:.3f} s; cursor {changed_cursor['statements']} statements, "
        f"{changed_cursor['seconds']:.3f} s"
    )


if __name__ == "__main__":
    main()

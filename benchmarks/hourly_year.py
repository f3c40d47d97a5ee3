"""Benchmark: a year of hourly partitions (8,760 windows, 20,000 rows, `incremental_append`) synced by
whole `zenskar-pipeline sync` processes, as a user runs them: the first sync, then one that lands nothing.
Also what each sends the warehouse (statements, SQL text, bound values) and what Dagster records (events).

Targets: first sync <= 15 s, a sync that lands nothing <= 8 s; statements and SQL text the same for 90 and
8,760 partitions (measured side by side: a 90-hour copy of the same shape in the same run).

    .venv/bin/python benchmarks/hourly_year.py [--rows 20000] [--hours 8760] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import cli_environment, machine_note, print_table, verdict, warehouse_counts

TABLE = "main.bench.hourly"
CLI = str(Path(sys.executable).with_name("zenskar-pipeline"))
STREAMS = """\
destination:
  uri: {destination}
streams:
  - table: {table}
    sync_mode: incremental_append
    cursor_field: updated_at
    primary_key: [event_id]
    partitions:
      field: event_time
      granularity: hourly
      start: "{start}"
      include_current: false
"""


def write_source(root: Path, rows: int, first_hour: dt.datetime, hours: int) -> None:
    """`rows` events spread evenly over `hours` hours from `first_hour`."""
    import numpy as np
    import pyarrow as pa

    from zenskar_devtools.local_warehouse import tables

    numbers = np.arange(rows, dtype=np.int64)
    start_us = int(first_hour.timestamp() * 1_000_000)
    event_us = start_us + numbers * (hours * 3_600_000_000 // max(rows, 1))
    data = pa.table(
        {
            "event_id": pa.array(numbers),
            "customer_id": pa.array([f"cust-{n % 97}" for n in range(rows)]),
            "event_time": pa.array(event_us).cast(pa.timestamp("us", "UTC")),
            "updated_at": pa.array(event_us + 60_000_000).cast(pa.timestamp("us", "UTC")),
            "quantity": pa.array(numbers % 13),
        }
    )
    tables.create_table(root, TABLE, data, primary_key=["event_id"])


def events_recorded(home: Path) -> int:
    """Rows of the Dagster instance's event log (SQLite), across its runs (not the index, which repeats
    the asset events)."""
    total = 0
    for database in (home / "history" / "runs").glob("*.db"):
        if database.name == "index.db":
            continue
        with sqlite3.connect(database) as connection:
            total += connection.execute("SELECT count(*) FROM event_logs").fetchone()[0]
    return total


def sync(folder: Path, info: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One `zenskar-pipeline sync` process: its seconds, what it sent, what it printed."""
    warehouse_counts(info, reset=True)
    started = time.perf_counter()
    done = subprocess.run([CLI, "sync"], cwd=folder, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"sync failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    sent = warehouse_counts(info)
    keys = ("statements", "statement_bytes", "largest_statement_bytes", "parameters")
    return {"seconds": seconds, **{key: sent[key] for key in keys}}


def project(tmp: Path, name: str, info: dict[str, Any], start: dt.datetime) -> tuple[Path, dict[str, str]]:
    """A project folder with its streams file and Dagster home, and the environment a user's shell has."""
    folder = tmp / name
    streams = STREAMS.format(destination=folder / "copies", table=TABLE, start=f"{start:%Y-%m-%d-%H:%M}")
    env = cli_environment(folder, info)
    (folder / "streams.yaml").write_text(streams)
    return folder, env


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--hours", type=int, default=8_760)
    parser.add_argument("--quick", action="store_true", help="48 hours, 500 rows: checks the script works")
    args = parser.parse_args()
    rows, hours = (500, 48) if args.quick else (args.rows, args.hours)
    small = min(90, hours)
    note = machine_note()
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    first_hour = now - dt.timedelta(hours=hours)
    from _support import local_warehouse

    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-hourly-") as name:
        tmp = Path(name)
        write_source(tmp / "warehouse", rows, first_hour, hours)
        with local_warehouse(tmp / "warehouse") as info:
            for label, start in (("small", now - dt.timedelta(hours=small)), ("year", first_hour)):
                folder, env = project(tmp, label, info, start)
                first = sync(folder, info, env)
                noop = sync(folder, info, env)
                results[label] = {
                    "first": first,
                    "noop": noop,
                    "events": events_recorded(folder / ".dagster_home"),
                }
    year, small_run = results["year"], results["small"]
    print(f"a year of hourly partitions: {hours:,} windows, {rows:,} rows, incremental_append, whole CLIs")
    print(note)
    header = ("run", "partitions", "seconds", "statements", "SQL bytes", "largest statement", "bound values")
    lines = []
    for label, count in (("year", hours), ("small", small)):
        for run in ("first", "noop"):
            figures = results[label][run]
            lines.append(
                (
                    f"{run} sync",
                    f"{count:,}",
                    f"{figures['seconds']:.1f}",
                    f"{figures['statements']}",
                    f"{figures['statement_bytes']:,}",
                    f"{figures['largest_statement_bytes']:,}",
                    f"{figures['parameters']:,}",
                )
            )
    print_table(header, lines)
    recorded = f"{year['events']:,} ({hours:,} partitions), {small_run['events']:,} ({small})"
    print(f"Dagster event-log rows after both syncs: {recorded}")
    first_s, noop_s = year["first"]["seconds"], year["noop"]["seconds"]
    flat = (
        all(
            year[run][key] == small_run[run][key]
            for run in ("first", "noop")
            for key in ("statements", "parameters")
        )
        and year["first"]["largest_statement_bytes"] <= small_run["first"]["largest_statement_bytes"] * 1.1
    )
    print("targets:")
    print(f"  first sync <= 15 s: {first_s:.1f} s, {verdict(first_s <= 15)}")
    print(f"  a sync that lands nothing <= 8 s: {noop_s:.1f} s, {verdict(noop_s <= 8)}")
    print(
        f"  statements and SQL size do not grow with the partitions ({small} vs {hours:,}): {verdict(flat)}"
    )


if __name__ == "__main__":
    main()

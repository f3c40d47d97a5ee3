"""Benchmark: a full sync (full_refresh, whole table) of 1M and 5M rows x 8 columns from the local warehouse
into Delta, against (a) the raw connector reading the same rows with `fetchmany_arrow` and discarding them
and (b) the Row path: `fetchall()` -> pandas -> `write_deltalake`.

Each size gets its own warehouse process; (a), the sync and (b) each run in a fresh child process, so that
every peak RSS is that reader's alone. Times cover connecting, reading and writing, not interpreter start.

    .venv/bin/python benchmarks/sync_full.py [--rows 1000000 5000000] [--row-path-max-rows 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    TABLE,
    connect,
    databricks_resource,
    load_connector,
    local_warehouse,
    machine_note,
    print_table,
    report,
    rss_mb,
    run_child,
    streams_config,
    verdict,
    warm_up,
    write_events,
)

from zenskar_pipeline.databricks.resource import DEFAULT_BATCH_ROWS

RAW_BATCH_ROWS = DEFAULT_BATCH_ROWS  # the page size the sync fetches with, so both read alike


def child_raw(info: dict[str, Any], destination: Path) -> None:
    """(a): every row through the plain connector, nothing kept, nothing written."""
    load_connector()
    started = time.perf_counter()
    rows = 0
    with connect(info) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TABLE}")
        while (batch := cursor.fetchmany_arrow(RAW_BATCH_ROWS)).num_rows:
            rows += batch.num_rows
    report(rows=rows, seconds=time.perf_counter() - started)


def child_sync(info: dict[str, Any], destination: Path) -> None:
    """The product: discovery first (untimed), then one `run_sync` of the whole table on a new session."""
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.destinations import DeltaDestination
    from zenskar_pipeline.streams import validate_streams
    from zenskar_pipeline.sync import Scope, run_sync

    config = streams_config(destination, "full_refresh", partitioned=False)
    resource = databricks_resource(info)
    with resource.session() as session:
        state = discover_tables(session, config)
    (stream,) = validate_streams(config, state)
    table = state.get(stream.name)
    assert table is not None
    before = rss_mb()
    started = time.perf_counter()
    with resource.session() as session:
        reports = run_sync(session, stream, table, DeltaDestination.for_stream(stream), Scope.whole_table())
    report(
        rows=sum(r.rows_written for r in reports),
        seconds=time.perf_counter() - started,
        statements=session.statements_issued,
        rss_before_mb=before,
    )


def child_row_path(info: dict[str, Any], destination: Path) -> None:
    """(b): what a sync without Arrow does: Row objects, a DataFrame, then Delta."""
    import pandas as pd
    from deltalake import write_deltalake

    load_connector()
    started = time.perf_counter()
    with connect(info) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TABLE}")
        rows = cursor.fetchall()
        columns = [column[0] for column in cursor.description]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    write_deltalake(str(destination / "row_path"), frame, mode="overwrite")
    report(rows=len(frame), seconds=time.perf_counter() - started)


CHILDREN = {"raw": child_raw, "sync": child_sync, "row_path": child_row_path}


def measure(rows: int, row_path: bool, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sync-full-") as tmp:
        root = Path(tmp) / "warehouse"
        write_events(root, rows)
        with local_warehouse(root) as info:
            if not quick:  # fairness between readers; a quick run measures nothing
                warm_up(info)
            settings = json.dumps(info)
            figures: dict[str, Any] = {"rows": rows}
            for name in ("raw", "sync", "row_path") if row_path else ("raw", "sync"):
                destination = Path(tmp) / f"destination-{name}"
                figures[name] = run_child(__file__, "--child", name, settings, str(destination))
                if figures[name]["rows"] != rows:
                    raise AssertionError(f"{name} moved {figures[name]['rows']:,} rows, not {rows:,}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--row-path-max-rows",
        type=int,
        default=1_000_000,
        help="measure the Row path (b) only up to this size: above it, it is slow and holds every row",
    )
    parser.add_argument("--quick", action="store_true", help="one tiny size: checks the script works")
    parser.add_argument(
        "--child", nargs=3, metavar=("KIND", "SETTINGS", "DESTINATION"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        kind, settings, destination = args.child
        CHILDREN[kind](json.loads(settings), Path(destination))
        return
    note = machine_note()
    # One tiny size: quick runs check that every reader works, not how memory grows.
    sizes = [3_000] if args.quick else args.rows
    row_max = 3_000 if args.quick else args.row_path_max_rows
    results = [measure(rows, rows <= row_max, args.quick) for rows in sizes]

    print("full sync (full_refresh, unpartitioned, run_sync) of rows x 8 columns, local warehouse -> Delta")
    print(note)
    print(f"(a) raw: connector cursor, fetchmany_arrow({RAW_BATCH_ROWS:,}), rows discarded")
    print("(b) Row path: fetchall() -> pandas.DataFrame -> write_deltalake")
    header = ["rows", "sync rows/s", "(a) rows/s", "sync/(a) time", "(b) rows/s", "(b)/sync time"]
    header += ["sync s", "sync peak MB", "(a) peak MB", "(b) peak MB"]
    table = []
    for r in results:
        sync, raw, rows = r["sync"], r["raw"], r.get("row_path")
        table.append(
            [
                f"{r['rows']:,}",
                f"{r['rows'] / sync['seconds']:,.0f}",
                f"{r['rows'] / raw['seconds']:,.0f}",
                f"{sync['seconds'] / raw['seconds']:.2f}x",
                f"{r['rows'] / rows['seconds']:,.0f}" if rows else "-",
                f"{rows['seconds'] / sync['seconds']:.1f}x" if rows else "-",
                f"{sync['seconds']:.1f}",
                f"{sync['peak_rss_mb']:.0f}",
                f"{raw['peak_rss_mb']:.0f}",
                f"{rows['peak_rss_mb']:.0f}" if rows else "-",
            ]
        )
    print_table(header, table)
    skipped = [f"{r['rows']:,}" for r in results if "row_path" not in r]
    if skipped:
        print(f"(b) not measured at {', '.join(skipped)} rows (--row-path-max-rows {row_max:,})")
    print(
        "sync RSS before the sync (imports and discovery done): "
        + ", ".join(f"{r['sync']['rss_before_mb']:.0f} MB at {r['rows']:,}" for r in results)
    )
    print("targets:")
    for r in results:
        ratio = r["sync"]["seconds"] / r["raw"]["seconds"]
        print(f"  sync time <= 1.5x (a) at {r['rows']:,} rows: {ratio:.2f}x, {verdict(ratio <= 1.5)}")
    for r in results:
        if "row_path" in r:
            speedup = r["row_path"]["seconds"] / r["sync"]["seconds"]
            print(
                f"  sync >= 8x faster than (b) at {r['rows']:,} rows: {speedup:.1f}x, {verdict(speedup >= 8)}"
            )
    if len(results) > 1:
        first, last = results[0], results[-1]
        growth = last["sync"]["peak_rss_mb"] / first["sync"]["peak_rss_mb"]
        print(
            f"  sync peak RSS at {last['rows']:,} <= 1.3x at {first['rows']:,}: {growth:.2f}x, "
            f"{verdict(growth <= 1.3)}"
        )


if __name__ == "__main__":
    main()

"""Benchmark: a change-feed sync of 1% changed rows in a 5M-row table against a full re-read of the table
(target >= 20x faster), through `run_sync` on daily partitions.

Two shapes of 1%: corrections of the most recent days' events (how usage data changes: late meter readings
and re-rated events land near the present), and 1% of rows picked at random over every day. The second
touches every file of the copy, so a copy-on-write merge rewrites most of it; it is printed for honesty,
the target is about the first.

    .venv/bin/python benchmarks/change_feed.py [--rows 5000000] [--quick]
    BENCH_PROFILE=1 ...    # also a profile of the change-feed run of recent corrections (stderr)
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    DAYS,
    TABLE,
    daily_keys,
    databricks_resource,
    event_batches,
    local_warehouse,
    machine_note,
    report,
    run_child,
    streams_config,
    verdict,
    warm_up,
)

PROFILE_ENV = "BENCH_PROFILE"  # set: the child prints a cProfile of the recent change-feed run to stderr


def _changed_rows(root: Path, rows: int, shape: str, seed: int) -> int:
    """Upsert 1% of the rows as corrections (quantity and updated_at change); returns how many."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    from zenskar_devtools.local_warehouse import tables

    count = max(1, rows // 100)
    rng = np.random.default_rng(seed)
    if shape == "recent":  # ids follow event_time: the last ids are the most recent days
        ids = np.arange(rows - 3 * count, rows, dtype=np.int64)
        ids = np.sort(rng.choice(ids, size=count, replace=False))
    else:
        ids = np.sort(rng.choice(rows, size=count, replace=False).astype(np.int64))
    source = DeltaTable(str(tables.open_table(root, TABLE).table_uri))
    picked = source.to_pyarrow_dataset().to_table(filter=pc.field("event_id").isin(pa.array(ids)))
    bumped = pc.add(picked.column("updated_at"), pa.scalar(3_600_000_000, pa.duration("us")))
    quantity = pc.cast(
        pc.multiply(pc.cast(picked.column("quantity"), pa.float64()), 1.5), pa.decimal128(18, 6)
    )
    picked = picked.set_column(picked.schema.get_field_index("updated_at"), "updated_at", bumped)
    picked = picked.set_column(picked.schema.get_field_index("quantity"), "quantity", quantity)
    tables.upsert(root, TABLE, picked, key=["event_id"])
    return picked.num_rows


def child(info: dict[str, Any], root: Path, destination: Path, rows: int) -> None:
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.destinations import DeltaDestination
    from zenskar_pipeline.streams import validate_streams
    from zenskar_pipeline.sync import Scope, run_sync

    resource = databricks_resource(info)
    keys = daily_keys(DAYS)
    figures: dict[str, Any] = {}

    def sync(label: str, mode: str, change_feed: bool, copy_name: str) -> None:
        config = streams_config(destination / copy_name, mode, partitioned=True)
        if change_feed:
            (entry,) = config.streams
            settings = dataclasses.replace(entry.settings, change_feed=True, cursor_field=None)
            config = dataclasses.replace(config, streams=(dataclasses.replace(entry, settings=settings),))
        with resource.session() as session:
            state = discover_tables(session, config)
        (stream,) = validate_streams(config, state)
        table = state.get(stream.name)
        assert table is not None
        profile = cProfile.Profile() if label == "recent_changes" and os.environ.get(PROFILE_ENV) else None
        started = time.perf_counter()
        if profile is not None:
            profile.enable()
        with resource.session() as session:
            reports = run_sync(
                session, stream, table, DeltaDestination.for_stream(stream), Scope.partitions(keys)
            )
        if profile is not None:
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
        figures[label] = {
            "seconds": time.perf_counter() - started,
            "statements": session.statements_issued,
            "rows_read": sum(r.rows_read for r in reports),
            "rows_written": sum(r.rows_written for r in reports),
            "partitions_reported": len(reports),
        }

    sync("full_reread", "full_refresh", False, "full")
    for shape, seed in (("recent", 1), ("random", 2)):
        sync(f"{shape}_snapshot", "incremental_append_deduped", True, shape)
        figures[f"{shape}_changed"] = _changed_rows(root, rows, shape, seed)
        sync(f"{shape}_changes", "incremental_append_deduped", True, shape)
    report(**figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--quick", action="store_true", help="a tiny table: checks the script works")
    parser.add_argument(
        "--child", nargs=3, metavar=("SETTINGS", "ROOT", "DESTINATION"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    rows = 20_000 if args.quick else args.rows
    if args.child:
        child(json.loads(args.child[0]), Path(args.child[1]), Path(args.child[2]), rows)
        return
    from zenskar_devtools.local_warehouse import tables

    note = machine_note()
    with tempfile.TemporaryDirectory(prefix="bench-change-feed-") as tmp:
        root = Path(tmp) / "warehouse"
        tables.create_table(root, TABLE, event_batches(rows), primary_key=["event_id"], change_data_feed=True)
        with local_warehouse(root) as info:
            warm_up(info)
            child_args = [
                "--rows",
                str(rows),
                "--child",
                json.dumps(info),
                str(root),
                str(Path(tmp) / "copies"),
            ]
            result = run_child(__file__, *child_args)
    full = result["full_reread"]
    print(
        f"change-feed sync of 1% changed rows in a {rows:,}-row table vs a full re-read "
        f"(run_sync, {DAYS} daily partitions)"
    )
    print(note)
    print(
        f"  full re-read (full_refresh, every partition): {full['seconds']:.2f} s, "
        f"{full['rows_written']:,} rows, {full['statements']} statements"
    )
    ratios = {}
    for shape, what in (
        ("recent", "corrections of the last 3 days' events"),
        ("random", "rows picked at random"),
    ):
        snapshot, changes = result[f"{shape}_snapshot"], result[f"{shape}_changes"]
        ratio = full["seconds"] / changes["seconds"]
        ratios[shape] = ratio
        print(f"  1% = {result[f'{shape}_changed']:,} {what}:")
        print(f"    first run (snapshot): {snapshot['seconds']:.2f} s, {snapshot['rows_written']:,} rows")
        print(
            f"    change-feed run: {changes['seconds']:.2f} s, {changes['rows_read']:,} changes applied, "
            f"{changes['statements']} statements, {changes['partitions_reported']} partitions reported; "
            f"{ratio:.1f}x faster than the full re-read"
        )
    print(f"  peak RSS of the child: {result['peak_rss_mb']:.0f} MB")
    print("targets:")
    print(
        f"  change-feed sync of 1% recent corrections >= 20x faster than a full re-read: "
        f"{ratios['recent']:.1f}x, {verdict(ratios['recent'] >= 20)}"
    )
    print(f"  (not a target) 1% at random over every day: {ratios['random']:.1f}x")


if __name__ == "__main__":
    main()

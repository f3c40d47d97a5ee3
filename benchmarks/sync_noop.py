"""Benchmark: an incremental sync of a 5M-row table that finds nothing new: statements issued (<= 2) and
seconds, after a first sync that landed every row.

Both syncs run through `run_sync` in one child process (the warehouse in another), each on its own session,
so that the statement count is the no-op's alone.

    .venv/bin/python benchmarks/sync_noop.py [--rows 5000000] [--mode incremental_append_deduped] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    databricks_resource,
    local_warehouse,
    machine_note,
    report,
    run_child,
    streams_config,
    verdict,
    warm_up,
    write_events,
)

MODES = ("incremental_append_deduped", "incremental_append")


def child(info: dict[str, Any], destination: Path, mode: str) -> None:
    """Discovery (untimed), the first sync that lands every row, then the sync that finds nothing new."""
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.destinations import DeltaDestination
    from zenskar_pipeline.streams import validate_streams
    from zenskar_pipeline.sync import Scope, run_sync

    config = streams_config(destination, mode, partitioned=False)
    resource = databricks_resource(info)
    with resource.session() as session:
        state = discover_tables(session, config)
    (stream,) = validate_streams(config, state)
    table = state.get(stream.name)
    assert table is not None
    copy = DeltaDestination.for_stream(stream)
    figures: dict[str, Any] = {}
    for run in ("first", "noop"):
        started = time.perf_counter()
        with resource.session() as session:
            (result,) = run_sync(session, stream, table, copy, Scope.whole_table())
        figures[run] = {
            "seconds": time.perf_counter() - started,
            "statements": session.statements_issued,
            "rows_read": result.rows_read,
            "rows_written": result.rows_written,
            "committed": result.destination_version,
            "copy_version": copy.version(),
        }
    # Where a no-op's time can go besides the warehouse: the high-water mark is one scan of the copy.
    started = time.perf_counter()
    copy.high_water_marks("updated_at")
    figures["mark_seconds"] = time.perf_counter() - started
    report(**figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--mode", choices=MODES, default=MODES[0])
    parser.add_argument("--quick", action="store_true", help="a tiny table: checks the script works")
    parser.add_argument("--child", nargs=2, metavar=("SETTINGS", "DESTINATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child[0]), Path(args.child[1]), args.mode)
        return
    note = machine_note()
    rows = 2_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="bench-sync-noop-") as tmp:
        root = Path(tmp) / "warehouse"
        write_events(root, rows)
        with local_warehouse(root) as info:
            if not args.quick:  # fairness between readers; a quick run measures nothing
                warm_up(info)
            child_args = ["--mode", args.mode, "--child", json.dumps(info), str(Path(tmp) / "destination")]
            result = run_child(__file__, *child_args)
    first, noop = result["first"], result["noop"]
    if first["rows_written"] != rows:
        raise AssertionError(f"the first sync wrote {first['rows_written']:,} rows, not {rows:,}")
    print(f"no-op incremental sync of {rows:,} rows x 8 columns ({args.mode}, unpartitioned, run_sync)")
    print(note)
    print(
        f"  first sync:  {first['rows_written']:,} rows written in {first['seconds']:.1f} s "
        f"({rows / first['seconds']:,.0f} rows/s), {first['statements']} statements"
    )
    print(
        f"  no-op sync:  {noop['statements']} statements, {noop['seconds']:.2f} s, "
        f"{noop['rows_read']:,} rows read, {noop['rows_written']:,} written, "
        + ("committed nothing" if noop["committed"] is None else f"committed version {noop['committed']}")
        + f" (copy version {first['copy_version']} -> {noop['copy_version']})"
    )
    mark = result["mark_seconds"]
    print(f"  the copy's high-water mark alone (one scan of the copy, timed after): {mark:.2f} s")
    print(f"  peak RSS of the child (both syncs): {result['peak_rss_mb']:.0f} MB")
    unchanged = noop["committed"] is None and noop["copy_version"] == first["copy_version"]
    print("targets:")
    print(f"  statements issued <= 2: {noop['statements']}, {verdict(noop['statements'] <= 2)}")
    print(f"  commits nothing: {verdict(unchanged)}")


if __name__ == "__main__":
    main()

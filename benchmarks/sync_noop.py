"""Benchmark: a keyed incremental sync that finds nothing new costs the same at any copy size. Copies of 1M
and 10M rows (8 columns, `incremental_append_deduped`, unpartitioned); for each, the first sync lands every
row in one child process, then the sync that finds nothing new runs, with its checks, in a fresh one.

Targets: wall(10M)/wall(1M) <= 1.2 and peak RSS(10M)/RSS(1M) <= 1.2 for the run that finds nothing new; at
most 2 statements for its sync; nothing committed.

    .venv/bin/python benchmarks/sync_noop.py [--rows 1000000 10000000] [--mode ...] [--quick]
    BENCH_PROFILE=1 ... --rows 4000000    # also a profile of the run that finds nothing new (stderr)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    databricks_resource,
    local_warehouse,
    machine_note,
    print_table,
    report,
    run_child,
    streams_config,
    verdict,
    warm_up,
    write_events,
)

MODES = ("incremental_append_deduped", "incremental_append")
PROFILE_ENV = "BENCH_PROFILE"  # set: the no-op's child prints a cProfile of the run to stderr


def child(info: dict[str, Any], destination: Path, mode: str, run: str, earlier: str) -> None:
    """`first`: land every row (untimed for the targets); `noop`: the sync that finds nothing new and the
    checks its mode carries, answering from the first run's checks as the Dagster step does."""
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.destinations import DeltaDestination
    from zenskar_pipeline.streams import validate_streams
    from zenskar_pipeline.sync import Scope, check_sync, run_sync
    from zenskar_pipeline.sync.checks import CheckOutcome

    config = streams_config(destination, mode, partitioned=False)
    resource = databricks_resource(info)
    with resource.session() as session:
        state = discover_tables(session, config)
    (stream,) = validate_streams(config, state)
    table = state.get(stream.name)
    assert table is not None
    copy = DeltaDestination.for_stream(stream)
    before = copy.version()
    previous = {name: CheckOutcome(name, passed, metadata) for name, passed, metadata in json.loads(earlier)}
    profile = cProfile.Profile() if run == "noop" and os.environ.get(PROFILE_ENV) else None
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    with resource.session() as session:
        (result,) = run_sync(session, stream, table, copy, Scope.whole_table())
        statements = session.statements_issued
        outcomes = check_sync(session, stream, table, copy, [result], earlier=previous)
        with_checks = session.statements_issued
    if profile is not None:
        profile.disable()
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
    report(
        run=run,
        seconds=time.perf_counter() - started,
        statements=statements,
        check_statements=with_checks - statements,
        rows_read=result.rows_read,
        rows_written=result.rows_written,
        committed=result.destination_version,
        copy_version_before=before,
        copy_version_after=copy.version(),
        checks=[(o.name, o.passed, o.metadata) for o in outcomes],
    )


def measure(rows: int, mode: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sync-noop-") as tmp:
        root = Path(tmp) / "warehouse"
        write_events(root, rows)
        with local_warehouse(root) as info:
            if not quick:  # fairness between sizes; a quick run measures nothing
                warm_up(info)
            destination = str(Path(tmp) / "destination")
            common = ["--mode", mode, "--child", json.dumps(info), destination]
            first = run_child(__file__, *common, "first", "[]")
            noop = run_child(__file__, *common, "noop", json.dumps(first["checks"]))
    if first["rows_written"] != rows:
        raise AssertionError(f"the first sync wrote {first['rows_written']:,} rows, not {rows:,}")
    return {"rows": rows, "first": first, "noop": noop}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--mode", choices=MODES, default=MODES[0])
    parser.add_argument("--quick", action="store_true", help="tiny tables: checks the script works")
    parser.add_argument("--child", nargs=4, metavar=("SETTINGS", "DESTINATION", "RUN", "EARLIER"))
    args = parser.parse_args()
    if args.child:
        settings, destination, run, earlier = args.child
        child(json.loads(settings), Path(destination), args.mode, run, earlier)
        return
    note = machine_note()
    sizes = [2_000, 4_000] if args.quick else args.rows
    results = [measure(rows, args.mode, args.quick) for rows in sizes]
    print(f"a sync that finds nothing new, {args.mode}, unpartitioned, 8 columns (run_sync and its checks)")
    print(note)
    header = ("copy rows", "first s", "first MB", "no-op s", "no-op MB", "statements", "check stmts")
    lines = [
        (
            f"{r['rows']:,}",
            f"{r['first']['seconds']:.1f}",
            f"{r['first']['peak_rss_mb']:.0f}",
            f"{r['noop']['seconds']:.2f}",
            f"{r['noop']['peak_rss_mb']:.0f}",
            str(r["noop"]["statements"]),
            str(r["noop"]["check_statements"]),
        )
        for r in results
    ]
    print_table(header, lines)
    small, large = results[0], results[-1]
    wall = large["noop"]["seconds"] / small["noop"]["seconds"]
    rss = large["noop"]["peak_rss_mb"] / small["noop"]["peak_rss_mb"]
    reused = [name for name, _, metadata in large["noop"]["checks"] if metadata.get("reused")]
    print(f"checks answered without reading the copy: {', '.join(reused) or 'none'}")
    unchanged = all(
        r["noop"]["committed"] is None and r["noop"]["copy_version_after"] == r["noop"]["copy_version_before"]
        for r in results
    )
    statements = max(r["noop"]["statements"] for r in results)
    print("targets:")
    print(f"  wall({large['rows']:,}) / wall({small['rows']:,}) <= 1.2: {wall:.2f}, {verdict(wall <= 1.2)}")
    print(f"  RSS({large['rows']:,}) / RSS({small['rows']:,}) <= 1.2: {rss:.2f}, {verdict(rss <= 1.2)}")
    print(f"  statements issued by the sync <= 2: {statements}, {verdict(statements <= 2)}")
    print(f"  commits nothing: {verdict(unchanged)}")


if __name__ == "__main__":
    main()

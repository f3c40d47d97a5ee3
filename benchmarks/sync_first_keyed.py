"""Benchmark: first syncs (no copy yet) of 1M and 10M rows x 8 columns, unpartitioned, through `run_sync`:
`incremental_append_deduped`, `incremental_append` with a key and without, each through the staged first
version (`Destination.create_copy`, "new") and through the merges chunk by chunk (`FIRST_VERSION_STAGED =
False`, "old"), against a full refresh of the same rows. Targets: for the keyed modes, new peak RSS at 10M
<= 1.3x at 1M and <= 1.5x the full refresh's, rows/s not below old.

Each size gets its own warehouse process (seeding 10M rows twice, keyed and key-less, takes minutes); every
sync runs in a fresh child process, so each peak RSS is that sync's alone. Times cover the sync only.

    .venv/bin/python benchmarks/sync_first_keyed.py [--rows 1000000 10000000] [--paths new old] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    START,
    TABLE,
    databricks_resource,
    event_batches,
    local_warehouse,
    machine_note,
    print_table,
    report,
    run_child,
    verdict,
    warm_up,
    write_events,
)

KEYLESS_TABLE = TABLE + "_keyless"  # the same rows, without a PRIMARY KEY constraint
# (label, sync_mode, keyed)
KINDS = (
    ("full refresh", "full_refresh", True),
    ("deduped", "incremental_append_deduped", True),
    ("append, key", "incremental_append", True),
    ("append, no key", "incremental_append", False),
)
TARGETED = ("deduped", "append, key")


def child(info: dict[str, Any], destination: Path, mode: str, keyed: bool, path: str) -> None:
    """One first sync of the whole table: discovery first (untimed), then `run_sync` on a new session."""
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.destinations import DeltaDestination
    from zenskar_pipeline.streams import parse_config, validate_streams
    from zenskar_pipeline.sync import Scope, cursor, run_sync

    cursor.FIRST_VERSION_STAGED = path == "new"
    stream = {
        "table": TABLE if keyed else KEYLESS_TABLE,
        "sync_mode": mode,
        "cursor_field": "updated_at",
        "primary_key": ["event_id"] if keyed else None,
    }
    data = {"destination": {"uri": str(destination)}, "streams": [stream]}
    config = parse_config(data, path=destination.parent / "streams.yaml", env={})
    resource = databricks_resource(info)
    with resource.session() as session:
        state = discover_tables(session, config)
    (resolved,) = validate_streams(config, state)
    table = state.get(resolved.name)
    assert table is not None
    started = time.perf_counter()
    with resource.session() as session:
        reports = run_sync(
            session, resolved, table, DeltaDestination.for_stream(resolved), Scope.whole_table()
        )
    seconds = time.perf_counter() - started
    commits = (DeltaDestination.for_stream(resolved).version() or 0) + 1
    report(rows=sum(r.rows_written for r in reports), seconds=seconds, commits=commits)


def measure(rows: int, paths: list[str], quick: bool) -> dict[str, dict[str, Any]]:
    """Every kind's first sync of `rows` rows (full refresh once: it has one path)."""
    from zenskar_devtools.local_warehouse import tables

    figures: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-first-keyed-") as tmp:
        root = Path(tmp) / "warehouse"
        write_events(root, rows)
        tables.create_table(root, KEYLESS_TABLE, event_batches(rows))
        with local_warehouse(root) as info:
            if not quick:  # fairness between readers; a quick run measures nothing
                warm_up(info)
            for label, mode, keyed in KINDS:
                for path in ["new"] if mode == "full_refresh" else paths:
                    destination = Path(tmp) / f"copy-{mode}-{keyed}-{path}"
                    args = ["--child", json.dumps(info), str(destination), mode, str(keyed), path]
                    figure = run_child(__file__, *args)
                    if figure["rows"] != rows:
                        raise AssertionError(f"{label} ({path}) wrote {figure['rows']:,} rows, not {rows:,}")
                    figures[f"{label} {path}"] = figure
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--paths", nargs="+", choices=["new", "old"], default=["new", "old"])
    parser.add_argument("--quick", action="store_true", help="two tiny sizes: checks the script works")
    parser.add_argument("--child", nargs=5, metavar=("SETTINGS", "DESTINATION", "MODE", "KEYED", "PATH"))
    args = parser.parse_args()
    if args.child:
        settings, destination, mode, keyed, path = args.child
        child(json.loads(settings), Path(destination), mode, keyed == "True", path)
        return
    note = machine_note()
    sizes = [2_000, 3_000] if args.quick else sorted(args.rows)
    results = {rows: measure(rows, args.paths, args.quick) for rows in sizes}

    print(f"first sync (no copy yet) of rows x 8 columns, unpartitioned, run_sync; starting {START:%Y-%m-%d}")
    print(note)
    print("new: the staged first version (create_copy, one commit); old: the merges, a million rows a commit")
    header = ["rows", "kind", "path", "seconds", "rows/s", "peak MB", "commits", "vs full refresh"]
    table = []
    for rows, figures in results.items():
        full = figures["full refresh new"]["peak_rss_mb"]
        for name, figure in figures.items():
            label, path = name.rsplit(" ", 1)
            table.append(
                [
                    f"{rows:,}",
                    label,
                    "-" if label == "full refresh" else path,
                    f"{figure['seconds']:.1f}",
                    f"{rows / figure['seconds']:,.0f}",
                    f"{figure['peak_rss_mb']:.0f}",
                    str(figure["commits"]),
                    f"{figure['peak_rss_mb'] / full:.2f}x",
                ]
            )
    print_table(header, table)
    print("targets (new path):")
    small, large = sizes[0], sizes[-1]
    for label in (*TARGETED, "append, no key"):
        aim = "" if label in TARGETED else " (no target: said as reached)"
        if "new" in args.paths and large != small:
            growth = (
                results[large][f"{label} new"]["peak_rss_mb"] / results[small][f"{label} new"]["peak_rss_mb"]
            )
            print(
                f"  {label}: peak RSS at {large:,} <= 1.3x at {small:,}: {growth:.2f}x, "
                f"{verdict(growth <= 1.3)}{aim}"
            )
        for rows in sizes:
            figures = results[rows]
            if "new" in args.paths:
                ratio = figures[f"{label} new"]["peak_rss_mb"] / figures["full refresh new"]["peak_rss_mb"]
                print(
                    f"  {label}: peak RSS <= 1.5x the full refresh at {rows:,}: {ratio:.2f}x, "
                    f"{verdict(ratio <= 1.5)}{aim}"
                )
            if "new" in args.paths and "old" in args.paths:
                new, old = figures[f"{label} new"]["seconds"], figures[f"{label} old"]["seconds"]
                print(
                    f"  {label}: rows/s not below old at {rows:,}: {old / new:.2f}x old's, "
                    f"{verdict(new <= old)}{aim}"
                )


if __name__ == "__main__":
    main()

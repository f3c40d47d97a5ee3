"""Benchmark: loading `zenskar_pipeline.definitions` with 2,000 configured streams (target: <= 5 s, zero
network calls), from a generated streams file and its discovery cache, with Databricks pointed at an
unroutable host.

A fresh child process per size installs an audit hook that counts (and refuses) every socket connect and
counts name lookups, then times `import dagster`, the import of `zenskar_pipeline.definitions` (streams file,
discovery cache, `build_definitions`) and `Definitions.validate_loadable` (the repository a code server
builds). One stream is loaded too, to show the cost per stream.

    .venv/bin/python benchmarks/definitions_load.py [--streams 2000] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import EVENT_COLUMNS, machine_note, print_table, report, run_child, verdict

UNROUTABLE_HOST = "10.255.255.1"  # a private address nothing answers on: a stray connect would hang, not fail
LOOKUPS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr")

# Kinds of stream, cycled through so that the file looks like a real one: mostly daily deduped event tables,
# some hourly, weekly and monthly windows, full refreshes, a column excluded.
DAILY_DEDUPED = [
    "sync_mode: incremental_append_deduped",
    "cursor_field: updated_at",
    'partitions: {field: event_time, granularity: daily, start: "2026-01-01"}',
]
KINDS = (
    *[DAILY_DEDUPED] * 6,
    [
        "sync_mode: incremental_append",
        "cursor_field: updated_at",
        'partitions: {field: event_time, granularity: hourly, start: "2026-01-01-00:00"}',
    ],
    [
        "sync_mode: incremental_append",
        "cursor_field: updated_at",
        'partitions: {field: event_time, granularity: weekly, start: "2025-12-28"}',
    ],
    ["sync_mode: full_refresh", 'partitions: {field: event_time, granularity: monthly, start: "2026-01-01"}'],
    ["sync_mode: full_refresh", "partitions: null", "columns: {exclude: [customer_id]}"],
)


def table_name(index: int) -> str:
    return f"lake{index % 5}.billing_{index // 5 % 10}.events_{index:04d}"


def write_project(folder: Path, streams: int) -> tuple[Path, Path]:
    """A streams file with `streams` explicit entries and the discovery cache `discover` would write."""
    from zenskar_pipeline.config import TableName
    from zenskar_pipeline.databricks.discovery import DiscoveredCatalog, DiscoveredColumn, DiscoveredTable
    from zenskar_pipeline.state import save_state

    lines = [f"destination:\n  uri: {folder / 'destination'}\nstreams:"]
    for index in range(streams):
        lines.append(f"  - table: {table_name(index)}")
        lines += [f"    {setting}" for setting in KINDS[index % len(KINDS)]]
    config = folder / "streams.yaml"
    config.write_text("\n".join(lines) + "\n")
    columns = tuple(
        DiscoveredColumn(name, kind, nullable=name != "event_id", ordinal=i)
        for i, (name, kind) in enumerate(EVENT_COLUMNS)
    )
    tables = [
        DiscoveredTable(
            TableName.parse(table_name(i)), columns, primary_key=("event_id",), table_type="MANAGED"
        )
        for i in range(streams)
    ]
    catalog = DiscoveredCatalog(
        tables={str(t.name): t for t in sorted(tables, key=lambda t: str(t.name))},
        catalogs=tuple(sorted({t.name.catalog for t in tables})),
        discovered_at=dt.datetime.now(dt.UTC),
    )
    state = folder / "state" / "discovery.json"
    save_state(catalog, state)
    return config, state


def child() -> None:
    connects: list[str] = []
    lookups: list[str] = []

    def audit(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.sendto"):
            connects.append(f"{event} {args[1]!r}")
            raise ConnectionRefusedError("definitions must load without the network")
        if event in LOOKUPS:
            lookups.append(f"{event} {args[0]!r}")

    sys.addaudithook(audit)
    started = time.perf_counter()
    import dagster as dg

    dagster_loaded = time.perf_counter()
    import zenskar_pipeline.definitions as definitions

    imported = time.perf_counter()
    dg.Definitions.validate_loadable(definitions.defs)
    validated = time.perf_counter()
    report(
        dagster_seconds=dagster_loaded - started,
        import_seconds=imported - dagster_loaded,
        validate_seconds=validated - imported,
        assets=len(definitions.defs.resolve_all_asset_keys()),
        connects=connects,
        lookups=lookups,
    )


def measure(streams: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-definitions-") as tmp:
        config, state = write_project(Path(tmp), streams)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "ZENSKAR_PIPELINE_"))}
        env |= {
            "ZENSKAR_PIPELINE_CONFIG": str(config),
            "ZENSKAR_PIPELINE_STATE": str(state),
            "DATABRICKS_SERVER_HOSTNAME": UNROUTABLE_HOST,
            "DATABRICKS_PORT": "443",
            "DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/unreachable",
            "DATABRICKS_TOKEN": "dapi-benchmark-not-a-token",
        }
        started = time.perf_counter()
        figures = run_child(__file__, "--child", env=env)
        figures["process_seconds"] = time.perf_counter() - started
    figures["streams"] = streams
    figures["load_seconds"] = figures["import_seconds"] + figures["validate_seconds"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="20 streams: checks the script works")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    note = machine_note()
    # A quick run skips the one-stream baseline (and so the cost per stream): it only checks the script works.
    sizes = [20] if args.quick else [1, args.streams]
    results = [measure(n) for n in sizes]
    for r in results:
        if r["assets"] != 2 * r["streams"]:
            raise AssertionError(
                f"{r['streams']} streams gave {r['assets']} assets, not a source and a copy each"
            )

    print(
        "loading zenskar_pipeline.definitions from a streams file and its discovery cache, each size a fresh"
    )
    print(f"process; Databricks at {UNROUTABLE_HOST}:443 (unroutable); socket connects counted and refused")
    print(note)
    header = ["streams", "import dagster s", "import definitions s", "validate_loadable s", "load s"]
    header += ["process s", "connects", "name lookups"]
    print_table(
        header,
        [
            [
                str(r["streams"]),
                f"{r['dagster_seconds']:.2f}",
                f"{r['import_seconds']:.2f}",
                f"{r['validate_seconds']:.2f}",
                f"{r['load_seconds']:.2f}",
                f"{r['process_seconds']:.2f}",
                str(len(r["connects"])),
                str(len(r["lookups"])),
            ]
            for r in results
        ],
    )
    one, many = results[0], results[-1]
    print("load s: import of definitions + validate_loadable (dagster already imported, as in a code server)")
    if many is not one:
        per_stream = (many["load_seconds"] - one["load_seconds"]) / (many["streams"] - one["streams"])
        print(f"cost per stream: {per_stream * 1000:.1f} ms")
    for r in results:
        for call in r["connects"] + r["lookups"]:
            print(f"  network call with {r['streams']} streams: {call}")
    network = len(many["connects"]) + len(many["lookups"])
    print("targets:")
    load = many["load_seconds"]
    print(f"  load with {many['streams']:,} streams <= 5 s: {load:.2f} s, {verdict(load <= 5)}")
    print(f"  zero network calls: {network}, {verdict(network == 0)}")


if __name__ == "__main__":
    main()

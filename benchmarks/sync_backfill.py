"""Benchmark: a 90-partition single-run backfill against one unpartitioned pull of the same rows (target:
<= 1.3x the time), both through Dagster: `dagster.materialize` of the stream's asset, the backfill as one run
with the partition-range tags (the asset's single-run backfill policy), as `zenskar-pipeline sync --from
--to` runs it.

Each run is a fresh child process with a fresh copy (the warehouse in its own process); times cover the
materialization only, not interpreter start, imports or discovery.

    .venv/bin/python benchmarks/sync_backfill.py [--rows 1000000] [--modes full_refresh ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    DAYS,
    TABLE,
    daily_keys,
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

MODES = ("full_refresh", "incremental_append_deduped", "incremental_append")


def child(info: dict[str, Any], destination: Path, mode: str, days: int | None) -> None:
    """One materialization: of `days` partitions as one run, or (None) of the unpartitioned stream."""
    import dagster as dg

    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.defs import build_definitions
    from zenskar_pipeline.runner import RANGE_END, RANGE_START, RUN_CONFIG

    config = streams_config(destination, mode, partitioned=days is not None)
    resource = databricks_resource(info)
    with resource.session() as session:
        state = discover_tables(session, config)
    defs = build_definitions(config, state, databricks=resource)
    asset = defs.resolve_assets_def(dg.AssetKey(["zenskar", *TABLE.split(".")]))
    keys = daily_keys(days or 1)
    tags = {RANGE_START: keys[0], RANGE_END: keys[-1]} if days is not None else {}
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        result = dg.materialize([asset], instance=instance, tags=tags, run_config=RUN_CONFIG)
        seconds = time.perf_counter() - started
    materialized = result.asset_materializations_for_node(result.all_node_events[0].node_name)
    reports: list[dict[str, Any]] = [
        {name: getattr(value, "value", value) for name, value in m.metadata.items()} for m in materialized
    ]
    report(
        seconds=seconds,
        partitions=len(reports),
        rows_written=sum(int(r["rows_written"]) for r in reports),
        # A range run is one read and one commit: every partition reports the run's seconds (run_seconds).
        engine_seconds=float(reports[0]["run_seconds"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=DAYS, help="daily partitions the rows spread over")
    parser.add_argument("--modes", choices=MODES, nargs="+", default=list(MODES[:2]))
    parser.add_argument(
        "--quick", action="store_true", help="a tiny table, 7 days, one mode: checks the script works"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("SETTINGS", "DESTINATION", "MODE", "SCOPE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        settings, destination, mode, scope = args.child
        child(json.loads(settings), Path(destination), mode, args.days if scope == "backfill" else None)
        return
    note = machine_note()
    rows, days = (7_000, 7) if args.quick else (args.rows, args.days)
    modes = ["full_refresh"] if args.quick else args.modes
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sync-backfill-") as tmp:
        root = Path(tmp) / "warehouse"
        write_events(root, rows, days)
        with local_warehouse(root) as info:
            if not args.quick:  # fairness between readers; a quick run measures nothing
                warm_up(info)
            for mode in modes:
                for scope in ("whole", "backfill"):
                    destination = Path(tmp) / f"destination-{mode}-{scope}"
                    child_args = [
                        "--days",
                        str(days),
                        "--child",
                        json.dumps(info),
                        str(destination),
                        mode,
                        scope,
                    ]
                    figures = run_child(__file__, *child_args)
                    if figures["rows_written"] != rows:
                        raise AssertionError(
                            f"{mode} {scope} wrote {figures['rows_written']:,} rows, not {rows:,}"
                        )
                    results[f"{mode} {scope}"] = figures

    print(f"{days}-partition single-run backfill vs one unpartitioned pull of the same {rows:,} rows,")
    print("both through Dagster: dagster.materialize of the stream's asset, the backfill as one run with the")
    print("partition-range tags")
    print(note)
    header = ["mode", "pull s", "backfill s", "backfill/pull", "engine pull s", "engine backfill s"]
    header += ["engine ratio", "backfill rows/s", "partitions reported"]
    table = []
    for mode in modes:
        whole, backfill = results[f"{mode} whole"], results[f"{mode} backfill"]
        table.append(
            [
                mode,
                f"{whole['seconds']:.2f}",
                f"{backfill['seconds']:.2f}",
                f"{backfill['seconds'] / whole['seconds']:.2f}x",
                f"{whole['engine_seconds']:.2f}",
                f"{backfill['engine_seconds']:.2f}",
                f"{backfill['engine_seconds'] / whole['engine_seconds']:.2f}x",
                f"{rows / backfill['seconds']:,.0f}",
                str(backfill["partitions"]),
            ]
        )
    print_table(header, table)
    print("(engine: the run_sync time the asset reports, run_seconds; the rest is Dagster's run around it)")
    print("targets:")
    for mode in modes:
        ratio = results[f"{mode} backfill"]["seconds"] / results[f"{mode} whole"]["seconds"]
        print(f"  backfill <= 1.3x the unpartitioned pull ({mode}): {ratio:.2f}x, {verdict(ratio <= 1.3)}")


if __name__ == "__main__":
    main()

"""Benchmark: dlt's `sql_database` source (pyarrow backend, through databricks-sqlalchemy) against this
project's `run_sync`, both reading the same table of the local warehouse into a local Delta table.

Cases, each measured for both in the same run:
  1a  a full load into an empty copy: dlt `write_disposition="replace"`, this project `full_refresh`;
  1b  the first run of the keyed incremental pipelines of case 2: also a full load into an empty copy;
  2   the keyed incremental after 1% of the rows changed (a newer `updated_at`, a new `amount`): dlt `merge`
      on `event_id` with `incremental("updated_at")`, this project `incremental_append_deduped` with cursor
      `updated_at` and key `event_id`, unpartitioned;
  3   the same pipelines right after case 2: nothing new.
Targets: every time ratio (this project / dlt) <= 1.0, and this project's peak RSS no higher than dlt's.
After every run, both copies must equal the source (rows, distinct keys, sum of `amount`).

Fairness: every run is a fresh child process (the warehouse in another), one side after the other on the
same warehouse; the sequence is repeated (--repeats, default 2) on fresh copies with dlt first in odd
repeats and this project first in even ones, and each figure is the best of the repeats. A time covers
everything after the imports (dlt's lazy ones included: `load_dlt`): for dlt, building the engine, source
and pipeline and `pipeline.run` (reflection, extract, normalize, load); for this project, opening the
session and `run_sync` with a `DeltaDestination`, as `sync_noop.py` measures it (its discovery, which a
deployment caches, is timed apart and printed); each side's whole child process is timed too. A peak RSS
is the child's whole process, imports included. Both use their defaults: dlt fetches 50,000 rows a chunk
(--dlt-chunk-size), this project 250,000. Also printed, not a target: a whole `zenskar-pipeline sync`
process (discovery, Dagster, checks) that finds nothing new, after case 3.

Needs the `bench` extra (dlt, databricks-sqlalchemy; `make bench` installs it).

    .venv/bin/python benchmarks/peer_dlt.py [--rows 1000000] [--repeats 2] [--dlt-chunk-size 50000] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import (
    DAYS,
    START,
    TABLE,
    cli_environment,
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
    warehouse_counts,
    warm_up,
    write_events,
)

CLI = str(Path(sys.executable).with_name("zenskar-pipeline"))
SIDES = ("dlt", "zp")  # zp: this project (zenskar-pipeline)
FULL, INCREMENTAL = "full", "incremental"
CASES = (
    ("1a", "full load (replace / full_refresh)", FULL),
    ("1b", "full load, first incremental run (merge / deduped)", INCREMENTAL),
    ("2", "1% changed (merge / deduped)", INCREMENTAL),
    ("3", "nothing new (merge / deduped)", INCREMENTAL),
)
ZP_MODES = {FULL: "full_refresh", INCREMENTAL: "incremental_append_deduped"}
DLT_PIPELINE = "peer_dlt"
DLT_DATASET = "bench"
STREAMS = """\
destination:
  uri: {destination}
streams:
  - table: {table}
    sync_mode: incremental_append_deduped
    cursor_field: updated_at
    primary_key: [event_id]
"""


def child_dlt(info: dict[str, Any], kind: str, work: Path, chunk_size: int) -> None:
    """dlt as its docs write it: an SQLAlchemy engine, `sql_table` with the pyarrow backend, a pipeline into
    the filesystem destination with `table_format="delta"`; its state and working folder under `work`."""
    import dlt
    import sqlalchemy as sa
    from dlt.sources.sql_database import sql_table

    load_dlt()
    catalog, schema, table = TABLE.split(".")
    before = rss_mb()
    started = time.perf_counter()
    url = sa.engine.URL.create(
        "databricks",
        username="token",
        password=info["access_token"],
        host=info["server_hostname"],
        query={"http_path": info["http_path"], "catalog": catalog, "schema": schema},
    )
    # databricks-sqlalchemy ignores the URL's port; the connector takes it, and the rest, from connect_args.
    connect_args = {
        "port": info["port"],
        "enable_telemetry": False,
        "_tls_trusted_ca_file": info["tls_ca_file"],
    }
    engine = sa.create_engine(url, connect_args=connect_args)
    hints: dict[str, Any] = {"write_disposition": "replace"}
    if kind == INCREMENTAL:
        incremental = dlt.sources.incremental("updated_at")
        hints = {"write_disposition": "merge", "primary_key": "event_id", "incremental": incremental}
    # schema=None and deferred reflection: the local warehouse refuses the SHOW VIEWS of dlt's table listing
    # and table-qualified column names; the session's catalog and schema (from the URL) name the table.
    source = sql_table(
        credentials=engine,
        table=table,
        schema=None,
        backend="pyarrow",
        defer_table_reflect=True,
        chunk_size=chunk_size,
        **hints,
    )
    pipeline = dlt.pipeline(
        pipeline_name=DLT_PIPELINE,
        pipelines_dir=str(work / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(work / "copy").as_uri()),
        dataset_name=DLT_DATASET,
    )
    load = pipeline.run(source, table_format="delta")
    seconds = time.perf_counter() - started
    load.raise_on_failed_jobs()
    engine.dispose()
    trace = pipeline.last_trace
    normalized = trace.last_normalize_info if trace is not None else None
    rows = normalized.row_counts.get(table, 0) if normalized is not None else 0
    report(
        seconds=seconds,
        rows_written=rows,
        rss_before_mb=before,
        copy=str(work / "copy" / DLT_DATASET / table),
    )


def load_dlt() -> None:
    """Import what dlt's run would load lazily (about 900 modules: pyarrow, pandas, deltalake, the connector,
    the dialect, dlt's plugins), so that dlt's timed section, like this project's, pays for no imports."""
    import databricks.sql.backend.thrift_backend
    import databricks.sqlalchemy  # noqa: F401
    import dlt.common.configuration.plugins
    import dlt.common.libs.deltalake
    import dlt.common.libs.pyarrow  # noqa: F401
    import pandas  # noqa: F401

    load_connector()


def child_zp(info: dict[str, Any], kind: str, work: Path, chunk_size: int) -> None:
    """This project through the library: discovery (timed apart), then one `run_sync` of the whole table
    into a `DeltaDestination`, on a new session."""
    from zenskar_pipeline.databricks.discovery import discover_tables
    from zenskar_pipeline.destinations import DeltaDestination
    from zenskar_pipeline.streams import validate_streams
    from zenskar_pipeline.sync import Scope, run_sync

    config = streams_config(work / "copies", ZP_MODES[kind], partitioned=False)
    resource = databricks_resource(info)
    started = time.perf_counter()
    with resource.session() as session:
        state = discover_tables(session, config)
    discovery = time.perf_counter() - started
    (stream,) = validate_streams(config, state)
    table = state.get(stream.name)
    assert table is not None
    copy = DeltaDestination.for_stream(stream)
    before = rss_mb()
    started = time.perf_counter()
    with resource.session() as session:
        reports = run_sync(session, stream, table, copy, Scope.whole_table())
    report(
        seconds=time.perf_counter() - started,
        rows_written=sum(r.rows_written for r in reports),
        rows_read=sum(r.rows_read for r in reports),
        run_statements=session.statements_issued,
        committed=any(r.destination_version is not None for r in reports),
        discovery_seconds=discovery,
        rss_before_mb=before,
        copy=copy.uri,
    )


def child_cli(work: Path) -> None:
    """A whole `zenskar-pipeline sync` in `work`, as a user's shell runs it (its settings in this process's
    environment). Its peak RSS is the largest of this process's children, from the kernel: this small
    process starts it, so no larger parent's memory is carried over into the figure."""
    import resource

    started = time.perf_counter()
    done = subprocess.run([CLI, "sync"], cwd=work, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"sync failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "cli_peak_rss_mb": peak_kb / 1024, "printed": done.stdout}))


CHILDREN = {"dlt": child_dlt, "zp": child_zp}


def change_rows(root: Path, rows: int, seed: int, stamp: dt.datetime) -> int:
    """Upsert 1% of the rows, picked at random over the whole table: `amount` + 1 and `updated_at` from
    `stamp` on, a millisecond apart (later than every cursor value so far); returns how many."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from zenskar_devtools.local_warehouse import tables

    count = max(1, rows // 100)
    ids = np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False).astype(np.int64))
    source = tables.open_table(root, TABLE).to_pyarrow_dataset()
    picked = source.to_table(filter=pc.field("event_id").isin(pa.array(ids))).sort_by("event_id")
    stamp_us = int(stamp.timestamp() * 1_000_000)
    updated = pa.array(stamp_us + np.arange(picked.num_rows, dtype=np.int64) * 1_000)
    picked = picked.set_column(
        picked.schema.get_field_index("updated_at"), "updated_at", updated.cast(pa.timestamp("us", "UTC"))
    )
    picked = picked.set_column(
        picked.schema.get_field_index("amount"), "amount", pc.add(picked.column("amount"), 1.0)
    )
    tables.upsert(root, TABLE, picked, key=["event_id"])
    return picked.num_rows


def fingerprint(path: str | Path) -> tuple[int, int, float]:
    """A Delta table's rows, distinct `event_id`s and sum of `amount` (read in the parent, after the run)."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    data = DeltaTable(str(path)).to_pyarrow_dataset().to_table(columns=["event_id", "amount"])
    amount = pc.sum(data.column("amount")).as_py() or 0.0
    return data.num_rows, pc.count_distinct(data.column("event_id")).as_py(), float(amount)


def same(copy: tuple[int, int, float], source: tuple[int, int, float]) -> bool:
    return copy[:2] == source[:2] and math.isclose(copy[2], source[2], rel_tol=1e-12)


def cli_folder(work: Path, info: dict[str, Any]) -> dict[str, str]:
    """The streams file and Dagster home of the CLI run in `work` (the incremental copy of case 2), and the
    environment a user's shell has for it."""
    (work / "streams.yaml").write_text(STREAMS.format(destination=work / "copies", table=TABLE))
    return cli_environment(work, info)


def child_env(side: str, work: Path) -> dict[str, str]:
    """dlt keeps its global and project folders under `work` and sends no telemetry."""
    if side != "dlt":
        return dict(os.environ)
    return {
        **os.environ,
        "DLT_DATA_DIR": str(work / "dlt_data"),
        "DLT_PROJECT_DIR": str(work),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
    }


Runs = dict[str, dict[str, list[dict[str, Any]]]]  # case -> side -> one child's report per repeat


def run_side(
    case: str, side: str, kind: str, work: Path, info: dict[str, Any], chunk_size: int
) -> dict[str, Any]:
    """One child run, with the statements the warehouse received from it and its copy checked against the
    source (raises when they differ)."""
    from zenskar_devtools.local_warehouse import tables

    source = fingerprint(tables.open_table(info["root"], TABLE).table_uri)
    work.mkdir(parents=True, exist_ok=True)
    warehouse_counts(info, reset=True)
    args = ["--dlt-chunk-size", str(chunk_size), "--child", side, kind, json.dumps(info), str(work)]
    started = time.perf_counter()
    result = run_child(__file__, *args, env=child_env(side, work))
    result["process_seconds"] = time.perf_counter() - started
    result["statements"] = warehouse_counts(info)["statements"]
    copy = fingerprint(result["copy"])
    result["matches"] = same(copy, source)
    if not result["matches"]:
        raise AssertionError(
            f"case {case}, {side}: the copy holds (rows, keys, sum of amount) {copy}, the source {source}"
        )
    return result


def run_cli(work: Path, info: dict[str, Any], copy: str) -> dict[str, Any]:
    """The CLI sync after case 3, on this project's incremental copy, which must still equal the source."""
    from zenskar_devtools.local_warehouse import tables

    result = run_child(__file__, "--child", "cli", str(work), env=cli_folder(work, info))
    source = fingerprint(tables.open_table(info["root"], TABLE).table_uri)
    if not same(fingerprint(copy), source):
        raise AssertionError(f"the CLI sync left {fingerprint(copy)} in the copy, the source holds {source}")
    return result


def measure(rows: int, repeats: int, chunk_size: int, quick: bool) -> dict[str, Any]:
    """Every case for both sides, then the CLI, `repeats` times, each repeat on fresh copies."""
    runs: Runs = {case: {side: [] for side in SIDES} for case, *_ in CASES}
    cli: list[dict[str, Any]] = []
    changed = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-dlt-") as name:
        tmp = Path(name)
        root = tmp / "warehouse"
        write_events(root, rows)
        with local_warehouse(root) as settings:
            info = {**settings, "root": str(root)}
            if not quick:  # fairness between readers; a quick run measures nothing
                warm_up(info)
            for repeat in range(repeats):
                folder = tmp / f"repeat-{repeat + 1}"
                order = SIDES if repeat % 2 == 0 else SIDES[::-1]
                for case, _, kind in CASES:
                    if case == "2":
                        stamp = START + dt.timedelta(days=DAYS + 1 + repeat)
                        changed.append(change_rows(root, rows, seed=repeat, stamp=stamp))
                    for side in order:
                        work = folder / f"{side}-{kind}"
                        runs[case][side].append(run_side(case, side, kind, work, info, chunk_size))
                cli.append(run_cli(folder / f"zp-{INCREMENTAL}", info, runs["3"]["zp"][-1]["copy"]))
    return {"runs": runs, "cli": cli, "changed": changed}


def best(results: list[dict[str, Any]], key: str) -> float:
    return min(float(result[key]) for result in results)


def per_case(runs: Runs, what: Any) -> str:
    """One figure per case, `what(case_runs)`, joined on one line."""
    return "; ".join(f"{case} {what(runs[case])}" for case, *_ in CASES)


def print_table_of_cases(runs: Runs) -> None:
    header = ["case", "dlt s", "zp s", "zp/dlt time", "dlt peak MB", "zp peak MB", "zp/dlt RSS"]
    header += ["dlt rows", "zp rows", "dlt stmts", "zp stmts"]
    table = []
    for case, label, _ in CASES:
        dlt_runs, zp_runs = runs[case]["dlt"], runs[case]["zp"]
        dlt_s, zp_s = best(dlt_runs, "seconds"), best(zp_runs, "seconds")
        dlt_mb, zp_mb = best(dlt_runs, "peak_rss_mb"), best(zp_runs, "peak_rss_mb")
        dlt_last, zp_last = dlt_runs[-1], zp_runs[-1]
        discovery = zp_last["statements"] - zp_last["run_statements"]
        table.append(
            [
                f"{case} {label}",
                f"{dlt_s:.2f}",
                f"{zp_s:.2f}",
                f"{zp_s / dlt_s:.2f}x",
                f"{dlt_mb:.0f}",
                f"{zp_mb:.0f}",
                f"{zp_mb / dlt_mb:.2f}x",
                f"{dlt_last['rows_written']:,}",
                f"{zp_last['rows_written']:,}",
                f"{dlt_last['statements']}",
                f"{discovery}+{zp_last['run_statements']}",
            ]
        )
    print_table(header, table)
    print(
        "  s: after the imports; peak MB: the child's whole process; rows: rows written; stmts: statements "
        "the warehouse received (zp: discovery + run_sync)"
    )


def print_figures(measured: dict[str, Any], rows: int, repeats: int, chunk_size: int, note: str) -> None:
    runs, cli = measured["runs"], measured["cli"]
    print(
        "dlt sql_database (pyarrow backend, databricks-sqlalchemy) vs zenskar-pipeline (zp) run_sync, "
        f"{rows:,} rows x 8 columns, local warehouse -> local Delta"
    )
    print(note)
    print(
        f"each run a fresh child process; best of {repeats} repeat(s) per figure (dlt first in repeats 1, 3, "
        f"..., zp first in 2, 4, ...); case 2 changed {', '.join(f'{n:,}' for n in measured['changed'])} "
        f"rows; dlt chunk_size {chunk_size:,}"
    )
    print_table_of_cases(runs)

    def seconds(sides: dict[str, list[dict[str, Any]]]) -> str:
        return " | ".join(" ".join(f"{r['seconds']:.2f}" for r in sides[side]) for side in SIDES)

    print(f"  every run's seconds, dlt | zp: {per_case(runs, seconds)}")
    print(
        "  RSS after the imports, before the run (best), dlt | zp: "
        + per_case(runs, lambda sides: " | ".join(f"{best(sides[s], 'rss_before_mb'):.0f}" for s in SIDES))
        + " MB"
    )
    print(
        "  whole child processes (interpreter, imports, run; zp with its discovery), best, dlt | zp: "
        + per_case(runs, lambda sides: " | ".join(f"{best(sides[s], 'process_seconds'):.1f}" for s in SIDES))
        + " s"
    )
    print(
        "  zp discovery, timed apart (a deployment caches it): "
        + per_case(runs, lambda sides: f"{best(sides['zp'], 'discovery_seconds'):.2f} s")
    )
    print(
        "zenskar-pipeline sync CLI after case 3, nothing new (whole process, not a target): "
        f"{best(cli, 'seconds'):.1f} s, peak RSS {best(cli, 'cli_peak_rss_mb'):.0f} MB"
    )
    # measure() raises at the first copy that differs from the source; this line says what was checked.
    matched = all(r["matches"] for sides in runs.values() for results in sides.values() for r in results)
    print(
        f"copies equal to the source after every run (rows, distinct keys, sum of amount): {verdict(matched)}"
    )
    print("targets:")
    for case, label, _ in CASES:
        dlt_runs, zp_runs = runs[case]["dlt"], runs[case]["zp"]
        ratio = best(zp_runs, "seconds") / best(dlt_runs, "seconds")
        dlt_mb, zp_mb = best(dlt_runs, "peak_rss_mb"), best(zp_runs, "peak_rss_mb")
        print(f"  {case} {label}: zp/dlt time <= 1.0: {ratio:.2f}x, {verdict(ratio <= 1.0)}")
        print(
            f"  {case} {label}: zp peak RSS <= dlt's: {zp_mb:.0f} MB vs {dlt_mb:.0f} MB, "
            f"{verdict(zp_mb <= dlt_mb)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=2, help="times the whole sequence runs; best kept")
    parser.add_argument(
        "--dlt-chunk-size", type=int, default=50_000, help="dlt's sql_table chunk_size (its default: 50,000)"
    )
    parser.add_argument("--quick", action="store_true", help="a tiny table, once: checks the script works")
    # A child run: SIDE KIND SETTINGS WORK (SIDE dlt or zp), or cli WORK.
    parser.add_argument("--child", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "cli":
            child_cli(Path(args.child[1]))
        else:
            side, kind, settings, work = args.child
            CHILDREN[side](json.loads(settings), kind, Path(work), args.dlt_chunk_size)
        return
    note = machine_note()
    rows = 2_000 if args.quick else args.rows
    repeats = 1 if args.quick else args.repeats
    measured = measure(rows, repeats, args.dlt_chunk_size, args.quick)
    print_figures(measured, rows, repeats, args.dlt_chunk_size, note)


if __name__ == "__main__":
    main()

"""Benchmark: reading through the local warehouse vs DuckDB directly on the same Delta data.

For each size (default 1M and 5M rows x 8 columns) it writes a Delta table, starts a fresh
`zenskar-pipeline warehouse serve` process, reads every row with the real connector's `fetchmany_arrow`
in a child process, then reads the same rows with DuckDB directly (also in a child process), and prints
rows/s, the through-server / direct ratio, and peak RSS of the client, the server and the direct reader.

    .venv/bin/python benchmarks/local_warehouse_read.py [--rows 1000000 5000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.compute as pc

from zenskar_devtools.local_warehouse import tables

CHUNK = 500_000

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from databricks import sql
    # VmHWM, not ru_maxrss: Linux carries a parent's peak RSS over exec into the child's ru_maxrss.
    def peak_rss_mb():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
    info = json.loads(sys.argv[1])
    started = time.perf_counter()
    rows = 0
    with sql.connect(server_hostname=info["server_hostname"], port=info["port"], http_path=info["http_path"],
                     access_token=info["access_token"], _tls_trusted_ca_file=info["tls_ca_file"],
                     enable_telemetry=False) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM main.bench.events")
        while (batch := cursor.fetchmany_arrow(100_000)).num_rows:
            rows += batch.num_rows
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started,
                      "peak_rss_mb": peak_rss_mb()}))
    """
)

DIRECT = textwrap.dedent(
    """
    import json, sys, time
    import duckdb
    # VmHWM, not ru_maxrss: Linux carries a parent's peak RSS over exec into the child's ru_maxrss.
    def peak_rss_mb():
        return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
    from deltalake import DeltaTable
    started = time.perf_counter()
    con = duckdb.connect()
    dataset = DeltaTable(sys.argv[1]).to_pyarrow_dataset()
    reader = con.sql("SELECT * FROM dataset").to_arrow_reader(100_000)
    rows = sum(batch.num_rows for batch in reader)
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started,
                      "peak_rss_mb": peak_rss_mb()}))
    """
)


def write_table(root: Path, rows: int) -> Path:
    """8 columns of billing-like data, written in chunks so the writer's memory stays flat."""

    def chunks() -> pa.RecordBatchReader:
        schema = pa.schema(
            [
                ("event_id", pa.int64()),
                ("customer_id", pa.string()),
                ("event_time", pa.timestamp("us", "UTC")),
                ("updated_at", pa.timestamp("us", "UTC")),
                ("metric", pa.string()),
                ("quantity", pa.decimal128(18, 6)),
                ("amount", pa.float64()),
                ("billable", pa.bool_()),
            ]
        )

        def batches():  # type: ignore[no-untyped-def]
            for start in range(0, rows, CHUNK):
                ids = pa.array(range(start, min(rows, start + CHUNK)), pa.int64())
                micros = pc.multiply(ids, 1_000_000)
                yield pa.record_batch(
                    [
                        ids,
                        pc.binary_join_element_wise(
                            "cust-", pc.cast(pc.bit_wise_and(ids, 4095), pa.string()), ""
                        ),
                        pc.cast(pc.add(micros, 1_767_225_600_000_000), pa.timestamp("us", "UTC")),
                        pc.cast(pc.add(micros, 1_767_225_660_000_000), pa.timestamp("us", "UTC")),
                        pc.choose(
                            pc.bit_wise_and(ids, 3), "api_calls", "compute_hours", "storage_gb", "seats"
                        ),
                        pc.cast(pc.divide(pc.cast(ids, pa.float64()), 7.0), pa.decimal128(18, 6)),
                        pc.multiply(pc.cast(ids, pa.float64()), 0.25),
                        pc.equal(pc.bit_wise_and(ids, 7), 0),
                    ],
                    schema=schema,
                )

        return pa.RecordBatchReader.from_batches(schema, batches())

    tables.create_table(root, "main.bench.events", chunks())
    return root / "main" / "bench" / "events"


def run_child(code: str, *args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = write_table(root, rows)
        server = subprocess.Popen(
            [sys.executable, "-m", "zenskar_pipeline.cli", "warehouse", "serve", "--root", str(root)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            info = json.loads(server.stdout.readline())
            process = psutil.Process(server.pid)
            baseline_mb = process.memory_info().rss / 2**20
            peak = [baseline_mb]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], process.memory_info().rss / 2**20)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            through = run_child(CLIENT, json.dumps(info))
            done.set()
            sampler.join()
        finally:
            server.terminate()
            server.wait(10)
        direct = run_child(DIRECT, str(path))
    assert through["rows"] == direct["rows"] == rows, (through, direct)
    return {
        "rows": rows,
        "server_rows_s": rows / through["seconds"],
        "direct_rows_s": rows / direct["seconds"],
        "ratio": direct["seconds"] / through["seconds"],
        "client_peak_mb": through["peak_rss_mb"],
        "server_peak_mb": peak[0],
        "server_idle_mb": baseline_mb,
        "direct_peak_mb": direct["peak_rss_mb"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    sizes = parser.parse_args().rows
    results = [measure(n) for n in sizes]
    print(
        f"{'rows':>10} {'server rows/s':>14} {'direct rows/s':>14} {'server/direct':>13} "
        f"{'client MB':>10} {'server MB':>10} {'direct MB':>10}"
    )
    for r in results:
        print(
            f"{r['rows']:>10,} {r['server_rows_s']:>14,.0f} {r['direct_rows_s']:>14,.0f} {r['ratio']:>13.3f} "
            f"{r['client_peak_mb']:>10.0f} {r['server_peak_mb']:>10.0f} {r['direct_peak_mb']:>10.0f}"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(
            f"server peak RSS {last['rows']:,} vs {first['rows']:,} rows: "
            f"{last['server_peak_mb'] / first['server_peak_mb']:.2f}x (target < 1.3x); "
            f"through-server speed at {first['rows']:,} rows: "
            f"1/{1 / first['ratio']:.1f} of direct (target >= 1/6)"
        )


if __name__ == "__main__":
    main()

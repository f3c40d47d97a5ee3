"""Shared by the sync benchmarks: the 8-column billing table they sync, the local warehouse in its own
process, child processes that report one JSON line, and the streams file and session they sync with."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from zenskar_pipeline.config import PipelineConfig
    from zenskar_pipeline.databricks import DatabricksResource

CHUNK_ROWS = 500_000
TABLE = "main.bench.events"
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 90  # every row's event_time falls in one of this many daily windows from START

# The columns as Unity Catalog names their types (`information_schema.columns.full_data_type`).
EVENT_COLUMNS = (
    ("event_id", "bigint"),
    ("customer_id", "string"),
    ("event_time", "timestamp"),
    ("updated_at", "timestamp"),
    ("metric", "string"),
    ("quantity", "decimal(18,6)"),
    ("amount", "double"),
    ("billable", "boolean"),
)


def event_batches(rows: int, days: int = DAYS) -> pa.RecordBatchReader:
    """`rows` billing events (EVENT_COLUMNS), built a chunk at a time from numpy ranges (never a Python
    loop per row): event_time spread evenly over `days` days from START, updated_at a minute later."""
    # Imported here, not at the top: the definitions-load child times its own imports and uses none of these.
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow_types = {
        "bigint": pa.int64(),
        "string": pa.string(),
        "timestamp": pa.timestamp("us", "UTC"),
        "decimal(18,6)": pa.decimal128(18, 6),
        "double": pa.float64(),
        "boolean": pa.bool_(),
    }
    schema = pa.schema([pa.field(name, arrow_types[kind]) for name, kind in EVENT_COLUMNS])
    start_us = int(START.timestamp() * 1_000_000)
    step_us = days * 86_400_000_000 // max(rows, 1)

    def chunks() -> Iterator[pa.RecordBatch]:
        for low in range(0, rows, CHUNK_ROWS):
            numbers = np.arange(low, min(rows, low + CHUNK_ROWS), dtype=np.int64)
            ids = pa.array(numbers)
            event_us = pa.array(start_us + numbers * step_us)
            yield pa.record_batch(
                [
                    ids,
                    pc.binary_join_element_wise("cust-", pc.cast(pa.array(numbers & 4095), pa.string()), ""),
                    pc.cast(event_us, pa.timestamp("us", "UTC")),
                    pc.cast(pc.add(event_us, 60_000_000), pa.timestamp("us", "UTC")),
                    pc.choose(pa.array(numbers & 3), "api_calls", "compute_hours", "storage_gb", "seats"),
                    pc.cast(pa.array(numbers / 7.0), pa.decimal128(18, 6)),
                    pa.array(numbers * 0.25),
                    pa.array((numbers & 7) == 0),
                ],
                schema=schema,
            )

    return pa.RecordBatchReader.from_batches(schema, chunks())


def write_events(root: Path, rows: int, days: int = DAYS) -> None:
    """The source table TABLE under the warehouse `root`, with `event_id` as its primary key."""
    from zenskar_devtools.local_warehouse import tables

    tables.create_table(root, TABLE, event_batches(rows, days), primary_key=["event_id"])


@contextmanager
def local_warehouse(root: Path) -> Iterator[dict[str, Any]]:
    """`zenskar-pipeline warehouse serve` in its own process, so that a client's RSS is the client's alone;
    yields the JSON line of connection settings it prints."""
    server = subprocess.Popen(
        [sys.executable, "-m", "zenskar_pipeline.cli", "warehouse", "serve", "--root", str(root)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line:
            raise RuntimeError(f"the local warehouse exited ({server.wait()}) before printing its settings")
        yield json.loads(line)
    finally:
        server.terminate()
        server.wait(10)


def cli_environment(folder: Path, info: dict[str, Any]) -> dict[str, str]:
    """A project folder's Dagster home (`folder/.dagster_home` with the local instance's `dagster.yaml`) and
    the environment a user's shell has for `zenskar-pipeline` there against the served warehouse."""
    from zenskar_devtools.local_warehouse.server import ConnectionInfo
    from zenskar_pipeline.runner import LOCAL_INSTANCE_SETTINGS

    home = folder / ".dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LOCAL_INSTANCE_SETTINGS, home / "dagster.yaml")
    served = ("server_hostname", "port", "http_path", "access_token", "tls_ca_file")
    connection = ConnectionInfo(**{key: info[key] for key in served}, client_id="", client_secret="")
    return {**os.environ, **connection.env(), "DAGSTER_HOME": str(home), "TZ": "UTC"}


def warehouse_counts(info: dict[str, Any], *, reset: bool = False) -> dict[str, int]:
    """What the local warehouse has received since its counts were last reset: statements, their SQL bytes,
    the largest, bound values; and its open sessions (`/_local/health`; `reset` starts counting afresh)."""
    import ssl
    import urllib.request

    url = f"https://{info['server_hostname']}:{info['port']}/_local/health"
    headers = {"Authorization": f"Bearer {info['access_token']}"}
    request = urllib.request.Request(url, headers=headers, method="DELETE" if reset else "GET")
    context = ssl.create_default_context(cafile=info["tls_ca_file"])
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        counts: dict[str, int] = json.loads(answer.read())
    return counts


def run_child(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `script` again in a fresh interpreter (its child mode); the last stdout line is its JSON report."""
    done = subprocess.run(
        [sys.executable, script, *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        what = f"{Path(script).name} {' '.join(args[:2])}"
        raise RuntimeError(f"child {what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    if os.environ.get("BENCH_PROFILE"):  # a child asked to profile prints it to stderr
        sys.stderr.write(done.stderr)
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def report(**figures: Any) -> None:
    """A child's one JSON line, with its peak RSS (the process's high-water mark, from the kernel)."""
    print(json.dumps({**figures, "peak_rss_mb": peak_rss_mb()}, default=str))


def peak_rss_mb() -> float:
    """This process's peak RSS since it started: VmHWM, which exec resets. `ru_maxrss` is no use in a child:
    Linux carries the pre-exec peak over, so a child of a parent holding 600 MB reports at least 600 MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource  # no procfs (macOS): ru_maxrss, in bytes there

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rss_mb() -> float:
    """This process's RSS now."""
    import psutil

    return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20


def databricks_resource(info: dict[str, Any]) -> DatabricksResource:
    """The product's connection resource with the settings the warehouse printed."""
    from zenskar_pipeline.databricks import DatabricksResource

    return DatabricksResource(
        server_hostname=info["server_hostname"],
        port=info["port"],
        http_path=info["http_path"],
        access_token=info["access_token"],
        tls_ca_file=info["tls_ca_file"],
    )


def load_connector() -> None:
    """Import what `databricks.sql` loads lazily on first connect, so that no timed section pays for it."""
    import databricks.sql.client  # noqa: F401


def warm_up(info: dict[str, Any]) -> None:
    """One small read, so that the warehouse's first-statement costs fall on no measured reader."""
    with connect(info) as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {TABLE} LIMIT 1")
        cursor.fetchall_arrow()


def connect(info: dict[str, Any]) -> Any:
    """A plain connector connection, as a user writes it (telemetry off: it would probe port 443)."""
    from databricks import sql

    return sql.connect(
        server_hostname=info["server_hostname"],
        port=info["port"],
        http_path=info["http_path"],
        access_token=info["access_token"],
        _tls_trusted_ca_file=info["tls_ca_file"],
        enable_telemetry=False,
    )


def streams_config(destination: Path, mode: str, *, partitioned: bool, table: str = TABLE) -> PipelineConfig:
    """A streams file with one stream over `table`: `mode`, cursor `updated_at`, key `event_id`, daily
    partitions on `event_time` from START when `partitioned`; parsed as the product parses the YAML."""
    from zenskar_pipeline.streams import parse_config

    partitions = {"field": "event_time", "granularity": "daily", "start": f"{START:%Y-%m-%d}"}
    stream = {
        "table": table,
        "sync_mode": mode,
        "cursor_field": "updated_at",
        "primary_key": ["event_id"],
        "partitions": partitions if partitioned else None,
    }
    data = {"destination": {"uri": str(destination)}, "streams": [stream]}
    return parse_config(data, path=destination.parent / "streams.yaml", env={})


def daily_keys(days: int) -> list[str]:
    """The Dagster keys of the first `days` daily partitions from START."""
    return [f"{START + dt.timedelta(days=day):%Y-%m-%d}" for day in range(days)]


def machine_note() -> str:
    """The machine's load when a benchmark starts: its figures are only as quiet as the machine was."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"machine: {os.cpu_count()} cores, load average {load:.1f} when the benchmark started"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns right-aligned under their headings."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))

"""Benchmark: delivering 1M usage events from a copy to the local Zenskar API (batches of 500, 4 requests at
once), against the API's own acceptance rate measured in the same run with a bare client (two rounds, each
the bare client then the delivery, averaged): the same batches,
already serialized, posted by the same number of threads with nothing else to do. Target: the delivery
sends >= 0.8 of the bare client's events per second.

The delivery is the engine the delivery asset runs (`zenskar_pipeline.delivery.deliver`): the copy read at
one version, the ledger read and the plan committed before sending, every answer committed to the ledger.
The API runs in its own process. A second, smaller delivery shows the `requests_per_second` bound holding.

    .venv/bin/python benchmarks/delivery.py [--events 1000000] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import urllib3
from _support import machine_note, print_table, verdict
from deltalake import write_deltalake

from zenskar_devtools.zenskar_api import LocalZenskarApi
from zenskar_pipeline.config import TableName
from zenskar_pipeline.databricks.discovery import DiscoveredColumn, DiscoveredTable
from zenskar_pipeline.delivery.deliver import DeliveryRun, deliver
from zenskar_pipeline.delivery.events import EventSource, identity_of, read_events
from zenskar_pipeline.delivery.ledger import DeliveryLedger
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.delivery.settings import events_of
from zenskar_pipeline.destinations import DeltaDestination
from zenskar_pipeline.streams import parse_config, validate_streams

SLUG = "api_calls"
SCHEMA = {"quantity": "Decimal", "metric": "String"}
CONCURRENCY = 4
ROUNDS = 2
BATCH = 500
WINDOW = "2026-01-01"
COLUMNS = (
    ("event_id", "bigint"),
    ("customer_id", "string"),
    ("event_time", "timestamp"),
    ("quantity", "decimal(18,6)"),
    ("metric", "string"),
    ("updated_at", "timestamp"),
)


def write_copy(uri: Path, events: int) -> None:
    """A deduped copy of one daily window holding `events` rows, as a sync lands them."""
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp() * 1_000_000)
    ids = np.arange(events, dtype=np.int64)
    times = pa.array(start + ids * (86_400_000_000 // max(events, 1)), pa.int64()).cast(
        pa.timestamp("us", "UTC")
    )
    quantity = pc.cast(pa.array(ids % 1000, pa.int32()), pa.decimal128(18, 6))
    metric = pc.take(pa.array(["api_calls", "compute_hours", "storage_gb", "seats"]), pa.array(ids % 4))
    customers = pc.take(pa.array([f"cus_{n:05d}" for n in range(2000)]), pa.array(ids % 2000))
    table = pa.table(
        {
            "event_id": ids,
            "customer_id": customers,
            "event_time": times,
            "quantity": quantity,
            "metric": metric,
            "updated_at": times,
            "_zenskar_partition": pa.array([WINDOW] * events, pa.string()),
            "_zenskar_source_version": pa.array([1] * events, pa.int64()),
        }
    )
    write_deltalake(str(uri), table, partition_by=["_zenskar_partition"])


def stream_and_source(destination: Path) -> tuple[Any, EventSource]:
    config = parse_config(
        {
            "destination": {"uri": str(destination)},
            "streams": [
                {
                    "table": "main.bench.usage",
                    "sync_mode": "incremental_append_deduped",
                    "cursor_field": "updated_at",
                    "primary_key": ["event_id"],
                    "partitions": {"field": "event_time", "granularity": "daily", "start": WINDOW},
                    "deliver": {
                        "api_slug": SLUG,
                        "customer_id": "customer_id",
                        "timestamp": "event_time",
                        "data": {"quantity": "quantity", "metric": "metric"},
                    },
                }
            ],
        },
        env={},
    )
    columns = tuple(DiscoveredColumn(name, kind, True, i) for i, (name, kind) in enumerate(COLUMNS))
    table = DiscoveredTable(TableName("main", "bench", "usage"), columns, ("event_id",))
    from zenskar_pipeline.databricks.discovery import DiscoveredCatalog

    catalog = DiscoveredCatalog({"main.bench.usage": table}, ("main",), dt.datetime.now(dt.UTC))
    [stream] = validate_streams(config, catalog)
    rows = events_of(stream, table)
    assert rows is not None
    return stream, EventSource.of(stream, rows)


def bare_client(api: LocalZenskarApi, bodies: list[bytes]) -> float:
    """Seconds for plain threads to post every body (each with a key of its own), as fast as they can."""
    pool = urllib3.PoolManager(maxsize=CONCURRENCY, block=True, retries=False)
    url = f"{api.api_url}/usage/{SLUG}"

    def post(body: bytes) -> None:
        headers = {**api.headers(), "content-type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
        response = pool.request("POST", url, body=body, headers=headers)
        assert response.status == 200, response.data[:200]

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as threads:
        list(threads.map(post, bodies))
    return time.perf_counter() - started


def delivery(
    api: LocalZenskarApi, stream: Any, source: EventSource, copy_uri: Path, **settings: Any
) -> tuple[float, int]:
    copy = DeltaDestination(str(copy_uri), partitioned=True)
    resource = ZenskarResource(
        api_url=api.api_url,
        organisation=api.organisation,
        api_key=api.api_key,
        max_concurrent_requests=CONCURRENCY,
        **{"requests_per_second": None, **settings},
    )
    run = DeliveryRun(
        stream.name,
        copy,
        DeliveryLedger.beside(copy),
        resource.client(),
        source,
        [WINDOW],
        f"bench-{uuid.uuid4()}",
        identity_of(copy, source.rows),
        batch_size=BATCH,
        max_concurrent_requests=CONCURRENCY,
    )
    started = time.perf_counter()
    report = deliver(run)
    return time.perf_counter() - started, report.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events: that it runs, not its figures")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events
    bounded_events = 10_000 if args.quick else 100_000
    rps = 40 if args.quick else 20
    print(
        f"Delivering {events:,} events in batches of {BATCH}, {CONCURRENCY} requests at once "
        f"({machine_note()})"
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        stream, source = stream_and_source(root / "destination")
        write_copy(root / "copy", events)
        # The bare client posts the very bodies the delivery sends (the engine's own serialization).
        built = read_events(
            DeltaDestination(str(root / "copy"), partitioned=True).dataset(),
            source,
            [WINDOW],
            partitioned=True,
        )
        texts = built.column("event").to_pylist()
        bodies = [("[" + ",".join(texts[i : i + BATCH]) + "]").encode() for i in range(0, len(texts), BATCH)]
        api = LocalZenskarApi(root / "api", schemas={SLUG: SCHEMA}).start_process()
        bare_times: list[float] = []
        delivery_times: list[float] = []
        try:
            # Side by side, twice: the machine's noise falls on both.
            for round_ in range(ROUNDS):
                api.reset()
                bare_times.append(bare_client(api, bodies))
                api.reset()
                copy_uri = root / f"copy-{round_}"
                write_copy(copy_uri, events)
                seconds, requests = delivery(api, stream, source, copy_uri)
                delivery_times.append(seconds)
                received = api.stats()["accepted_events"]
            api.reset()
            bounded_uri = root / "bounded"
            write_copy(bounded_uri, bounded_events)
            bounded_seconds, bounded_requests = delivery(
                api, stream, source, bounded_uri, requests_per_second=rps
            )
        finally:
            api.stop()
    bare_seconds, pipeline_seconds = sum(bare_times) / ROUNDS, sum(delivery_times) / ROUNDS
    bare_rate = events / bare_seconds
    rate = events / pipeline_seconds
    ratio = rate / bare_rate
    measured_rps = bounded_requests / bounded_seconds
    print_table(
        ("run", "events", "seconds", "events/s", "requests"),
        [
            (
                "bare client (serialized batches, no ledger)",
                f"{events:,}",
                f"{bare_seconds:.1f}",
                f"{bare_rate:,.0f}",
                f"{len(bodies):,}",
            ),
            (
                "delivery (copy -> ledger -> API)",
                f"{events:,}",
                f"{pipeline_seconds:.1f}",
                f"{rate:,.0f}",
                f"{requests:,}",
            ),
            (
                f"delivery bounded to {rps} requests/s",
                f"{bounded_events:,}",
                f"{bounded_seconds:.1f}",
                f"{bounded_events / bounded_seconds:,.0f}",
                f"{bounded_requests:,}",
            ),
        ],
    )
    print(f"events the API accepted from the last delivery: {received:,} of {events:,}")
    print(
        "rounds, seconds: bare "
        + ", ".join(f"{t:.1f}" for t in bare_times)
        + "; delivery "
        + ", ".join(f"{t:.1f}" for t in delivery_times)
    )
    print(f"delivery >= 0.8x the bare client's events/s: {ratio:.2f}x {verdict(ratio >= 0.8)}")
    print(f"requests/s within the bound of {rps}: {measured_rps:.1f} {verdict(measured_rps <= rps * 1.05)}")
    print(
        json.dumps(
            {
                "bare_events_per_second": round(bare_rate),
                "delivery_events_per_second": round(rate),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()

"""The demo dataset: billing tables written as a real workload would, one Delta version per step.

Same `rows`, `seed` and `now` give the same rows. Times are relative to `now`; the big table is generated in
vectorized chunks, streamed into its bulk load, so memory stays flat however many `rows` are asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.layout import TableName

USAGE_EVENTS = TableName("main", "billing", "usage_events")
CUSTOMERS = TableName("main", "billing", "customers")
COMPUTE_HOURS = TableName("main", "metering", "compute_hours")

CHUNK_ROWS = 500_000
QA_CUSTOMER = "cus_qa_internal"  # an internal test account whose events are deleted in the last version

_US = 1_000_000
_MS = 1_000
_HOUR = 3600 * _US
_DAY = 24 * _HOUR
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SeededTable:
    name: TableName
    rows: int
    version: int


@dataclass(frozen=True)
class SeedSummary:
    root: Path
    now: datetime
    tables: tuple[SeededTable, ...]

    def table(self, name: TableName | str) -> SeededTable:
        wanted = TableName.parse(name) if isinstance(name, str) else name
        for table in self.tables:
            if table.name == wanted:
                return table
        raise KeyError(f"{wanted} is not a demo table")

    def lines(self) -> list[str]:
        """One line per table, for the command line."""
        return [f"{t.name}: {t.rows:,} rows, latest version {t.version}" for t in self.tables]


def seed_demo(root: Path, rows: int = 100_000, seed: int = 7, now: datetime | None = None) -> SeedSummary:
    """Write the demo tables under `root` (none may exist yet); `rows` sizes the usage events' bulk load."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    now = datetime.now(UTC).replace(microsecond=0) if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC), e.g. datetime.now(UTC)")
    now = now.astimezone(UTC)
    root = Path(root)
    names = (USAGE_EVENTS, CUSTOMERS, COMPUTE_HOURS)
    existing = [str(n) for n in names if DeltaTable.is_deltatable(str(n.path(root)))]
    if existing:
        raise FileExistsError(f"demo tables already exist under {root}: {', '.join(existing)}")
    now_us = (now - _EPOCH) // timedelta(microseconds=1)
    customers = _seed_customers(root, seed, now_us)
    _seed_usage_events(root, rows, seed, now_us, customers)
    _seed_compute_hours(root, rows, seed, now_us, customers)
    summaries = []
    for name in names:
        delta = tables.open_table(root, name)
        summaries.append(SeededTable(name, delta.to_pyarrow_dataset().count_rows(), delta.version()))
    return SeedSummary(root, now, tuple(summaries))


DEMO_START_ENV = "ZENSKAR_DEMO_START"
# Where the demo's partitioned streams keep their partition field (streams.yaml).
_PARTITION_FIELDS = ((USAGE_EVENTS, "event_time"), (COMPUTE_HOURS, "usage_date"))


def demo_start(root: Path) -> str:
    """The day the seeded demo data starts (`YYYY-MM-DD`, UTC): the earliest partition-field value of the
    demo's partitioned tables under `root`. streams.yaml starts its partitions there
    (`${env:ZENSKAR_DEMO_START}`), so that every partition holds seeded rows and none lies before them,
    however long ago the seed ran."""
    earliest = []
    for name, column in _PARTITION_FIELDS:
        values = (
            DeltaTable(str(name.path(root))).to_pyarrow_dataset().to_table(columns=[column]).column(column)
        )
        least = pc.min(values).as_py()
        if least is not None:
            earliest.append(least.astimezone(UTC).date() if isinstance(least, datetime) else least)
    if not earliest:
        raise ValueError(
            f"no demo data under {root}: run `zenskar-pipeline warehouse seed-demo --root {root}`"
        )
    return min(earliest).isoformat()


def _field(name: str, type_: pa.DataType, comment: str) -> pa.Field:
    return pa.field(name, type_, metadata={"comment": comment})


# --- main.billing.customers -------------------------------------------------------------------------------

CUSTOMER_SCHEMA = pa.schema(
    [
        _field("customer_id", pa.string(), "Customer id, the primary key; usage events refer to it."),
        _field("name", pa.string(), "Company name."),
        _field("plan", pa.string(), "Pricing plan: free, starter, growth, enterprise (internal for tests)."),
        _field("country", pa.string(), "Billing country, ISO 3166-1 alpha-2."),
        _field("created_at", pa.timestamp("us", tz="UTC"), "When the customer signed up."),
        _field("updated_at", pa.timestamp("us", tz="UTC"), "Last change to this row."),
        _field("email", pa.string(), "Billing contact email (PII: the demo streams exclude it)."),
    ]
)
_CUSTOMER_COUNT = 300
_PLANS = np.array(["free", "starter", "growth", "enterprise"])
_COUNTRIES = np.array(["US", "GB", "DE", "IN", "FR", "NL", "SG", "AU", "CA", "BR"])
_NAME_WORDS = (
    np.array(["Blue", "Bright", "North", "Quiet", "Rapid", "Silver", "Urban", "Vivid", "Wild", "Zen"]),
    np.array(["Harbor", "Forge", "Pixel", "Summit", "Orbit", "Ledger", "Cedar", "Signal", "Atlas", "Delta"]),
    np.array(["Labs", "Systems", "Analytics", "Cloud", "Works", "Health", "Logistics", "Media"]),
)


@dataclass(frozen=True)
class _CustomerMix:
    """Who generates usage: a few large customers and a long tail (Zipf-like weights)."""

    ids: pa.Array
    weights: np.ndarray

    def draw(self, rng: np.random.Generator, count: int) -> pa.Array:
        return self.ids.take(pa.array(rng.choice(len(self.weights), size=count, p=self.weights)))


def _customer_rows(rng: np.random.Generator, ids: list[str], now_us: int, since_us: int) -> pa.Table:
    n = len(ids)
    words = [rng.integers(0, len(w), n) for w in _NAME_WORDS]
    names = [
        " ".join(str(w[i]) for w, i in zip(_NAME_WORDS, picks, strict=True))
        for picks in zip(*words, strict=True)
    ]
    created = rng.integers(since_us, now_us - 2 * _HOUR, n) // _US * _US
    updated = created + (rng.random(n) * (now_us - _HOUR - created)).astype(np.int64) // _US * _US
    emails = [
        f"billing+{cid}@{name.split()[1].lower()}.example.com" for cid, name in zip(ids, names, strict=True)
    ]
    plan = _PLANS[rng.choice(len(_PLANS), size=n, p=[0.3, 0.35, 0.25, 0.1])]
    country = _COUNTRIES[rng.integers(0, len(_COUNTRIES), n)]
    return pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.array(names),
            pa.array(plan),
            pa.array(country),
            _ts(created),
            _ts(updated),
            pa.array(emails),
        ],
        schema=CUSTOMER_SCHEMA,
    )


def _seed_customers(root: Path, seed: int, now_us: int) -> _CustomerMix:
    rng = np.random.default_rng([seed, 0])
    ids = [f"cus_{i:05d}" for i in range(1, _CUSTOMER_COUNT + 1)]
    initial = _customer_rows(rng, ids, now_us - 60 * _DAY, now_us - 3 * 365 * _DAY)
    qa = {
        "customer_id": QA_CUSTOMER,
        "name": "Zenskar QA (test account)",
        "plan": "internal",
        "country": "US",
    }
    qa |= {"created_at": initial["created_at"][0].as_py(), "updated_at": initial["updated_at"][0].as_py()}
    qa["email"] = "qa@zenskar.example.com"
    tables.create_table(
        root,
        CUSTOMERS,
        pa.concat_tables([initial, pa.Table.from_pylist([qa], schema=CUSTOMER_SCHEMA)]),
        primary_key=["customer_id"],
        change_data_feed=True,
        comment="Customers of the billing platform, one row per customer.",
    )
    # A later version: a dozen plan changes and three sign-ups, as the CRM sync would write them.
    changed = initial.take(np.sort(rng.choice(_CUSTOMER_COUNT, size=12, replace=False)))
    bumped = (now_us - rng.integers(5, 600, changed.num_rows) * _US) // _US * _US
    changed = changed.set_column(2, CUSTOMER_SCHEMA.field("plan"), pa.array(_PLANS[rng.integers(1, 4, 12)]))
    changed = changed.set_column(5, CUSTOMER_SCHEMA.field("updated_at"), _ts(bumped))
    new_ids = [f"cus_{i:05d}" for i in range(_CUSTOMER_COUNT + 1, _CUSTOMER_COUNT + 4)]
    signups = _customer_rows(rng, new_ids, now_us, now_us - _DAY)
    tables.upsert(root, CUSTOMERS, pa.concat_tables([changed, signups]), key=["customer_id"])
    weights = 1.0 / rng.permutation(np.arange(1, _CUSTOMER_COUNT + 1)) ** 0.9
    return _CustomerMix(pa.array(ids), weights / weights.sum())


# --- main.billing.usage_events ----------------------------------------------------------------------------

USAGE_SCHEMA = pa.schema(
    [
        _field("event_id", pa.string(), "Unique id of the usage event, the primary key."),
        _field("customer_id", pa.string(), "The customer billed for the usage (main.billing.customers)."),
        _field("event_time", pa.timestamp("us", tz="UTC"), "When the usage happened."),
        _field(
            "updated_at", pa.timestamp("us", tz="UTC"), "When this row was last written; the sync cursor."
        ),
        _field("metric", pa.string(), "What was used: api_calls, compute_hours, storage_gb or seats."),
        _field("quantity", pa.decimal128(18, 6), "Amount used, in the metric's unit."),
        _field("properties", pa.map_(pa.string(), pa.string()), "Event dimensions such as region and sku."),
    ]
)
_METRICS = pa.array(["api_calls", "compute_hours", "storage_gb", "seats"])
_METRIC_P = [0.55, 0.2, 0.15, 0.1]
_METRIC_UNIT = np.array([_US, 1, _MS, _US])  # the smallest step of each metric's quantity, in millionths
_SKUS = (
    ["api-standard", "api-premium"],
    ["cpu-small", "cpu-large", "gpu-a10"],
    ["hot", "cold"],
    ["pro", "team"],
)
_SKU_OFFSET = np.cumsum([0] + [len(s) for s in _SKUS[:-1]])
_SKU_COUNT = np.array([len(s) for s in _SKUS])
_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
_REGION_P = [0.4, 0.15, 0.25, 0.12, 0.08]


@dataclass
class _EventLog:
    """Writing usage events: ids come from a running index; `high_water` is the greatest updated_at so far."""

    root: Path
    seed: int
    customers: _CustomerMix
    id_key: int
    next_index: int = 0
    high_water: int = 0

    def events(self, rng: np.random.Generator, count: int, start_us: int, end_us: int, **kw: str) -> pa.Table:
        batch = _events(rng, self.id_key, self.next_index, count, start_us, end_us, self.customers, **kw)
        self.next_index += count
        self.high_water = max(self.high_water, _max_us(batch["updated_at"]))
        return batch


def _seed_usage_events(root: Path, rows: int, seed: int, now_us: int, customers: _CustomerMix) -> None:
    log = _EventLog(root, seed, customers, int(np.random.default_rng([seed, 1]).integers(0, 2**63)))
    bulk_start, bulk_end = now_us - 60 * _DAY, now_us - 3 * _DAY
    _bulk_load(log, rows, bulk_start, bulk_end)
    per_day = max(1, round(rows / 57))
    for day in range(3):  # three daily appends of new events; the first carries the QA account's test events
        rng = np.random.default_rng([seed, 3, day])
        start, end = now_us - (3 - day) * _DAY, now_us - (2 - day) * _DAY - (15 * 60 * _US if day == 2 else 0)
        batch = log.events(rng, per_day, start, end)
        if day == 0:
            qa = log.events(rng, 24, start, end, customer=QA_CUSTOMER)
            batch = pa.concat_tables([batch, qa])
        tables.append(root, USAGE_EVENTS, batch)

    # Late-arriving events: old event_time, committed now; a third share the current high-water updated_at,
    # the boundary value a strict `cursor > high-water` read would miss.
    rng = np.random.default_rng([seed, 4])
    late_count = max(10, rows // 200)
    boundary = log.high_water
    late = log.events(rng, late_count, now_us - 40 * _DAY, now_us - 4 * _DAY, ingest="late")
    updated = boundary + rng.integers(1, 60_000, late_count) * _MS
    updated[: late_count // 3] = boundary
    log.high_water = int(updated.max())
    tables.append(root, USAGE_EVENTS, late.set_column(3, USAGE_SCHEMA.field("updated_at"), _ts(updated)))

    _late_corrections(log, rows, bulk_start, bulk_end)
    tables.delete(root, USAGE_EVENTS, f"customer_id = '{QA_CUSTOMER}'")


def _bulk_load(log: _EventLog, rows: int, start_us: int, end_us: int) -> None:
    """The initial load, `rows` events streamed in chunks: memory holds one chunk, not the table."""

    def chunks() -> Iterator[pa.RecordBatch]:
        for i, first in enumerate(range(0, rows, CHUNK_ROWS)):
            count = min(CHUNK_ROWS, rows - first)
            # Chunk i covers its share of the time range, so data files line up with time as in a real log.
            start = start_us + (end_us - start_us) * first // rows
            end = start_us + (end_us - start_us) * (first + count) // rows
            yield from log.events(np.random.default_rng([log.seed, 2, i]), count, start, end).to_batches()

    tables.create_table(
        log.root,
        USAGE_EVENTS,
        pa.RecordBatchReader.from_batches(USAGE_SCHEMA, chunks()),
        primary_key=["event_id"],
        change_data_feed=True,
        comment="Metered usage events, one row per event; the input to usage billing.",
    )


def _late_corrections(log: _EventLog, rows: int, bulk_start: int, bulk_end: int) -> None:
    """Late corrections to recent events, merged on event_id: quantity re-metered, updated_at bumped, and a
    few moved to the next day (recorded in the wrong day).

    The merge names the recent days, so delta-rs leaves older data files alone: memory and time stay flat as
    the table grows.
    """
    rng = np.random.default_rng([log.seed, 5])
    dataset = tables.open_table(log.root, USAGE_EVENTS).to_pyarrow_dataset()
    for since_us in (bulk_end - 6 * _DAY, bulk_start):  # the wider range only for a tiny `rows`
        event_time = pc.field("event_time")
        recent = (event_time >= _ts_scalar(since_us)) & (event_time < _ts_scalar(bulk_end))
        pool = dataset.to_table(columns=["event_id"], filter=recent)["event_id"]
        if len(pool):
            break
    pool = pool.take(pc.sort_indices(pool))
    ids = pool.take(np.sort(rng.choice(len(pool), size=min(len(pool), max(5, rows // 1000)), replace=False)))
    fixes = dataset.to_table(filter=recent & pc.field("event_id").isin(ids)).sort_by("event_id")
    quantity = _remetered(fixes, rng.uniform(0.5, 1.5, fixes.num_rows))
    moved = pc.cast(fixes["event_time"], pa.int64()).to_numpy().copy()
    moved[: max(1, fixes.num_rows // 10)] += _DAY
    updated = log.high_water + rng.integers(1, 300, fixes.num_rows) * _US
    fixes = fixes.set_column(2, USAGE_SCHEMA.field("event_time"), _ts(moved))
    fixes = fixes.set_column(3, USAGE_SCHEMA.field("updated_at"), _ts(updated))
    fixes = fixes.set_column(5, USAGE_SCHEMA.field("quantity"), quantity)
    log.high_water = max(log.high_water, int(updated.max(initial=0)))
    since = f"target.event_time >= '{(_EPOCH + timedelta(microseconds=since_us)).isoformat()}'"
    tables.upsert(log.root, USAGE_EVENTS, fixes, key=["event_id"], target_predicate=since)


def _remetered(events: pa.Table, factor: np.ndarray) -> pa.Array:
    """Quantities times `factor`, rounded to each metric's unit: whole calls and seats stay whole."""
    unit = _METRIC_UNIT[pc.index_in(events["metric"], _METRICS).to_numpy()]
    quantity = pc.cast(events["quantity"], pa.float64()).to_numpy() * _US * factor
    return _decimal(np.maximum(np.round(quantity / unit), 1).astype(np.int64) * unit)


def _events(
    rng: np.random.Generator,
    id_key: int,
    first_index: int,
    count: int,
    start_us: int,
    end_us: int,
    customers: _CustomerMix,
    *,
    ingest: str | None = None,
    customer: str | None = None,
) -> pa.Table:
    """`count` events with event_time in `[start_us, end_us)`, in time order, ids from a global index.

    `customer` gives them all to one customer; `ingest` adds that value under the `ingest` property.
    """
    event_time = np.sort(rng.integers(start_us, max(end_us, start_us + 1), count)) // _MS * _MS
    updated_at = event_time + (_US + rng.exponential(20 * _US, count)).astype(np.int64) // _MS * _MS
    metric = rng.choice(len(_METRIC_P), size=count, p=_METRIC_P)
    quantity = np.choose(
        metric,
        [
            rng.integers(1, 2001, count) * _US,  # api_calls
            np.round((0.01 + rng.gamma(2.0, 0.75, count)) * _US).astype(np.int64),  # compute_hours
            np.round(rng.uniform(0.5, 500.0, count) * 1000).astype(np.int64) * _MS,  # storage_gb
            rng.integers(1, 51, count) * _US,  # seats
        ],
    )
    region = rng.choice(len(_REGION_P), size=count, p=_REGION_P)
    sku = _SKU_OFFSET[metric] + rng.integers(0, _SKU_COUNT[metric])
    return pa.Table.from_arrays(
        [
            _event_ids(np.arange(first_index, first_index + count, dtype=np.uint64), id_key),
            customers.draw(rng, count) if customer is None else pa.array([customer] * count),
            _ts(event_time),
            _ts(updated_at),
            _METRICS.take(pa.array(metric)),
            _decimal(quantity),
            _properties(region, sku, ingest),
        ],
        schema=USAGE_SCHEMA,
    )


_HEX = np.array([list(f"{b:02x}".encode()) for b in range(256)], dtype=np.uint8)


def _event_ids(index: np.ndarray, key: int) -> pa.Array:
    """`evt_` and 16 hex digits, a bijective mix (splitmix64's finalizer) of the index: ids never repeat."""
    x = index + np.uint64(key)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    digits = _HEX[x.astype(">u8").view(np.uint8).reshape(-1, 8)].reshape(-1, 16)
    chars = np.concatenate([np.broadcast_to(np.frombuffer(b"evt_", np.uint8), (len(x), 4)), digits], axis=1)
    return _fixed_width_strings(chars)


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    count, width = chars.shape
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars))]
    )


def _properties(region: np.ndarray, sku: np.ndarray, ingest: str | None) -> pa.Array:
    keys = ["region", "sku"] + (["ingest"] if ingest else [])
    values = _REGIONS + [s for skus in _SKUS for s in skus] + ([ingest] if ingest else [])
    picks = np.empty((len(region), len(keys)), dtype=np.int64)
    picks[:, 0], picks[:, 1] = region, len(_REGIONS) + sku
    if ingest:
        picks[:, 2] = len(values) - 1
    offsets = pa.array(np.arange(0, picks.size + 1, len(keys), dtype=np.int32))
    return pa.MapArray.from_arrays(
        offsets,
        pa.array(keys).take(pa.array(np.tile(np.arange(len(keys)), len(region)))),
        pa.array(values).take(pa.array(picks.ravel())),
        type=USAGE_SCHEMA.field("properties").type,
    )


# --- main.metering.compute_hours ----------------------------------------------------------------------------

_INSTANCE = pa.struct([("type", pa.string()), ("vcpus", pa.int32()), ("memory_gb", pa.float64())])
COMPUTE_SCHEMA = pa.schema(
    [
        _field("usage_date", pa.date32(), "UTC date of the metered hour; the table is partitioned by it."),
        _field(
            "hour_start", pa.timestamp("us"), "Start of the metered hour, UTC wall-clock (TIMESTAMP_NTZ)."
        ),
        _field("cluster_id", pa.string(), "The compute cluster metered."),
        _field("customer_id", pa.string(), "The customer owning the cluster."),
        _field("node_count", pa.int32(), "Nodes running during the hour."),
        _field("cpu_hours", pa.float64(), "vCPU hours used in the hour."),
        _field("gpu", pa.bool_(), "Whether the nodes carry GPUs."),
        _field("tags", pa.list_(pa.string()), "Cluster tags."),
        _field("instance", _INSTANCE, "Node instance type, vCPUs and memory."),
        _field("ingested_at", pa.timestamp("us", tz="UTC"), "When the reading was written; the sync cursor."),
    ]
)
_INSTANCES = pa.array(
    [
        {"type": "m5.xlarge", "vcpus": 4, "memory_gb": 16.0},
        {"type": "m5.4xlarge", "vcpus": 16, "memory_gb": 64.0},
        {"type": "r5.2xlarge", "vcpus": 8, "memory_gb": 64.0},
        {"type": "g5.2xlarge", "vcpus": 8, "memory_gb": 32.0},
    ],
    type=_INSTANCE,
)
_INSTANCE_VCPUS = np.array([4, 16, 8, 8])
_TAG_SETS = pa.array([["prod"], ["prod", "etl"], ["dev"], ["ml", "training"], []], type=pa.list_(pa.string()))


def _seed_compute_hours(root: Path, rows: int, seed: int, now_us: int, customers: _CustomerMix) -> None:
    """Hourly meter readings per cluster, an append-only log: a re-metered hour is a new row, no update."""
    rng = np.random.default_rng([seed, 6])
    clusters = min(100, max(4, rows // 5000))
    cluster_ids = pa.array([f"clu-{i:04d}" for i in range(clusters)])
    owner = customers.draw(rng, clusters)
    instance = rng.integers(0, len(_INSTANCE_VCPUS), clusters)
    base_nodes = rng.integers(1, 9, clusters)
    tag_set = rng.integers(0, len(_TAG_SETS), clusters)

    def readings(part: int, first_hour: int, end_hour: int) -> pa.Table:
        rng = np.random.default_rng([seed, 7, part])
        hours = np.arange(first_hour, end_hour, _HOUR, dtype=np.int64)
        cluster = np.tile(np.arange(clusters), len(hours))
        hour = np.repeat(hours, clusters)
        keep = rng.random(len(hour)) < 0.8  # clusters are not up every hour
        cluster, hour = cluster[keep], hour[keep]
        nodes = base_nodes[cluster] + rng.integers(0, 3, len(cluster))
        cpu_hours = np.round(
            nodes * _INSTANCE_VCPUS[instance[cluster]] * rng.uniform(0.2, 0.95, len(cluster)), 4
        )
        ingested = hour + _HOUR + rng.integers(30, 1200, len(cluster)) * _US
        picks = pa.array(cluster)
        return pa.Table.from_arrays(
            [
                pa.array(hour // _DAY, type=pa.int32()).cast(pa.date32()),
                pa.array(hour, type=pa.timestamp("us")),
                cluster_ids.take(picks),
                owner.take(picks),
                pa.array(nodes, type=pa.int32()),
                pa.array(cpu_hours),
                pa.array(instance[cluster] == 3),
                _TAG_SETS.take(pa.array(tag_set[cluster])),
                _INSTANCES.take(pa.array(instance[cluster])),
                _ts(ingested),
            ],
            schema=COMPUTE_SCHEMA,
        )

    hour_now = now_us // _HOUR * _HOUR
    tables.create_table(
        root,
        COMPUTE_HOURS,
        readings(0, hour_now // _DAY * _DAY - 60 * _DAY, hour_now - 6 * _HOUR),
        partition_by=["usage_date"],
        comment="Hourly compute readings per cluster (append-only; re-metered hours appear again).",
    )
    tables.append(root, COMPUTE_HOURS, readings(1, hour_now - 6 * _HOUR, hour_now))
    # Three earlier hours re-metered just now: new rows with corrected cpu_hours and a later ingested_at.
    remetered = readings(2, hour_now - 9 * _HOUR, hour_now - 6 * _HOUR)
    ingested = now_us - rng.integers(60, 600, remetered.num_rows) * _US
    tables.append(
        root, COMPUTE_HOURS, remetered.set_column(9, COMPUTE_SCHEMA.field("ingested_at"), _ts(ingested))
    )


def _ts(micros: np.ndarray) -> pa.Array:
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def _ts_scalar(micros: int) -> pa.Scalar:
    return pa.scalar(micros, type=pa.timestamp("us", tz="UTC"))


def _max_us(column: pa.ChunkedArray) -> int:
    return int(pc.cast(pc.max(column), pa.int64()).as_py())


def _decimal(micros: np.ndarray) -> pa.Array:
    """DECIMAL(18, 6) from integer millionths: little-endian 128-bit words, the high word the sign."""
    words = np.empty((len(micros), 2), dtype=np.int64)
    words[:, 0], words[:, 1] = micros, micros >> 63
    return pa.Array.from_buffers(pa.decimal128(18, 6), len(micros), [None, pa.py_buffer(words)])

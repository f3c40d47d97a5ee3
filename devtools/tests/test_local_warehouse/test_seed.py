"""The demo seed and the table-writing helpers, checked on the Delta tables they leave behind."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.layout import CHANGE_DATA_FEED_PROPERTY, PRIMARY_KEY_PROPERTY, TableName
from zenskar_devtools.local_warehouse.seed import (
    COMPUTE_HOURS,
    CUSTOMERS,
    QA_CUSTOMER,
    USAGE_EVENTS,
    SeedSummary,
    seed_demo,
)

NOW = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)
ROWS = 2_000
# bulk load + three daily appends (round(2000 / 57) each) + the QA account's 24 + the late batch - deleted QA
EXPECTED_EVENTS = ROWS + 3 * 35 + 24 + 10 - 24


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> SeedSummary:
    return seed_demo(tmp_path_factory.mktemp("seed"), rows=ROWS, seed=7, now=NOW)


def _open(summary: SeedSummary, name: TableName, version: int | None = None) -> DeltaTable:
    return DeltaTable(str(name.path(summary.root)), version=version)


def _rows(delta: DeltaTable, key: list[str]) -> pa.Table:
    return delta.to_pyarrow_table().sort_by([(k, "ascending") for k in key])


def _changes(delta: DeltaTable, start: int = 0) -> list[dict[str, Any]]:
    return pa.table(delta.load_cdf(starting_version=start)).to_pylist()


def _operations(delta: DeltaTable) -> list[str]:
    return [h["operation"] for h in sorted(delta.history(), key=lambda h: h["version"])]


def test_same_arguments_give_the_same_tables(seeded: SeedSummary, tmp_path: Path) -> None:
    again = seed_demo(tmp_path, rows=ROWS, seed=7, now=NOW)
    assert [(t.name, t.rows, t.version) for t in again.tables] == [
        (t.name, t.rows, t.version) for t in seeded.tables
    ]
    keys = {
        USAGE_EVENTS: ["event_id"],
        CUSTOMERS: ["customer_id"],
        COMPUTE_HOURS: ["cluster_id", "ingested_at"],
    }
    for name, key in keys.items():
        assert _rows(_open(again, name), key).equals(_rows(_open(seeded, name), key)), name


def test_another_seed_gives_other_events(seeded: SeedSummary, tmp_path: Path) -> None:
    other = seed_demo(tmp_path, rows=ROWS, seed=8, now=NOW)
    ids = set(_open(other, USAGE_EVENTS).to_pyarrow_table(columns=["event_id"])["event_id"].to_pylist())
    seeded_ids = _open(seeded, USAGE_EVENTS).to_pyarrow_table(columns=["event_id"])["event_id"].to_pylist()
    assert not ids & set(seeded_ids)


def test_summary_counts_rows_and_versions(seeded: SeedSummary) -> None:
    assert seeded.now == NOW
    assert [(str(t.name), t.rows, t.version) for t in seeded.tables] == [
        ("main.billing.usage_events", EXPECTED_EVENTS, 7),
        ("main.billing.customers", 304, 2),
        ("main.metering.compute_hours", _open(seeded, COMPUTE_HOURS).to_pyarrow_table().num_rows, 3),
    ]
    for table in seeded.tables:
        delta = _open(seeded, table.name)
        assert (delta.to_pyarrow_table().num_rows, delta.version()) == (table.rows, table.version)
    assert seeded.table("main.billing.customers").rows == 304
    assert seeded.lines()[0] == f"main.billing.usage_events: {EXPECTED_EVENTS:,} rows, latest version 7"


def test_usage_events_history_is_a_realistic_workload(seeded: SeedSummary) -> None:
    delta = _open(seeded, USAGE_EVENTS)
    assert _operations(delta) == ["CREATE TABLE"] + ["WRITE"] * 5 + ["MERGE", "DELETE"]
    assert _open(seeded, USAGE_EVENTS, version=1).to_pyarrow_table().num_rows == ROWS  # the bulk load


def test_usage_events_change_feed_has_inserts_updates_and_deletes(seeded: SeedSummary) -> None:
    changes = _changes(_open(seeded, USAGE_EVENTS))
    kinds = Counter((c["_commit_version"], c["_change_type"]) for c in changes)
    assert kinds == {
        (1, "insert"): ROWS,
        (2, "insert"): 35 + 24,
        (3, "insert"): 35,
        (4, "insert"): 35,
        (5, "insert"): 10,
        (6, "update_preimage"): 5,
        (6, "update_postimage"): 5,
        (7, "delete"): 24,
    }
    assert {c["customer_id"] for c in changes if c["_change_type"] == "delete"} == {QA_CUSTOMER}


def test_late_batch_shares_the_high_water_cursor(seeded: SeedSummary) -> None:
    high_water = max(_open(seeded, USAGE_EVENTS, version=4).to_pyarrow_table()["updated_at"].to_pylist())
    late = [c for c in _changes(_open(seeded, USAGE_EVENTS), start=5) if c["_commit_version"] == 5]
    assert sum(c["updated_at"] == high_water for c in late) == 3
    assert all(c["updated_at"] >= high_water for c in late)
    assert all(NOW - timedelta(days=40) <= c["event_time"] < NOW - timedelta(days=4) for c in late)
    assert all(dict(c["properties"])["ingest"] == "late" for c in late)


def test_merge_corrects_quantities_and_moves_some_events_a_day(seeded: SeedSummary) -> None:
    merged = [c for c in _changes(_open(seeded, USAGE_EVENTS), start=6) if c["_commit_version"] == 6]
    before = {c["event_id"]: c for c in merged if c["_change_type"] == "update_preimage"}
    after = {c["event_id"]: c for c in merged if c["_change_type"] == "update_postimage"}
    assert before.keys() == after.keys()
    latest_before = max(_open(seeded, USAGE_EVENTS, version=5).to_pyarrow_table()["updated_at"].to_pylist())
    assert all(a["updated_at"] > latest_before for a in after.values())
    assert any(after[k]["quantity"] != before[k]["quantity"] for k in after)
    moved = [k for k in after if after[k]["event_time"] != before[k]["event_time"]]
    assert moved and all(after[k]["event_time"] - before[k]["event_time"] == timedelta(days=1) for k in moved)
    for row in after.values():  # whole calls and seats stay whole
        if row["metric"] in ("api_calls", "seats"):
            assert row["quantity"] == row["quantity"].to_integral_value()


def test_usage_events_types_properties_and_comments(seeded: SeedSummary) -> None:
    delta = _open(seeded, USAGE_EVENTS)
    schema = pa.schema(delta.schema().to_arrow())
    assert [(f.name, f.type) for f in schema] == [
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("metric", pa.string()),
        ("quantity", pa.decimal128(18, 6)),
        ("properties", pa.map_(pa.string(), pa.string())),
    ]
    assert not schema.field("event_id").nullable
    assert all(f.metadata and f.metadata[b"comment"] for f in schema)
    metadata = delta.metadata()
    assert metadata.configuration[PRIMARY_KEY_PROPERTY] == "event_id"
    assert metadata.configuration[CHANGE_DATA_FEED_PROPERTY] == "true"
    assert metadata.description
    rows = delta.to_pyarrow_table()
    assert set(rows["metric"].to_pylist()) == {"api_calls", "compute_hours", "storage_gb", "seats"}
    assert len(set(rows["event_id"].to_pylist())) == rows.num_rows
    times = rows["event_time"].to_pylist()
    assert NOW - timedelta(days=60) <= min(times) and max(times) < NOW
    assert {k for m in rows["properties"].to_pylist() for k, _ in m} == {"region", "sku", "ingest"}
    customers = set(_open(seeded, CUSTOMERS).to_pyarrow_table()["customer_id"].to_pylist())
    assert set(rows["customer_id"].to_pylist()) <= customers - {QA_CUSTOMER}


def test_customers_have_a_later_version_of_updates(seeded: SeedSummary) -> None:
    delta = _open(seeded, CUSTOMERS)
    assert _operations(delta) == ["CREATE TABLE", "WRITE", "MERGE"]
    kinds = Counter((c["_commit_version"], c["_change_type"]) for c in _changes(delta))
    assert kinds == {
        (1, "insert"): 301,
        (2, "insert"): 3,
        (2, "update_preimage"): 12,
        (2, "update_postimage"): 12,
    }
    metadata = delta.metadata()
    assert metadata.configuration[PRIMARY_KEY_PROPERTY] == "customer_id"
    schema = pa.schema(delta.schema().to_arrow())
    assert schema.names == ["customer_id", "name", "plan", "country", "created_at", "updated_at", "email"]
    assert schema.field("updated_at").type == pa.timestamp("us", tz="UTC")
    assert b"PII" in schema.field("email").metadata[b"comment"]


def test_compute_hours_exercise_partitions_and_nested_types(seeded: SeedSummary) -> None:
    delta = _open(seeded, COMPUTE_HOURS)
    assert _operations(delta) == ["CREATE TABLE", "WRITE", "WRITE", "WRITE"]
    metadata = delta.metadata()
    assert metadata.partition_columns == ["usage_date"]
    assert PRIMARY_KEY_PROPERTY not in metadata.configuration  # an append-only log: no key
    schema = pa.schema(delta.schema().to_arrow())
    assert [(f.name, f.type) for f in schema] == [
        ("usage_date", pa.date32()),
        ("hour_start", pa.timestamp("us")),  # TIMESTAMP_NTZ
        ("cluster_id", pa.string()),
        ("customer_id", pa.string()),
        ("node_count", pa.int32()),
        ("cpu_hours", pa.float64()),
        ("gpu", pa.bool_()),
        ("tags", pa.list_(pa.field("element", pa.string()))),
        ("instance", pa.struct([("type", pa.string()), ("vcpus", pa.int32()), ("memory_gb", pa.float64())])),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
    rows = delta.to_pyarrow_table().to_pylist()
    assert all(r["usage_date"] == r["hour_start"].date() for r in rows)
    assert all(r["hour_start"].minute == 0 and r["hour_start"] < NOW.replace(tzinfo=None) for r in rows)
    readings = Counter((r["cluster_id"], r["hour_start"]) for r in rows)
    assert max(readings.values()) == 2  # re-metered hours appear twice
    assert {r["gpu"] for r in rows} == {True, False}


def test_seed_refuses_to_overwrite_and_naive_times(seeded: SeedSummary) -> None:
    with pytest.raises(FileExistsError, match=re.escape("main.billing.usage_events")):
        seed_demo(seeded.root, rows=10, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        seed_demo(seeded.root / "other", rows=10, now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="rows"):
        seed_demo(seeded.root / "other", rows=0, now=NOW)


def test_a_tiny_seed_still_writes_every_version(tmp_path: Path) -> None:
    summary = seed_demo(tmp_path, rows=1, now=NOW)
    assert summary.table(USAGE_EVENTS).version == 7
    assert _operations(_open(summary, USAGE_EVENTS))[-2:] == ["MERGE", "DELETE"]


# --- tables.py --------------------------------------------------------------------------------------------

ORDERS = "main.sales.orders"
ORDER_SCHEMA = pa.schema(
    [
        pa.field("order_id", pa.int64(), metadata={"comment": "The order."}),
        pa.field("amount", pa.decimal128(18, 2)),
        pa.field("day", pa.date32()),
    ]
)


def _orders(rows: list[tuple[int, str, int]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"order_id": i, "amount": Decimal(a), "day": datetime(2026, 1, d).date()} for i, a, d in rows],
        schema=ORDER_SCHEMA,
    )


def _order_rows(delta: DeltaTable) -> list[tuple[int, str]]:
    return sorted((r["order_id"], str(r["amount"])) for r in delta.to_pyarrow_table().to_pylist())


@pytest.fixture
def orders(tmp_path: Path) -> DeltaTable:
    return tables.create_table(
        tmp_path,
        ORDERS,
        _orders([(1, "10.00", 1), (2, "20.00", 1), (3, "30.00", 2)]),
        primary_key=["order_id"],
        change_data_feed=True,
        comment="Orders, one row each.",
        partition_by=["day"],
    )


def test_create_table_declares_key_feed_comment_and_partitions(orders: DeltaTable, tmp_path: Path) -> None:
    assert (
        Path(orders.table_uri.removeprefix("file://")).resolve() == (tmp_path / "main/sales/orders").resolve()
    )
    assert _operations(orders) == ["CREATE TABLE", "WRITE"]
    metadata = orders.metadata()
    assert metadata.configuration == {PRIMARY_KEY_PROPERTY: "order_id", CHANGE_DATA_FEED_PROPERTY: "true"}
    assert metadata.description == "Orders, one row each."
    assert metadata.partition_columns == ["day"]
    schema = pa.schema(orders.schema().to_arrow())
    assert schema.field("order_id").metadata == {b"comment": b"The order."}
    assert not schema.field("order_id").nullable  # a Unity Catalog primary key is NOT NULL
    assert tables.primary_key(orders) == ("order_id",)
    assert _order_rows(orders) == [(1, "10.00"), (2, "20.00"), (3, "30.00")]


def test_create_table_refuses_bad_input(orders: DeltaTable, tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match=re.escape(ORDERS)):
        tables.create_table(tmp_path, ORDERS, _orders([]))
    with pytest.raises(ValueError, match="primary_key"):
        tables.create_table(tmp_path, "main.sales.other", _orders([]), primary_key=["id"])
    with pytest.raises(ValueError, match=re.escape("catalog.schema.table")):
        tables.create_table(tmp_path, "sales.orders", _orders([]))
    with pytest.raises(FileNotFoundError, match=re.escape("main.sales.missing")):
        tables.append(tmp_path, "main.sales.missing", _orders([]))


def test_create_table_without_rows_or_from_a_stream(tmp_path: Path) -> None:
    empty = tables.create_table(tmp_path, TableName("main", "sales", "empty"), _orders([]))
    assert (empty.version(), _operations(empty)) == (0, ["CREATE TABLE"])
    assert tables.primary_key(empty) == ()
    batches = _orders([(1, "1.00", 1), (2, "2.00", 1)]).to_batches(max_chunksize=1)
    stream = tables.create_table(
        tmp_path, "main.sales.stream", pa.RecordBatchReader.from_batches(ORDER_SCHEMA, batches)
    )
    assert _order_rows(stream) == [(1, "1.00"), (2, "2.00")]


def test_append_upsert_delete_overwrite_land_what_they_say(orders: DeltaTable, tmp_path: Path) -> None:
    tables.append(tmp_path, ORDERS, _orders([(4, "40.00", 2)]))
    tables.upsert(tmp_path, ORDERS, _orders([(2, "21.00", 1), (5, "50.00", 3)]), key=["order_id"])
    tables.delete(tmp_path, ORDERS, "order_id = 1")
    delta = tables.open_table(tmp_path, ORDERS)
    assert _order_rows(delta) == [(2, "21.00"), (3, "30.00"), (4, "40.00"), (5, "50.00")]
    assert _operations(delta) == ["CREATE TABLE", "WRITE", "WRITE", "MERGE", "DELETE"]
    changes = Counter(
        (c["_commit_version"], c["_change_type"], c["order_id"]) for c in _changes(delta, start=2)
    )
    assert changes == {
        (2, "insert", 4): 1,
        (3, "update_preimage", 2): 1,
        (3, "update_postimage", 2): 1,
        (3, "insert", 5): 1,
        (4, "delete", 1): 1,
    }
    after = tables.overwrite(tmp_path, ORDERS, _orders([(9, "90.00", 4)]))
    assert _order_rows(after) == [(9, "90.00")]
    assert after.metadata().configuration[PRIMARY_KEY_PROPERTY] == "order_id"  # properties survive
    assert after.metadata().description == "Orders, one row each."
    deleted = {c["order_id"] for c in _changes(after, start=5) if c["_change_type"] == "delete"}
    assert deleted == {2, 3, 4, 5}


def test_upsert_refuses_repeated_keys_and_honours_a_target_predicate(
    orders: DeltaTable, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="more than once"):
        tables.upsert(tmp_path, ORDERS, _orders([(1, "1.00", 1), (1, "2.00", 1)]), key=["order_id"])
    with pytest.raises(ValueError, match="key"):
        tables.upsert(tmp_path, ORDERS, _orders([(1, "1.00", 1)]), key=[])
    # Rows the predicate excludes do not match: the day-2 order 3 is inserted again rather than updated.
    tables.upsert(
        tmp_path,
        ORDERS,
        _orders([(1, "11.00", 1), (3, "33.00", 2)]),
        ["order_id"],
        target_predicate="target.day < '2026-01-02'",
    )
    assert _order_rows(tables.open_table(tmp_path, ORDERS)) == [
        (1, "11.00"),
        (2, "20.00"),
        (3, "30.00"),
        (3, "33.00"),
    ]


def test_delete_needs_a_predicate(orders: DeltaTable, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="predicate"):
        tables.delete(tmp_path, ORDERS, " ")
    assert tables.delete(tmp_path, ORDERS, "amount > 15").to_pyarrow_table().num_rows == 1

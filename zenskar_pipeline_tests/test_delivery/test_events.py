"""Which rows of a copy are events, and their exact text, from real Delta tables: decimals keep their scale
whatever their precision, a key the copy holds twice is one event, a change feed's overwrite keeps the
event, a version that moved to another window is that window's event, and the ledger refuses a changed
identity."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from zenskar_pipeline.config import DeliverSpec
from zenskar_pipeline.delivery.deliver import DeliveryRun, IdentityChangedError, UndeliveredError, deliver
from zenskar_pipeline.delivery.events import EventSource, identity_description, read_events
from zenskar_pipeline.delivery.ledger import DeliveryLedger
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.destinations import DeltaDestination
from zenskar_pipeline.sync.modes.base import EventRows

WHEN = dt.datetime(2026, 2, 2, 10, tzinfo=dt.UTC)
SPEC = DeliverSpec("calls", "customer_id", "event_time", (("amount", "amount"),))


def _copy(folder: Path, rows: list[dict[str, object]], schema: pa.Schema) -> DeltaDestination:
    table = pa.Table.from_pylist(rows, schema)
    write_deltalake(str(folder), table, partition_by=["_zenskar_partition"])
    return DeltaDestination(str(folder), partitioned=True)


def _events(copy: DeltaDestination, rows: EventRows, windows: list[str]) -> list[dict[str, object]]:
    source = EventSource(SPEC, rows, "UTC")
    return read_events(copy.dataset(), source, windows, partitioned=True).to_pylist()


SCHEMA = pa.schema(
    [
        ("event_id", pa.decimal128(10, 0)),
        ("customer_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("amount", pa.decimal128(10, 2)),
        ("_zenskar_partition", pa.string()),
        ("_zenskar_source_version", pa.int64()),
    ]
)


def _row(event_id: int, amount: str, window: str = "2026-02-02", version: int = 1) -> dict[str, object]:
    return {
        "event_id": Decimal(event_id),
        "customer_id": "c1",
        "event_time": WHEN,
        "amount": Decimal(amount),
        "_zenskar_partition": window,
        "_zenskar_source_version": version,
    }


def test_a_small_decimal_keeps_every_digit_of_its_scale(tmp_path: Path) -> None:
    copy = _copy(tmp_path / "copy", [_row(5, "1.50")], SCHEMA)
    [event] = _events(copy, EventRows(("event_id",)), ["2026-02-02"])
    assert event["event_id"] == "[5]"
    assert event["event"] == (
        '{"customer_id":"c1","timestamp":"2026-02-02T10:00:00.000000Z","data":{"amount":1.50}}'
    )


def test_a_key_the_copy_holds_twice_is_one_event_the_same_on_every_read(tmp_path: Path) -> None:
    copy = _copy(tmp_path / "copy", [_row(1, "1.00"), _row(1, "2.00")], SCHEMA)
    reads = [_events(copy, EventRows(("event_id",)), ["2026-02-02"]) for _ in range(3)]
    assert [len(read) for read in reads] == [1, 1, 1]
    assert reads[0] == reads[1] == reads[2]


def test_a_change_feed_overwrite_keeps_the_inserted_row(tmp_path: Path) -> None:
    schema = SCHEMA.append(pa.field("_zenskar_change_type", pa.string())).append(
        pa.field("_zenskar_synced_at", pa.timestamp("us", tz="UTC"))
    )
    rows = [
        {**_row(1, "10.00", version=3), "_zenskar_change_type": "insert", "_zenskar_synced_at": WHEN},
        {**_row(1, "10.00", version=7), "_zenskar_change_type": "delete", "_zenskar_synced_at": WHEN},
        {**_row(1, "5.00", version=7), "_zenskar_change_type": "insert", "_zenskar_synced_at": WHEN},
    ]
    copy = _copy(tmp_path / "copy", rows, schema)
    not_deleted = "_zenskar_change_type <> 'delete'"
    feed = EventRows(
        ("event_id",),
        latest_by=("_zenskar_source_version", "_zenskar_synced_at"),
        keep=not_deleted,
        prefer=not_deleted,
    )
    [event] = _events(copy, feed, ["2026-02-02"])
    assert '"amount":5.00' in str(event["event"])


def test_a_version_that_moved_to_another_window_is_that_windows_event(tmp_path: Path) -> None:
    rows = [_row(1, "10.00", "2026-02-01", version=1), _row(1, "7.00", "2026-02-02", version=2)]
    copy = _copy(tmp_path / "copy", rows, SCHEMA)
    versions = EventRows(("event_id",), latest_by=("_zenskar_source_version",))
    assert _events(copy, versions, ["2026-02-01"]) == []
    [event] = _events(copy, versions, ["2026-02-02"])
    assert '"amount":7.00' in str(event["event"])


def test_a_ledger_refuses_events_identified_another_way(tmp_path: Path) -> None:
    copy = _copy(tmp_path / "copy", [_row(1, "1.00")], SCHEMA)
    ledger = DeliveryLedger.beside(copy)
    resource = ZenskarResource(
        api_url="http://127.0.0.1:9", organisation="o", api_key="k" * 8, max_attempts=1
    )
    client = resource.client()
    source = EventSource(SPEC, EventRows(("event_id",)), "UTC")

    def run(identity: str) -> DeliveryRun:
        return DeliveryRun("s", copy, ledger, client, source, ["2026-02-02"], "r", identity)

    with pytest.raises(UndeliveredError):  # nothing answers on port 9: the plan is in the ledger
        deliver(run(identity_description(SCHEMA, ["event_id"])))
    with pytest.raises(IdentityChangedError, match="event_id"):
        deliver(run("event_id (string)"))

"""Delivering a landed copy to the local Zenskar API through Dagster: what arrives, exactly; what a second run
sends (nothing); what the API's faults cost (nothing twice); a refused row; a row changed after delivery."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_pipeline_tests.test_delivery.conftest import (
    DAY,
    ROW_SCHEMA,
    Delivery,
    checks,
    figures,
    row,
)


def _by_customer_and_time(received: list[dict]) -> dict[tuple[str, str], dict]:
    return {(event["customer_id"], event["timestamp"]): event for event in received}


def test_every_landed_row_arrives_once_with_its_values_exact(delivery: Delivery) -> None:
    result = delivery.deliver()
    assert result.success
    received = delivery.received()
    assert len(received) == 5
    events = _by_customer_and_time(received)
    first = events[("cust-1", "2026-03-08T06:00:00.000000Z")]["data"]
    assert first["quantity"] == 3
    assert first["amount"] == Decimal("12345678901234567890.123456789012345678")
    assert first["ratio"] == Decimal("0.1")  # the double's shortest text: it reads back as the same double
    assert first["billable"] is True
    assert first["day"] == "2026-03-08"
    # Wall-clock 01:30 in New York before clocks go forward is EST (-05:00); 03:30 after is EDT (-04:00).
    assert first["seen_at"] == "2026-03-08T06:30:00.000000Z"
    second = events[("cust-1", "2026-03-08T07:00:00.000000Z")]["data"]
    assert second["metric"] == "Grüße, 東京 🚀"
    assert second["seen_at"] == "2026-03-08T07:30:00.000000Z"
    nulls = events[("cust-1", "2026-03-08T08:00:00.000000Z")]["data"]
    assert nulls == dict.fromkeys(
        ("quantity", "amount", "ratio", "metric", "billable", "day", "seen_at"), None
    )
    tiny = events[("cust-1", "2026-03-08T09:00:00.000000Z")]["data"]
    assert tiny["amount"] == Decimal("-0.000000000000000001") and float(tiny["ratio"]) == -2.5e-300
    assert tiny["billable"] is False
    escaped = events[("cust-2", "2026-03-08T10:00:00.000000Z")]["data"]
    assert escaped["metric"] == 'quote " and \\ and \n newline'
    report = figures(result)[DAY]
    assert report["events_sent"] == 5 and report["events_delivered_before"] == 0
    assert report["dagster/row_count"] == 5 and report["events_dead_lettered"] == 0
    assert all(check.passed for check in checks(result).values())


def test_a_second_run_sends_nothing_and_says_what_was_delivered_before(delivery: Delivery) -> None:
    assert delivery.deliver().success
    again = delivery.deliver()
    assert again.success
    assert len(delivery.received()) == 5
    report = figures(again)[DAY]
    assert report["events_sent"] == 0 and report["events_delivered_before"] == 5


def test_a_row_landed_after_delivery_is_sent_alone(delivery: Delivery) -> None:
    assert delivery.deliver().success
    late = row("e6", 11, customer_id="cust-3")
    tables.append(delivery.warehouse.root, delivery.table, pa.Table.from_pylist([late], ROW_SCHEMA))
    delivery.sync()
    result = delivery.deliver()
    assert figures(result)[DAY]["events_sent"] == 1
    assert [e["customer_id"] for e in delivery.received()].count("cust-3") == 1
    assert len(delivery.received()) == 6


def test_a_dropped_connection_after_the_api_took_the_batch_is_retried_without_a_duplicate(
    delivery: Delivery,
) -> None:
    delivery.api.set_faults(drop_after_processing=1)
    result = delivery.deliver()
    assert result.success
    assert len(delivery.received()) == 5
    assert delivery.api.stats()["replayed"] == 1


def test_server_errors_and_rate_limits_are_retried_under_the_same_key(delivery: Delivery) -> None:
    delivery.api.set_faults(fail_5xx=2, rate_limit_429=1, retry_after_seconds=1, fail_5xx_after_processing=1)
    result = delivery.deliver()
    assert result.success
    received = delivery.received()
    assert len(received) == 5
    assert len({event["idempotency_key"] for event in received}) == 1  # one batch, one key, every attempt


def test_one_refused_row_is_dead_lettered_and_the_others_delivered(delivery: Delivery) -> None:
    delivery.api.set_faults(reject_customer_ids=["cust-2"])
    result = delivery.deliver()
    assert result.success  # the run goes on; the check fails
    assert sorted(e["customer_id"] for e in delivery.received()) == ["cust-1"] * 4
    report = figures(result)[DAY]
    assert report["events_sent"] == 4 and report["events_dead_lettered"] == 1
    dead = checks(result)["no_dead_letters"]
    assert not dead.passed and dead.metadata["dead_letters"].value == 1
    letters = DeltaTable(delivery.copy_uri() + "__zenskar_dead_letters").to_pyarrow_table().to_pylist()
    assert [letter["event_id"] for letter in letters] == ['["e5"]']
    assert letters[0]["http_status"] == 400 and "cust-2" in (letters[0]["event"] or "")
    delivery.api.clear_faults()
    again = delivery.deliver()
    assert figures(again)[DAY]["events_sent"] == 0  # a dead letter is not sent again by itself
    assert not checks(again)["no_dead_letters"].passed


def test_a_row_changed_after_delivery_is_reported_never_sent_again(delivery: Delivery) -> None:
    assert delivery.deliver().success
    changed = row("e1", 6, quantity=30, updated_at=dt.datetime(2026, 3, 9, tzinfo=dt.UTC))
    tables.upsert(
        delivery.warehouse.root, delivery.table, pa.Table.from_pylist([changed], ROW_SCHEMA), ["event_id"]
    )
    delivery.sync()
    result = delivery.deliver()
    assert result.success
    assert len(delivery.received()) == 5
    assert [e["data"]["quantity"] for e in delivery.received()].count(30) == 0
    check = checks(result)["delivered_rows_unchanged"]
    assert not check.passed
    assert check.metadata["changed_after_delivery"].value == 1
    assert check.metadata["sample_event_ids"].value == ['["e1"]']


def test_a_row_deleted_after_delivery_is_reported(delivery: Delivery) -> None:
    assert delivery.deliver().success
    # The copy loses e4, as a change feed's delete (or a full refresh of the window) would remove it.
    DeltaTable(delivery.copy_uri()).delete("event_id = 'e4'")
    result = delivery.deliver()
    check = checks(result)["delivered_rows_unchanged"]
    assert not check.passed and check.metadata["sample_event_ids"].value == ['["e4"]']


def test_the_ledger_alone_keeps_rows_from_going_out_again_after_the_key_is_forgotten(
    delivery: Delivery,
) -> None:
    assert delivery.deliver().success
    delivery.api.advance_clock(25 * 3600)
    result = delivery.deliver()
    assert result.success
    assert len(delivery.received()) == 5
    assert figures(result)[DAY]["events_sent"] == 0


def test_a_wrong_api_key_fails_the_run_naming_the_setting_not_the_key(delivery: Delivery) -> None:
    result = delivery.deliver(api_key="not-the-key-0123456789")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    message = failure.message if failure.cause is None else f"{failure.message} {failure.cause.message}"
    assert "ZENSKAR_API_KEY" in message and "not-the-key-0123456789" not in message
    assert delivery.received() == []
    assert delivery.deliver().success  # the right key: the events go out, once
    assert len(delivery.received()) == 5


def test_a_row_moved_to_another_window_after_delivery_is_reported_there_not_sent_again(
    delivery: Delivery,
) -> None:
    assert delivery.deliver().success
    next_day = "2026-03-09"
    moved = row(
        "e1",
        6,
        event_time=dt.datetime(2026, 3, 9, 15, tzinfo=dt.UTC),
        updated_at=dt.datetime(2026, 3, 10, tzinfo=dt.UTC),
    )
    tables.upsert(
        delivery.warehouse.root, delivery.table, pa.Table.from_pylist([moved], ROW_SCHEMA), ["event_id"]
    )
    delivery.sync(next_day)
    result = delivery.deliver(next_day)
    assert result.success
    assert figures(result)[next_day]["events_sent"] == 0
    assert len(delivery.received()) == 5  # e1 went out once, from March 8th
    check = checks(result)["delivered_rows_unchanged"]
    assert not check.passed and check.metadata["sample_event_ids"].value == ['["e1"]']

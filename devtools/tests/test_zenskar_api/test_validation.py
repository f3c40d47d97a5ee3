"""Each event is checked against its usage event's schema, all or nothing per request, and what is stored
reads back exactly as it was sent: every decimal digit, every character."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from .usage_client import FIELDS, SLUG, UsageClient, event

ACCEPTED: dict[str, list[Any]] = {
    "quantity": [0, -(2**63), 2**63 - 1],
    "ratio": [0, 1.5, -2e10, 1e-300, 12],
    "amount": [1.5, "1.5", 10, "-0.000000000000000001", "12345678901234567890.123456789012345678"],
    "billable": [True, False],
    "day": ["2026-02-28", "2024-02-29"],
    "at": ["2026-01-01T00:00:00Z", "2026-01-01T05:30:00.123456+05:30", "2026-01-01 00:00:00-08:00"],
    "metric": ["", "api_calls", "Zürich 東京 🚀"],
    "event_id": [
        "0b9c3c7e-4a8e-4f53-9a7e-3f0e6b5a4c21",
        "0B9C3C7E-4A8E-4F53-9A7E-3F0E6B5A4C21",
        "{0b9c3c7e-4a8e-4f53-9a7e-3f0e6b5a4c21}",
        "0b9c3c7e4a8e4f539a7e3f0e6b5a4c21",
    ],
}
REFUSED: dict[str, list[Any]] = {
    "quantity": [1.5, "1", True, 2**63, -(2**63) - 1, [1]],
    "ratio": ["1.5", True, 10**400, {"value": 1}],
    "amount": ["abc", "NaN", "Infinity", "1_000", " 1.5", "١٢", True, "1" * 39, "1e40", 10**38],
    "billable": [1, "true", 0],
    "day": ["2026-02-30", "2026-1-01", "20260101", "2026-W01-1", "2026-01-01T00:00:00Z", 20260101],
    "at": ["2026-01-01T00:00:00", "2026-01-01", "yesterday", 1767225600],
    "metric": [1, True, ["a"]],
    "event_id": [
        "not-a-uuid",
        "0b9c3c7e-4a8e-4f53-9a7e-3f0e6b5a4c2",
        1,
        "0b9c3c7e-4a8e-4f53-9a7e-3f0e6b5a4c2z",
    ],
}


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, values in ACCEPTED.items() for v in values])
def test_each_type_accepts_its_values(usage: UsageClient, field: str, value: Any) -> None:
    answer = usage.post(event(**{field: value}))
    assert (answer.status, answer.json()) == (200, {"accepted": 1}), f"{FIELDS[field]}: {value!r}"


@pytest.mark.parametrize(("field", "value"), [(f, v) for f, values in REFUSED.items() for v in values])
def test_each_type_refuses_other_values_naming_the_event_and_the_field(
    usage: UsageClient, field: str, value: Any
) -> None:
    answer = usage.post([event(quantity=1), event(**{field: value})])
    assert answer.status == 400, f"{FIELDS[field]}: {value!r}"
    payload = answer.json()
    assert payload["detail"] == "1 invalid event(s)"
    assert [(e["index"], e["field"]) for e in payload["errors"]] == [(1, f"data.{field}")]
    assert FIELDS[field] in payload["errors"][0]["message"]
    assert usage.api.events() == []  # nor the valid first event


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"customer_id": ""}, "customer_id"),
        ({"customer_id": 42}, "customer_id"),
        ({"customer_id": None}, "customer_id"),
        ({"timestamp": "2026-01-01T00:00:00"}, "timestamp"),
        ({"timestamp": None}, "timestamp"),
        ({"timestamp": 1767225600}, "timestamp"),
        ({"data": [1]}, "data"),
        ({"data": None}, "data"),
        ({"data": {"unknown": 1}}, "data.unknown"),
        ({"extra": 1}, "extra"),
    ],
)
def test_the_event_itself_is_checked(usage: UsageClient, changes: dict[str, Any], field: str) -> None:
    bad = {**event(quantity=1), **changes}
    bad = {k: v for k, v in bad.items() if not (k in changes and v is None and k != "data")}
    answer = usage.post(bad)
    assert answer.status == 400
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(0, field)]


def test_a_float64_beyond_the_range_of_a_double_is_refused(usage: UsageClient) -> None:
    raw = b'{"customer_id": "c", "timestamp": "2026-01-01T00:00:00Z", "data": {"ratio": -1e400}}'
    answer = usage.post(raw=raw)
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(0, "data.ratio")]


def test_an_array_element_that_is_not_an_object_is_invalid(usage: UsageClient) -> None:
    answer = usage.post([event(), 7])
    assert answer.json()["errors"] == [{"index": 1, "field": "event", "message": "an event is a JSON object"}]


def test_a_batch_is_stored_all_or_nothing_and_every_error_is_listed(usage: UsageClient) -> None:
    batch = [event(quantity=1), event(quantity="two"), event(quantity=3), event("", day="someday")]
    answer = usage.post(batch)
    assert answer.status == 400
    payload = answer.json()
    assert payload["detail"] == "2 invalid event(s)"
    assert [(e["index"], e["field"]) for e in payload["errors"]] == [
        (1, "data.quantity"),
        (3, "customer_id"),
        (3, "data.day"),
    ]
    assert usage.api.events() == []
    assert usage.api.stats()["answers"] == {"400": 1}


def test_fields_left_out_and_nulls_are_stored_as_null_and_data_may_be_left_out(usage: UsageClient) -> None:
    no_data = {"customer_id": "cust-1", "timestamp": "2026-01-01T00:00:00Z"}
    assert usage.post([event(quantity=None, metric="x"), no_data]).json() == {"accepted": 2}
    first, second = (e["data"] for e in usage.api.events())
    assert first == {**dict.fromkeys(FIELDS), "metric": "x"}
    assert second == dict.fromkeys(FIELDS)


def test_decimals_keep_every_digit_as_sent(usage: UsageClient) -> None:
    # Written by hand: json.dumps would go through float and lose the digits under test.
    raw = (
        '[{"customer_id": "c", "timestamp": "2026-01-01T00:00:00Z", "data": '
        '{"amount": 12345678901234567890.123456789012345678, "ratio": 0.1}},'
        ' {"customer_id": "c", "timestamp": "2026-01-01T00:00:00Z", "data": '
        '{"amount": "99999999999999999999.999999999999999999", "ratio": 0.000000000000000001}},'
        ' {"customer_id": "c", "timestamp": "2026-01-01T00:00:00Z", "data": '
        '{"amount": 12345.678900000000000000, "ratio": -0.0}}]'
    )
    assert usage.post(raw=raw.encode()).json() == {"accepted": 3}
    first, second, third = (e["data"] for e in usage.api.events())
    assert first["amount"] == Decimal("12345678901234567890.123456789012345678")
    assert second["amount"] == "99999999999999999999.999999999999999999"  # a string stays a string
    assert third["amount"] == Decimal("12345.678900000000000000")
    listed = usage.get(f"/_local/events?slug={SLUG}").data.decode()
    for text in (
        '"amount":12345678901234567890.123456789012345678',
        '"ratio":0.1',
        '"amount":"99999999999999999999.999999999999999999"',
        '"ratio":0.000000000000000001',
        '"amount":12345.678900000000000000',
        '"ratio":-0.0',
    ):
        assert text in listed


def test_strings_and_customer_ids_keep_any_unicode(usage: UsageClient) -> None:
    text = 'Zürich 東京 🚀 "quoted" \\ back\tslash \u2028'
    answer = usage.post(event("客户-ü", metric=text, timestamp="2026-01-01T00:00:00+05:30"))
    assert answer.status == 200
    (stored,) = usage.api.events()
    assert (stored["customer_id"], stored["data"]["metric"]) == ("客户-ü", text)
    assert stored["timestamp"] == "2026-01-01T00:00:00+05:30"


def test_values_come_back_as_sent(usage: UsageClient) -> None:
    sent = {
        "quantity": -(2**63),
        "ratio": 12,
        "amount": 10,
        "billable": False,
        "day": "2026-02-28",
        "at": "2026-01-01T05:30:00.123456+05:30",
        "metric": "",
        "event_id": "{0B9C3C7E-4A8E-4F53-9A7E-3F0E6B5A4C21}",
    }
    assert usage.post(event(**sent)).status == 200
    assert usage.api.events()[0]["data"] == sent
    assert json.loads(usage.get("/_local/events").data)["events"][0]["data"] == sent

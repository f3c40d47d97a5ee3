"""Idempotency-Key: a repeat within 24 hours is answered as the first time and stores nothing; the same key
with another body is refused; after 24 hours the key is forgotten and the same batch is stored again."""

from __future__ import annotations

import threading
import time

import urllib3

from .usage_client import UsageClient, event

DAY_S = 24 * 3600


def test_the_same_key_and_body_is_answered_again_and_stored_once(usage: UsageClient) -> None:
    batch = [event(quantity=1), event(quantity=2)]
    first = usage.post(batch, key="batch-1")
    again = usage.post(batch, key="batch-1")
    assert (first.status, first.json()) == (again.status, again.json()) == (200, {"accepted": 2})
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [e["idempotency_key"] for e in usage.api.events()] == ["batch-1", "batch-1"]
    stats = usage.api.stats()
    assert (stats["replayed"], stats["accepted_events"], stats["answers"]) == (1, 2, {"200": 2})


def test_a_refused_batch_is_answered_again_with_its_errors(usage: UsageClient) -> None:
    first = usage.post(event(quantity="one"), key="bad-batch")
    again = usage.post(event(quantity="one"), key="bad-batch")
    assert first.status == again.status == 400
    assert first.data == again.data
    assert again.headers["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_body_is_422(usage: UsageClient) -> None:
    assert usage.post(event(quantity=1), key="k").status == 200
    other = usage.post(event(quantity=2), key="k")
    assert (other.status, other.json()) == (
        422,
        {"detail": "Idempotency-Key k was used with a different body"},
    )
    # Byte for byte: the same event written with other spacing is another body.
    assert usage.post(raw=b" " + usage.post(event(quantity=1), key="k2").data, key="k2").status == 422
    assert [e["data"]["quantity"] for e in usage.api.events()] == [1, 1]


def test_a_key_is_kept_24_hours_then_forgotten(usage: UsageClient) -> None:
    batch = [event(quantity=1)]
    assert usage.post(batch, key="daily").status == 200
    usage.api.advance_clock(DAY_S - 60)
    assert usage.post(batch, key="daily").headers.get("Idempotent-Replayed") == "true"
    usage.api.advance_clock(61)  # 24 h and 1 s after the first use
    repeat = usage.post(batch, key="daily")
    assert (repeat.status, repeat.headers.get("Idempotent-Replayed")) == (200, None)
    assert len(usage.api.events()) == 2  # the double delivery the product must not cause
    assert usage.post(batch, key="daily").headers.get("Idempotent-Replayed") == "true"  # kept afresh


def test_a_repeat_while_the_first_is_processed_is_409(usage: UsageClient) -> None:
    usage.api.set_faults(delay_seconds=0.5)
    first: list[urllib3.BaseHTTPResponse] = []
    slow = threading.Thread(target=lambda: first.append(usage.post(event(quantity=1), key="slow")))
    slow.start()
    time.sleep(0.2)
    during = usage.post(event(quantity=1), key="slow")
    slow.join()
    assert during.status == 409
    assert "in progress" in during.json()["detail"]
    assert first[0].status == 200
    assert usage.post(event(quantity=1), key="slow").headers["Idempotent-Replayed"] == "true"
    assert len(usage.api.events()) == 1


def test_a_request_turned_away_before_processing_leaves_its_key_unused(usage: UsageClient) -> None:
    usage.api.set_faults(rate_limit_429=1, fail_5xx=1)
    assert usage.post(event(quantity=1), key="retried").status == 429
    assert usage.post(event(quantity=1), key="retried").status == 503
    accepted = usage.post(event(quantity=1), key="retried")
    assert (accepted.status, accepted.headers.get("Idempotent-Replayed")) == (200, None)
    assert len(usage.api.events()) == 1


def test_requests_without_a_key_are_all_stored(usage: UsageClient) -> None:
    for _ in range(3):
        assert usage.post(event(quantity=1)).status == 200
    assert len(usage.api.events()) == 3

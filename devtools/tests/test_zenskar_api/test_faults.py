"""Faults switched on while the API runs, each for the next N `/usage` requests: delay, 429 with Retry-After,
503 before processing, and after processing a dropped connection or a 500 (the events stored either way)."""

from __future__ import annotations

import time

import pytest
import urllib3

from zenskar_devtools.zenskar_api import LocalZenskarApiError

from .usage_client import UsageClient, event


def test_a_delay_holds_the_next_requests_back(usage: UsageClient) -> None:
    usage.api.set_faults(delay_seconds=0.3, delay_requests=2)
    timings = []
    for quantity in range(3):
        started = time.monotonic()
        assert usage.post(event(quantity=quantity)).status == 200
        timings.append(time.monotonic() - started)
    assert timings[0] >= 0.3 and timings[1] >= 0.3
    assert timings[2] < 0.3
    assert usage.api.faults()["delay_requests"] == 0


def test_429_says_when_to_retry_and_stores_nothing(usage: UsageClient) -> None:
    left = usage.api.set_faults(rate_limit_429=2, retry_after_seconds=3)
    assert (left["rate_limit_429"], left["retry_after_seconds"]) == (2, 3)
    for _ in range(2):
        answer = usage.post(event(quantity=1))
        assert (answer.status, answer.headers["Retry-After"]) == (429, "3")
    assert usage.api.events() == []
    assert usage.post(event(quantity=1)).status == 200
    assert usage.api.stats()["answers"] == {"200": 1, "429": 2}


def test_503_before_processing_stores_nothing(usage: UsageClient) -> None:
    usage.api.set_faults(fail_5xx=1)
    answer = usage.post(event(quantity=1))
    assert answer.status == 503
    assert "detail" in answer.json()
    assert usage.api.events() == []
    assert usage.api.faults()["fail_5xx"] == 0


def test_a_dropped_answer_stores_the_events_and_the_retry_is_replayed(usage: UsageClient) -> None:
    usage.api.set_faults(drop_after_processing=1)
    batch = [event(quantity=1), event(quantity=2)]
    with pytest.raises(urllib3.exceptions.ProtocolError):
        usage.post(batch, key="lost-answer")
    assert len(usage.api.events()) == 2  # stored, though the client cannot know it
    retry = usage.post(batch, key="lost-answer")
    assert (retry.status, retry.json(), retry.headers["Idempotent-Replayed"]) == (
        200,
        {"accepted": 2},
        "true",
    )
    assert len(usage.api.events()) == 2
    stats = usage.api.stats()
    assert (stats["dropped"], stats["replayed"], stats["accepted_events"]) == (1, 1, 2)


def test_a_500_after_processing_stores_the_events_and_the_retry_is_replayed(usage: UsageClient) -> None:
    usage.api.set_faults(fail_5xx_after_processing=1)
    failed = usage.post(event(quantity=1), key="stored-then-500")
    assert failed.status == 500
    assert len(usage.api.events()) == 1
    retry = usage.post(event(quantity=1), key="stored-then-500")
    assert (retry.status, retry.headers["Idempotent-Replayed"]) == (200, "true")
    assert len(usage.api.events()) == 1


def test_the_faults_of_one_request_apply_in_order(usage: UsageClient) -> None:
    usage.api.set_faults(delay_seconds=0.2, rate_limit_429=1, fail_5xx=1)
    started = time.monotonic()
    assert usage.post(event(quantity=1)).status == 429  # delayed, then rate-limited; the 503 waits
    assert time.monotonic() - started >= 0.2
    assert usage.post(event(quantity=1)).status == 503
    assert usage.post(event(quantity=1)).status == 200


def test_rejected_customers_make_their_events_invalid_until_cleared(usage: UsageClient) -> None:
    usage.api.set_faults(reject_customer_ids=["bad-customer"])
    answer = usage.post([event("good-customer"), event("bad-customer")])
    assert answer.status == 400
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(1, "customer_id")]
    assert usage.post(event("bad-customer")).status == 400  # not used up
    usage.api.clear_faults()
    assert usage.post(event("bad-customer")).status == 200


def test_faults_are_listed_and_cleared_and_unknown_ones_refused(usage: UsageClient) -> None:
    usage.api.set_faults(fail_5xx=2, drop_after_processing=1)
    assert usage.api.faults()["fail_5xx"] == 2
    usage.api.clear_faults()
    assert usage.api.faults() == {
        "delay_requests": 0,
        "rate_limit_429": 0,
        "fail_5xx": 0,
        "drop_after_processing": 0,
        "fail_5xx_after_processing": 0,
        "delay_seconds": 0.0,
        "retry_after_seconds": 1,
        "reject_customer_ids": [],
    }
    for bad in ({"fail_500": 1}, {"fail_5xx": -1}, {"fail_5xx": True}, {"reject_customer_ids": "c"}):
        with pytest.raises(LocalZenskarApiError) as refused:
            usage.api.set_faults(**bad)
        assert refused.value.status == 400
    assert usage.post(event(quantity=1)).status == 200

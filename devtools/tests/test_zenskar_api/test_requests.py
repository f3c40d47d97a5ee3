"""`POST /usage/<slug>` as a whole: auth, routing, the shapes of a body, answers on a kept-alive connection"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import urllib3

from zenskar_devtools.zenskar_api import LocalZenskarApi

from .usage_client import SLUG, UsageClient, event


@pytest.mark.parametrize("path", [f"/usage/{SLUG}", "/_local/stats", "/_local/events"])
def test_a_missing_or_wrong_api_key_is_401_and_a_missing_or_foreign_organisation_403(
    usage: UsageClient, path: str
) -> None:
    api = usage.api
    cases = [
        ({"organisation": api.organisation}, 401, "missing x-api-key header"),
        ({"organisation": api.organisation, "x-api-key": "wrong"}, 401, "invalid x-api-key"),
        ({"x-api-key": api.api_key}, 403, "missing organisation header"),
        (
            {"organisation": "other-org", "x-api-key": api.api_key},
            403,
            "the API key gives no access to organisation 'other-org'",
        ),
    ]
    for headers, status, detail in cases:
        method = "POST" if path.startswith("/usage/") else "GET"
        body = json.dumps(event(quantity=1)).encode()
        answer = usage.pool.request(method, api.api_url + path, body=body, headers=headers)
        assert (answer.status, answer.json()) == (status, {"detail": detail})
    assert api.events() == []


def test_an_unknown_slug_is_404(usage: UsageClient) -> None:
    answer = usage.post(event(), slug="no_such_event")
    assert answer.status == 404
    assert answer.json() == {"detail": "no usage event with api_slug 'no_such_event'"}


def test_one_event_or_an_array_of_them_is_accepted_and_stored_in_order(usage: UsageClient) -> None:
    single = usage.post(event("cust-0", quantity=0))
    assert (single.status, single.json()) == (200, {"accepted": 1})
    batch = usage.post([event(f"cust-{i}", quantity=i) for i in range(1, 4)])
    assert (batch.status, batch.json()) == (200, {"accepted": 3})
    stored = usage.api.events()
    assert [(e["customer_id"], e["data"]["quantity"]) for e in stored] == [(f"cust-{i}", i) for i in range(4)]
    assert [e["seq"] for e in stored] == sorted(e["seq"] for e in stored)
    assert all(e["slug"] == SLUG and e["timestamp"] == "2026-01-01T00:00:00Z" for e in stored)
    assert all(e["idempotency_key"] is None and e["received_at"].endswith("+00:00") for e in stored)
    assert usage.api.stats()["accepted_events"] == 4


@pytest.mark.parametrize(
    ("raw", "status", "detail"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b"", 400, "the body is not JSON"),
        (b'{"quantity": NaN}', 400, "the body is not JSON"),
        (b"42", 400, "the body is an event (a JSON object) or an array of events"),
        (b'"an event"', 400, "the body is an event (a JSON object) or an array of events"),
        (b"[]", 400, "the array holds no events"),
    ],
)
def test_a_body_that_is_not_an_event_or_an_array_of_events_is_400(
    usage: UsageClient, raw: bytes, status: int, detail: str
) -> None:
    answer = usage.post(raw=raw)
    assert answer.status == status
    assert answer.json()["detail"].startswith(detail)


def test_at_most_1000_events_per_request(usage: UsageClient) -> None:
    too_many = usage.post([event(quantity=i) for i in range(1001)])
    assert too_many.status == 413
    assert too_many.json() == {"detail": "1001 events: at most 1000 per request"}
    assert usage.post([event(quantity=i) for i in range(1000)]).json() == {"accepted": 1000}
    assert len(usage.api.events()) == 1000


def test_answers_keep_the_connection_alive_and_always_say_their_length(usage: UsageClient) -> None:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(usage.api.api_url.rsplit(":", 1)[1]), maxsize=1)
    headers = {**usage.api.headers(), "Content-Type": "application/json"}
    bodies = [event(quantity=1), [], event(quantity="one"), [event(quantity=2)]]
    statuses = []
    for body in bodies:
        answer = pool.urlopen("POST", f"/usage/{SLUG}", body=json.dumps(body).encode(), headers=headers)
        assert answer.headers["Content-Type"] == "application/json"
        assert int(answer.headers["Content-Length"]) == len(answer.data)
        statuses.append(answer.status)
    assert statuses == [200, 400, 400, 200]
    assert pool.num_connections == 1


def test_unknown_paths_are_404_and_wrong_methods_405(usage: UsageClient) -> None:
    assert usage.get("/nothing/here").status == 404
    assert usage.get("/_local/nothing").status == 404
    assert usage.get(f"/usage/{SLUG}").status == 405
    patched = usage.pool.request("PATCH", f"{usage.api.api_url}/usage/{SLUG}", headers=usage.api.headers())
    assert (patched.status, patched.headers["Content-Type"]) == (405, "application/json")
    assert (
        usage.pool.request("DELETE", usage.api.api_url + "/_local/stats", headers=usage.api.headers()).status
        == 405
    )


def test_the_client_api_runs_the_server_in_a_subprocess_too(tmp_path: Path) -> None:
    with LocalZenskarApi(tmp_path / "api", schemas={SLUG: {"quantity": "Int64"}}).start_process() as api:
        assert api.usage_events() == {SLUG: {"quantity": "Int64"}}
        client = UsageClient(api)
        assert client.post(event(quantity=7)).json() == {"accepted": 1}
        assert [e["data"] for e in api.events()] == [{"quantity": 7}]
        assert api.environment()["ZENSKAR_API_URL"] == api.api_url

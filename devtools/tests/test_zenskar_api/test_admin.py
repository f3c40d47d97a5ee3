"""The `/_local/...` endpoints that tests and the demo drive the API with, and what outlives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest
import urllib3

from zenskar_devtools.zenskar_api import EVENT_TYPES, LocalZenskarApi, LocalZenskarApiError

from .usage_client import FIELDS, SLUG, UsageClient, event


def test_usage_events_are_defined_redefined_and_listed(usage: UsageClient) -> None:
    api = usage.api
    assert api.define("seats", {"count": "Int64"}) == {"count": "Int64"}
    assert api.usage_events() == {SLUG: FIELDS, "seats": {"count": "Int64"}}
    api.define("seats", {"count": "Int64", "plan": "String"})
    assert api.usage_events()["seats"] == {"count": "Int64", "plan": "String"}
    assert usage.post(event(plan="pro"), slug="seats").status == 200
    assert set(FIELDS.values()) == set(EVENT_TYPES)


@pytest.mark.parametrize("schema", [{"count": "Integer"}, {}, {"count": None}])
def test_a_schema_with_an_unknown_type_is_refused(
    zenskar_api: LocalZenskarApi, schema: dict[str, str]
) -> None:
    with pytest.raises(LocalZenskarApiError) as refused:
        zenskar_api.define("seats", schema)
    assert refused.value.status == 400
    assert zenskar_api.usage_events() == {}


def test_events_are_listed_in_arrival_order_per_slug_or_all(usage: UsageClient) -> None:
    usage.api.define("seats", {"count": "Int64"})
    usage.post(event("a", quantity=1))
    usage.post(event("b", count=2), slug="seats", key="seat-batch")
    usage.post(event("c", quantity=3))
    assert [e["customer_id"] for e in usage.api.events()] == ["a", "b", "c"]
    assert [e["customer_id"] for e in usage.api.events(SLUG)] == ["a", "c"]
    (seat,) = usage.api.events("seats")
    assert (seat["slug"], seat["data"], seat["idempotency_key"]) == ("seats", {"count": 2}, "seat-batch")
    assert usage.api.events("nothing") == []


def test_stats_count_requests_and_answers(usage: UsageClient) -> None:
    usage.post([event(quantity=1), event(quantity=2)])
    usage.post(event(quantity="x"))
    usage.post(event(), slug="unknown")
    usage.post(event(), headers={})
    assert usage.api.stats() == {
        "requests": 4,
        "accepted_events": 2,
        "replayed": 0,
        "answers": {"200": 1, "400": 1, "401": 1, "404": 1},
        "dropped": 0,
    }


def test_the_clock_only_moves_forward(zenskar_api: LocalZenskarApi) -> None:
    with pytest.raises(LocalZenskarApiError) as refused:
        zenskar_api.advance_clock(-1)
    assert refused.value.status == 400


def test_reset_forgets_events_keys_faults_and_stats_but_keeps_the_schemas(usage: UsageClient) -> None:
    usage.post(event(quantity=1), key="k")
    usage.api.set_faults(fail_5xx=5)
    usage.api.reset()
    assert usage.api.events() == []
    assert usage.api.faults()["fail_5xx"] == 0
    assert usage.api.stats()["requests"] == 0
    assert usage.api.usage_events() == {SLUG: FIELDS}
    again = usage.post(event(quantity=1), key="k")
    assert (again.status, again.headers.get("Idempotent-Replayed")) == (200, None)


def test_schemas_events_and_keys_outlive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "api"
    with LocalZenskarApi(state, api_key="key", schemas={SLUG: FIELDS}) as api:
        assert UsageClient(api).post(event(quantity=1), key="k").status == 200
    with LocalZenskarApi(state, api_key="key").start() as api:
        assert api.usage_events() == {SLUG: FIELDS}
        assert [e["data"]["quantity"] for e in api.events()] == [1]
        repeat = UsageClient(api).post(event(quantity=1), key="k")
        assert repeat.headers["Idempotent-Replayed"] == "true"
        assert UsageClient(api).post(event(quantity=2)).status == 200
        assert [e["seq"] for e in api.events()] == [1, 2]


def test_a_stopped_api_answers_no_pooled_connection(tmp_path: Path) -> None:
    api = LocalZenskarApi(tmp_path / "api", schemas={SLUG: FIELDS}).start()
    client = UsageClient(api)
    url = api.api_url
    assert client.post(event(quantity=1)).status == 200
    api.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        client.pool.request("POST", f"{url}/usage/{SLUG}", body=b"{}", headers=api.headers())

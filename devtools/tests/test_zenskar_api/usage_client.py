"""What the local Zenskar API's tests share: a usage event with a field of every type, and a client that
posts to `/usage/<slug>` over a urllib3 pool, as the product's delivery does (without retries: the tests
look at every answer)."""

from __future__ import annotations

import json
from typing import Any

import urllib3

from zenskar_devtools.zenskar_api import LocalZenskarApi

SLUG = "api_calls"
FIELDS = {
    "quantity": "Int64",
    "ratio": "Float64",
    "amount": "Decimal",
    "billable": "Bool",
    "day": "Date32",
    "at": "DateTime64",
    "metric": "String",
    "event_id": "UUID",
}
TIMESTAMP = "2026-01-01T00:00:00Z"


def event(customer_id: str = "cust-1", timestamp: str = TIMESTAMP, **data: Any) -> dict[str, Any]:
    return {"customer_id": customer_id, "timestamp": timestamp, "data": data}


class UsageClient:
    def __init__(self, api: LocalZenskarApi) -> None:
        self.api = api
        self.pool = urllib3.PoolManager(retries=False)

    def post(
        self,
        body: Any = None,
        *,
        slug: str = SLUG,
        raw: bytes | None = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:
        sent = {**self.api.headers(), "Content-Type": "application/json"} if headers is None else headers
        if key is not None:
            sent["Idempotency-Key"] = key
        data = raw if raw is not None else json.dumps(body).encode()
        return self.pool.request("POST", f"{self.api.api_url}/usage/{slug}", body=data, headers=sent)

    def get(self, path: str, headers: dict[str, str] | None = None) -> urllib3.BaseHTTPResponse:
        sent = self.api.headers() if headers is None else headers
        return self.pool.request("GET", f"{self.api.api_url}{path}", headers=sent)

"""Zenskar's usage-event API as the delivery sends to it: one batch per request, its idempotency key on every
attempt, and what each answer means for the batch.

- 2xx: accepted.
- 429, 5xx, 409 (the same key still being processed), a timeout, a refused or dropped connection: sent
  again, the same bytes under the same key, after a backoff (`Retry-After` when Zenskar gives one), until
  `max_attempts`. A connection dropped after Zenskar took the request is why the key matters: the retry is
  answered from Zenskar's memory of the first, and nothing is billed twice.
- 401, 403, 404, and redirects: the settings are wrong (the key, the organisation, the usage event's slug,
  the url), not the events; the delivery stops and says which. The batch stays planned, to go again under
  the same key once the settings are right: an earlier attempt may have been ingested.
- Any other 4xx: Zenskar refuses the batch (an event it will not take); nothing of it was ingested.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from enum import StrEnum

import urllib3
from urllib3.exceptions import HTTPError

ANSWER_LIMIT = 2000  # characters of an answer kept in the ledger and dead letters
SETTINGS_STATUSES = {401: "ZENSKAR_API_KEY", 403: "ZENSKAR_ORGANISATION", 404: "deliver.api_slug"}
# A redirect means ZENSKAR_API_URL is not the API's address.


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"  # a 4xx about the batch: its events are not ingested
    WRONG_SETTINGS = "wrong_settings"  # 401, 403, 404
    GAVE_UP = "gave_up"  # still failing after `max_attempts`: the batch stays planned, to be sent again


@dataclass(frozen=True)
class Answer:
    outcome: Outcome
    status: int | None  # None: no answer was received (the last attempt's connection failed)
    body: str
    attempts: int


class RateLimit:
    """At most `per_second` requests started per second, across threads (None: no limit)."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_at = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_at)
            self.next_at = start + self.interval
        if start > now:
            time.sleep(start - now)


class UsageApiClient:
    """Sends batches to `POST {api_url}/usage/{slug}`; thread-safe (one connection pool per client)."""

    def __init__(
        self,
        api_url: str,
        organisation: str,
        api_key: str,
        *,
        max_concurrent_requests: int = 4,
        requests_per_second: float | None = None,
        timeout_seconds: float = 30.0,
        max_attempts: int = 8,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.organisation = organisation
        self._api_key = api_key
        self.max_attempts = max_attempts
        self.max_backoff_seconds = max_backoff_seconds
        self.rate_limit = RateLimit(requests_per_second)
        self.pool = urllib3.PoolManager(
            maxsize=max_concurrent_requests,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=min(10.0, timeout_seconds), read=timeout_seconds),
        )

    def __repr__(self) -> str:  # never the key
        return f"UsageApiClient({self.api_url!r}, organisation={self.organisation!r})"

    def send(self, slug: str, body: bytes, idempotency_key: str, deadline: float | None = None) -> Answer:
        """Send one batch until it is answered for good (see the module docstring); no attempt starts after
        `deadline` (epoch seconds: when Zenskar may have forgotten the key), which gives up instead."""
        headers = {
            "content-type": "application/json",
            "organisation": self.organisation,
            "x-api-key": self._api_key,
            "Idempotency-Key": idempotency_key,
        }
        url = f"{self.api_url}/usage/{slug}"
        status: int | None = None
        text = ""
        for attempt in range(1, self.max_attempts + 1):
            self.rate_limit.wait()
            if deadline is not None and time.time() > deadline:
                return Answer(
                    Outcome.GAVE_UP, status, "not sent: past the idempotency key's lifetime", attempt
                )
            retry_after: float | None = None
            try:
                response = self.pool.request("POST", url, body=body, headers=headers, preload_content=True)
            except HTTPError as error:  # refused, timed out, or dropped before an answer came
                status, text = None, f"no answer: {type(error).__name__}"
            except (
                Exception
            ) as error:  # anything else: by its class alone, never its text (it may quote headers)
                status, text = None, f"not sent: {type(error).__name__}"
            else:
                status, text = response.status, self.redact(response.data.decode("utf-8", "replace"))
                if 200 <= status < 300:
                    return Answer(Outcome.ACCEPTED, status, text[:ANSWER_LIMIT], attempt)
                if status in SETTINGS_STATUSES or 300 <= status < 400:
                    return Answer(Outcome.WRONG_SETTINGS, status, text[:ANSWER_LIMIT], attempt)
                if 400 <= status < 500 and status not in (408, 409, 429):
                    return Answer(Outcome.REFUSED, status, text[:ANSWER_LIMIT], attempt)
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt < self.max_attempts:
                time.sleep(self._backoff(attempt, retry_after))
        return Answer(Outcome.GAVE_UP, status, text[:ANSWER_LIMIT], self.max_attempts)

    def redact(self, text: str) -> str:
        """`text` without the API key, should an answer ever quote it."""
        return text.replace(self._api_key, "***") if len(self._api_key) >= 4 else text

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_seconds * 4)
        ceiling = min(self.max_backoff_seconds, 0.25 * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def close(self) -> None:
        self.pool.clear()


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

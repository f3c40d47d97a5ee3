"""How the local Zenskar API answers `POST /usage/<slug>`: the Idempotency-Key, the injected faults, then
validation and storage; and the counts `GET /_local/stats` reports.

A key is scoped to the organisation and kept 24 hours from its first use by the server's `Clock`, which
tests move forward. Only processed requests (2xx, and 400 for what they sent) make a key remember its
answer: a request turned away by a fault before processing leaves the key unused, so its retry is processed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

from zenskar_devtools.zenskar_api.faults import UsageFaults
from zenskar_devtools.zenskar_api.schemas import EventSchema, check_schema
from zenskar_devtools.zenskar_api.store import KeyedAnswer, UsageStore

MAX_EVENTS_PER_REQUEST = 1000
IDEMPOTENCY_TTL_S = 24 * 3600
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # JSON
    headers: tuple[tuple[str, str], ...] = ()
    dropped: bool = False  # close the connection instead of answering
    replayed: bool = False


def json_answer(status: int, payload: Mapping[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    return Answer(status, json.dumps(payload, ensure_ascii=False).encode(), headers)


def detail(status: int, message: str) -> Answer:
    return json_answer(status, {"detail": message})


class Clock:
    """Wall-clock time plus however far tests have moved it forward."""

    def __init__(self) -> None:
        self._offset_s = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset_s

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset_s += seconds
            return self._offset_s


class UsageStats:
    """What `/usage` requests came and how they were answered, since the start or the last reset."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = self._accepted_events = self._replayed = self._dropped = 0
            self._answers: Counter[int] = Counter()

    def request(self) -> None:
        with self._lock:
            self._requests += 1

    def accepted(self, events: int) -> None:
        with self._lock:
            self._accepted_events += events

    def answered(self, answer: Answer) -> None:
        with self._lock:
            if answer.dropped:
                self._dropped += 1
            else:
                self._answers[answer.status] += 1
            self._replayed += answer.replayed

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "accepted_events": self._accepted_events,
                "replayed": self._replayed,
                "answers": {str(status): n for status, n in sorted(self._answers.items())},
                "dropped": self._dropped,
            }


class UsageService:
    """The usage events' schemas and the handling of a posted batch; shared by the server's threads."""

    def __init__(
        self, store: UsageStore, organisation: str, faults: UsageFaults, clock: Clock, stats: UsageStats
    ) -> None:
        self.store = store
        self.organisation = organisation
        self.faults = faults
        self.clock = clock
        self.stats = stats
        self._schemas = {slug: EventSchema(slug, fields) for slug, fields in store.schemas().items()}
        # Keys of requests being processed now, with their body's sha256: a repeat meanwhile gets 409.
        self._in_progress: dict[str, str] = {}
        self._keys_lock = threading.Lock()

    def define(self, slug: str, fields: Any) -> dict[str, str]:
        checked = check_schema(fields)
        self.store.define(slug, checked)
        self._schemas[slug] = EventSchema(slug, checked)
        return checked

    def schemas(self) -> dict[str, dict[str, str]]:
        return {slug: dict(schema.fields) for slug, schema in sorted(self._schemas.items())}

    def reset(self) -> None:
        self.store.forget_received()
        self.faults.clear()
        self.stats.reset()

    def post(self, slug: str, body: bytes, key: str | None) -> Answer:
        """The answer to `POST /usage/<slug>` with this body and Idempotency-Key (None: without one)."""
        digest = hashlib.sha256(body).hexdigest() if key is not None else ""
        answer: Answer | None = None
        claimed = False
        if key is not None:
            answer = self._repeat_answer(key, digest)
            claimed = answer is None
        try:
            before = self.faults.before_processing()
            if before.delay_seconds:
                time.sleep(before.delay_seconds)
            if before.status == 429:
                retry_after = (("Retry-After", str(before.retry_after_seconds)),)
                return json_answer(429, {"detail": "Too Many Requests (injected)"}, retry_after)
            if before.status is not None:
                return detail(before.status, "Service Unavailable (injected)")
            if answer is None:
                answer = self._process(slug, body, key, digest)
        finally:
            if claimed and key is not None:
                with self._keys_lock:
                    del self._in_progress[key]
        assert answer is not None
        after = self.faults.after_processing()
        if after == "drop":
            return replace(answer, dropped=True)
        if after == "fail":
            return detail(500, "Internal Server Error (injected after processing)")
        return answer

    def _repeat_answer(self, key: str, digest: str) -> Answer | None:
        """The answer for a key met before (replay, 409 or 422), or None after claiming the key as new."""
        with self._keys_lock:
            underway = self._in_progress.get(key)
            if underway is None:
                keyed = self.store.keyed_answer(self.organisation, key, self.clock.now() - IDEMPOTENCY_TTL_S)
                if keyed is None:
                    self._in_progress[key] = digest
                    return None
                if keyed.body_sha256 == digest:
                    return Answer(keyed.status, keyed.answer, ((REPLAYED_HEADER, "true"),), replayed=True)
            elif underway == digest:
                return detail(409, f"a request with Idempotency-Key {key} is in progress")
        return detail(422, f"Idempotency-Key {key} was used with a different body")

    def _process(self, slug: str, body: bytes, key: str | None, digest: str) -> Answer:
        schema = self._schemas.get(slug)
        if schema is None:
            return detail(404, f"no usage event with api_slug '{slug}'")
        started = self.clock.now()
        try:
            payload = json.loads(body, parse_float=Decimal, parse_constant=_not_json)
        except (ValueError, RecursionError) as error:
            return self._remembered(key, digest, started, detail(400, f"the body is not JSON: {error}"))
        events = [payload] if isinstance(payload, dict) else payload
        if not isinstance(events, list):
            answer = detail(400, "the body is an event (a JSON object) or an array of events")
            return self._remembered(key, digest, started, answer)
        if not events:
            return self._remembered(key, digest, started, detail(400, "the array holds no events"))
        if len(events) > MAX_EVENTS_PER_REQUEST:
            return detail(413, f"{len(events)} events: at most {MAX_EVENTS_PER_REQUEST} per request")
        rows, errors = schema.validate(events, self.faults.rejected_customers)
        if errors:
            invalid = len({error.index for error in errors})
            answer = json_answer(
                400,
                {"detail": f"{invalid} invalid event(s)", "errors": [error.to_json() for error in errors]},
            )
            return self._remembered(key, digest, started, answer)
        answer = json_answer(200, {"accepted": len(rows)})
        keyed = self._keyed(key, digest, started, answer)
        self.store.store(slug, rows, datetime.fromtimestamp(started, UTC).isoformat(), keyed)
        self.stats.accepted(len(rows))
        return answer

    def _keyed(self, key: str | None, digest: str, started: float, answer: Answer) -> KeyedAnswer | None:
        if key is None:
            return None
        return KeyedAnswer(self.organisation, key, digest, answer.status, answer.body, started)

    def _remembered(self, key: str | None, digest: str, started: float, answer: Answer) -> Answer:
        keyed = self._keyed(key, digest, started, answer)
        if keyed is not None:
            self.store.remember(keyed)
        return answer


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not a JSON number")

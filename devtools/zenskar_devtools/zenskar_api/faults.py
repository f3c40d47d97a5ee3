"""Faults the local Zenskar API injects into the next `/usage` requests, so that delivery code meets what the
real API can do to it: answer slowly, rate-limit (429), fail (5xx), or lose its answer after storing events.

Each counter is the number of coming `/usage` requests it hits; each request it hits takes one off it.
Per request they apply in this order: delay, then 429, then 5xx before processing (either of those two ends
the request, unprocessed), then processing, then dropping the connection or 500 after processing.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

COUNTERS = (
    "delay_requests",
    "rate_limit_429",
    "fail_5xx",
    "drop_after_processing",
    "fail_5xx_after_processing",
)
SETTINGS = (*COUNTERS, "delay_seconds", "retry_after_seconds", "reject_customer_ids")
_MAX_DELAY_S = 600.0

AfterProcessing = Literal["drop", "fail"]


class FaultSettingsError(ValueError):
    """A `POST /_local/faults` body that names an unknown fault or gives one a bad value."""


class BeforeProcessing(NamedTuple):
    delay_seconds: float  # 0: no delay
    status: int | None  # 429 or 503 instead of processing; None: process
    retry_after_seconds: int


class UsageFaults:
    """The faults switched on, shared by the server's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._delay_seconds = 0.0
        self._retry_after_seconds = 1
        self._rejected_customers: frozenset[str] = frozenset()

    def update(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Switch on the faults in `settings` (each replaces its current value); what is on afterwards."""
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise FaultSettingsError(f"unknown fault setting(s) {unknown}; known: {', '.join(SETTINGS)}")
        counts = {name: _count(name, settings[name]) for name in COUNTERS if name in settings}
        delay = settings.get("delay_seconds")
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= _MAX_DELAY_S
        ):
            raise FaultSettingsError(f"delay_seconds must be a number of seconds from 0 to {_MAX_DELAY_S:g}")
        retry_after = settings.get("retry_after_seconds")
        if retry_after is not None:
            retry_after = _count("retry_after_seconds", retry_after)
        rejected = settings.get("reject_customer_ids")
        if rejected is not None and (
            not isinstance(rejected, list) or not all(isinstance(c, str) for c in rejected)
        ):
            raise FaultSettingsError("reject_customer_ids must be a list of customer ids")
        with self._lock:
            self._counts.update(counts)
            if delay is not None:
                self._delay_seconds = float(delay)
                if "delay_requests" not in settings and self._counts["delay_requests"] == 0:
                    self._counts["delay_requests"] = 1  # a delay alone is for the next request
            if retry_after is not None:
                self._retry_after_seconds = retry_after
            if rejected is not None:
                self._rejected_customers = frozenset(rejected)
            return self._state()

    def clear(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._delay_seconds = 0.0
            self._retry_after_seconds = 1
            self._rejected_customers = frozenset()

    def state(self) -> dict[str, Any]:
        with self._lock:
            return self._state()

    def _state(self) -> dict[str, Any]:
        return {
            **self._counts,
            "delay_seconds": self._delay_seconds,
            "retry_after_seconds": self._retry_after_seconds,
            "reject_customer_ids": sorted(self._rejected_customers),
        }

    @property
    def rejected_customers(self) -> frozenset[str]:
        return self._rejected_customers

    def before_processing(self) -> BeforeProcessing:
        """What happens to a `/usage` request before it is processed; takes it off the counters it hits."""
        with self._lock:
            delay = self._delay_seconds if self._take("delay_requests") else 0.0
            status = 429 if self._take("rate_limit_429") else 503 if self._take("fail_5xx") else None
            return BeforeProcessing(delay, status, self._retry_after_seconds)

    def after_processing(self) -> AfterProcessing | None:
        """Whether a processed request loses its answer ("drop") or gets a 500 ("fail") instead."""
        with self._lock:
            if self._take("drop_after_processing"):
                return "drop"
            return "fail" if self._take("fail_5xx_after_processing") else None

    def _take(self, counter: str) -> bool:
        if self._counts[counter] <= 0:
            return False
        self._counts[counter] -= 1
        return True


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultSettingsError(f"{name} must be a whole number from 0")
    return value

"""Faults the local warehouse can be told to inject, so that tests see what the connector does with them.

Each rule applies to the next `count` requests (or to a `fraction` of all requests until cleared). Rules are
switched on and off while the server runs: in-process through `FaultInjector`, from another process through
the HTTP control path `/_local/faults` (see `server.py`).
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class FaultKind(StrEnum):
    STATUS = "status"  # answer with an HTTP status (503 or 429, with Retry-After)
    RESET = "reset"  # reset the TCP connection without answering
    DELAY = "delay"  # answer after `seconds`
    FAIL_AFTER_ROWS = "fail_after_rows"  # the next statement fails once it has returned `rows` rows


@dataclass
class FaultRule:
    kind: FaultKind
    count: int | None = 1  # how many requests (or statements) it applies to; None: until cleared
    fraction: float = 1.0  # the share of requests it applies to
    status: int = 503
    retry_after: int | None = 1
    seconds: float = 0.0
    rows: int = 0
    rpc: str | None = None  # only Thrift calls of this name (e.g. "FetchResults"); None: every request

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        rule = cls(**known)
        rule.kind = FaultKind(rule.kind)
        return rule


class FaultInjector:
    """Thread-safe set of active fault rules; the server asks it once per request."""

    def __init__(self, seed: int = 0) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.injected: dict[str, int] = {}

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in self._rules]

    def for_request(self, rpc: str | None) -> FaultRule | None:
        """The HTTP-level fault (status, reset, delay) to apply to this request, if any."""
        return self._take({FaultKind.STATUS, FaultKind.RESET, FaultKind.DELAY}, rpc)

    def for_statement(self) -> FaultRule | None:
        return self._take({FaultKind.FAIL_AFTER_ROWS}, None)

    def _take(self, kinds: set[FaultKind], rpc: str | None) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or (rule.rpc is not None and rule.rpc != rpc):
                    continue
                if rule.fraction < 1.0 and self._random.random() >= rule.fraction:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count <= 0:
                        self._rules.remove(rule)
                self.injected[rule.kind] = self.injected.get(rule.kind, 0) + 1
                return rule
        return None

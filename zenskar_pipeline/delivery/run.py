"""What one delivery run is given (`DeliveryRun`), what it reports (`DeliveryReport`), its plan (`Plan`),
and the errors that end it."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from zenskar_pipeline.delivery.batches import Batch, BatchSlice
from zenskar_pipeline.delivery.client import UsageApiClient
from zenskar_pipeline.delivery.events import EventSource
from zenskar_pipeline.delivery.ledger import DeliveryLedger
from zenskar_pipeline.destinations import Destination

LOG = logging.getLogger("zenskar_pipeline.delivery")


class IdentityChangedError(Exception):
    """The stream now tells its events apart by other columns (or types) than the ledger's events were
    planned by: every event would get a new id and go out again."""


class DeliverySettingsError(Exception):
    """Zenskar refused the settings (401, 403, 404): the message names the one to fix."""


class UndeliveredError(Exception):
    """Batches still unanswered after their retries; they stay planned, and the next run sends them."""


@dataclass
class WindowFigures:
    """One window's delivery: events the copy holds there now, and what became of them."""

    events: int = 0
    sent: int = 0  # accepted by Zenskar in this run
    delivered_before: int = 0  # accepted in an earlier run: skipped
    dead_lettered: int = 0  # in this run
    unanswered: int = 0  # in batches still open after this run


@dataclass
class DeliveryReport:
    stream: str
    windows: dict[str | None, WindowFigures]
    seconds: float = 0.0
    requests: int = 0  # batches answered in this run
    copy_version: int | None = None
    ledger_version: int | None = None
    changed_after_delivery: list[str] = field(default_factory=list)  # event ids, sorted
    dead_letters: list[str] = field(default_factory=list)  # event ids of these windows' dead letters
    dead_letters_by_window: dict[str | None, list[str]] = field(default_factory=dict)
    changed_by_window: dict[str | None, list[str]] = field(default_factory=dict)
    accepted_earlier: list[Batch] = field(default_factory=list)  # earlier runs' batches (or halves) accepted

    @property
    def sent(self) -> int:
        return sum(w.sent for w in self.windows.values())

    @property
    def events_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class DeliveryRun:
    """Everything one stream's delivery needs."""

    stream: str
    copy: Destination
    ledger: DeliveryLedger
    client: UsageApiClient
    source: EventSource
    partitions: Sequence[str] | None  # None: the unpartitioned stream's one scope
    run_id: str
    identity: str  # how event ids are made (`events.identity_description`), checked against the ledger's
    batch_size: int = 500
    max_concurrent_requests: int = 4
    log: logging.Logger | logging.LoggerAdapter[logging.Logger] = LOG
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    # This attempt's mark on its ledger commits: two attempts of one run (a retried step whose first attempt
    # still lives) are two writers, and neither takes the other's commits for its own.
    attempt: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def writer(self) -> str:
        return f"{self.run_id}:{self.attempt}"


@dataclass(frozen=True)
class Plan:
    """What step 3 planned, and what the ledger said before it."""

    batches: list[Batch]  # to send at once: open ones first, then the first planned ones
    later: list[list[BatchSlice]]  # planned in chunks, each committed before it is sent
    resent: list[Batch]  # the open ones
    version: int | None  # the ledger's, after the plan
    before: pa.Table  # the ledger's entries of these windows as the plan read them
    elsewhere: pa.Table  # its entries, in other windows, of events these windows hold

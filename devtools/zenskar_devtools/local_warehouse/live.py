"""Live demo writes: new Delta versions of `main.billing.usage_events` every few seconds, as a metering
pipeline keeps landing events, late corrections and deletes, for the sensor and the syncs to follow.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.seed import (
    _DAY,
    _EPOCH,
    _HOUR,
    _MS,
    CUSTOMERS,
    USAGE_EVENTS,
    USAGE_SCHEMA,
    _CustomerMix,
    _EventLog,
    _max_us,
    _remetered,
    _ts,
    _ts_scalar,
)

DEFAULT_INTERVAL = 5.0  # seconds between steps
RECENT_DAYS = 7  # corrections and deletes hit events of the last week, as late fixes do
LATE_DAYS = (1, 10)  # late events land this many days back
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class LiveMix:
    """What one step writes: new events every time; corrections and deletes now and then."""

    new_events: int = 40  # the mean; every step inserts at least one, which keeps the newest id in the table
    late_share: float = 0.1  # of the new events, those landing in older days
    correction_chance: float = 0.5
    max_corrections: int = 6
    delete_chance: float = 0.2
    max_deletes: int = 3


@dataclass(frozen=True)
class LiveVersion:
    """One Delta version the live writer committed, and what it changed."""

    version: int
    inserted: int = 0
    late: int = 0  # of `inserted`, events dated days back
    updated: int = 0
    moved: int = 0  # of `updated`, events whose event_time moved to another day
    deleted: int = 0

    def line(self) -> str:
        inserted = f"{self.inserted} inserted" + (f" ({self.late} in older days)" if self.late else "")
        updated = f"{self.updated} updated" + (f" ({self.moved} moved to another day)" if self.moved else "")
        return f"{USAGE_EVENTS} version {self.version}: {inserted}, {updated}, {self.deleted} deleted"


def _never() -> bool:
    return False


@dataclass
class LiveUsageWriter:
    """Writes steps on top of a seeded usage events table; its id sequence and updated_at high-water mark
    carry on from what the table holds, so a restarted writer never reuses an id or writes behind a cursor.
    One writer per table: two at once would draw the same ids."""

    root: Path
    seed: int
    mix: LiveMix
    log: _EventLog = field(repr=False)

    @classmethod
    def open(cls, root: Path, seed: int = 7, mix: LiveMix | None = None) -> LiveUsageWriter:
        """A writer for the usage events under `root`; `FileNotFoundError` when they are not seeded."""
        root = Path(root)
        written = tables.open_table(root, USAGE_EVENTS).to_pyarrow_dataset()
        written_table = written.to_table(columns=["event_id", "updated_at"])
        values = _id_values(written_table["event_id"])
        # The seed's ids are a bijective mix of a running value: carrying on past the greatest value in the
        # table gives ids that cannot be there. Each step inserts before it deletes, so that greatest value
        # is never deleted and the table always tells where the sequence stands.
        if len(values):
            id_key = int(values.max()) + 1
        else:
            id_key = int(np.random.default_rng([seed, 1]).integers(0, 2**63))
        high_water = _max_us(written_table["updated_at"]) if written_table.num_rows else 0
        log = _EventLog(root, seed, _customer_mix(root, seed), id_key, high_water=high_water)
        return cls(root, seed, mix or LiveMix(), log)

    @property
    def high_water(self) -> datetime:
        """The greatest updated_at written so far: every row a later step writes is at or past it."""
        return _EPOCH + timedelta(microseconds=self.log.high_water)

    def write_step(self, now: datetime, stop: Callable[[], bool] = _never) -> tuple[LiveVersion, ...]:
        """One step at `now`: new events, then maybe corrections, then maybe deletes, each its own version.

        The same table, seed and `now` write the same rows. `stop` is asked before each write: once it says
        so, the step ends after the version under way.
        """
        now_us = _micros(now)
        rng = np.random.default_rng([self.seed, 8, now_us])
        # Strictly past every updated_at so far, so that corrections sort after the rows a sync has landed.
        stamp = max(now_us, self.log.high_water + _MS)
        recent = self._recent_events(now_us)  # read first: corrections and deletes hit existing rows
        corrections = _some(rng, self.mix.correction_chance, self.mix.max_corrections)
        deletes = _some(rng, self.mix.delete_chance, self.mix.max_deletes)
        picks = rng.choice(len(recent), size=min(len(recent), corrections + deletes), replace=False)
        corrected, deleted = recent.take(picks[:corrections]), recent.take(picks[corrections:])

        if stop():
            return ()
        versions = [self._insert(rng, now_us, stamp)]
        if corrected.num_rows and not stop():
            versions.append(self._correct(rng, corrected, now_us, stamp))
        # Deletes never hit this step's corrections: the stamp, the new high-water mark, stays in the table.
        if deleted.num_rows and not stop():
            ids = ", ".join(map(_sql_string, deleted["event_id"].to_pylist()))
            # The event_time bound lets delta-rs leave older data files alone, as in `_correct`.
            predicate = f"event_id IN ({ids}) AND {_since(deleted, 'event_time')}"
            delta = tables.delete(self.root, USAGE_EVENTS, predicate)
            versions.append(LiveVersion(delta.version(), deleted=deleted.num_rows))
        return tuple(versions)

    def _insert(self, rng: np.random.Generator, now_us: int, stamp: int) -> LiveVersion:
        """New events, most in the last hour, a few late ones days back; updated_at between the high-water
        mark and the stamp, as they arrived since the last step."""
        count = max(1, int(rng.poisson(self.mix.new_events)))
        late = int(rng.binomial(count, self.mix.late_share))
        low, high = self.log.high_water, stamp - _MS
        parts = [self.log.events(rng, count - late, now_us - _HOUR, now_us)] if count > late else []
        if late:
            first_day, last_day = (now_us - days * _DAY for days in reversed(LATE_DAYS))
            parts.append(self.log.events(rng, late, first_day, last_day, ingest="late"))
        batch = pa.concat_tables(parts)
        event_time = pc.cast(batch["event_time"], pa.int64()).to_numpy()
        arrived = low + rng.integers(0, high - low + 1, count)
        updated = np.clip(np.maximum(event_time, arrived), low, high)
        batch = batch.set_column(3, USAGE_SCHEMA.field("updated_at"), _ts(updated))
        delta = tables.append(self.root, USAGE_EVENTS, batch)
        self.log.high_water = int(updated.max())
        return LiveVersion(delta.version(), inserted=count, late=late)

    def _correct(self, rng: np.random.Generator, picked: pa.Table, now_us: int, stamp: int) -> LiveVersion:
        """The `picked` events re-metered, a third of them also moved a day (recorded on the wrong day),
        merged on event_id with updated_at at the stamp."""
        # Scanned by time, then matched by id in memory: delta-rs writes string columns as string_view, and
        # pyarrow cannot compare those with the dataset's string type in a scan filter.
        since = pc.field("event_time") >= pc.min(picked["event_time"])
        rows = tables.open_table(self.root, USAGE_EVENTS).to_pyarrow_dataset().to_table(filter=since)
        fixes = rows.filter(pc.is_in(rows["event_id"], value_set=picked["event_id"])).sort_by("event_id")
        event_time = pc.cast(fixes["event_time"], pa.int64()).to_numpy()
        moved = event_time.copy()
        shift = max(1, fixes.num_rows // 3)
        # A day later unless that is still to come; then a day earlier.
        moved[:shift] += np.where(moved[:shift] + _DAY < now_us, _DAY, -_DAY)
        fixes = fixes.set_column(2, USAGE_SCHEMA.field("event_time"), _ts(moved))
        fixes = fixes.set_column(3, USAGE_SCHEMA.field("updated_at"), _ts(np.full(fixes.num_rows, stamp)))
        fixes = fixes.set_column(
            5, USAGE_SCHEMA.field("quantity"), _remetered(fixes, rng.uniform(0.5, 1.5, fixes.num_rows))
        )
        # Naming the oldest event touched lets delta-rs skip older data files: steps stay fast on a big table.
        oldest = _since(picked, "target.event_time")
        delta = tables.upsert(self.root, USAGE_EVENTS, fixes, key=["event_id"], target_predicate=oldest)
        self.log.high_water = stamp
        return LiveVersion(delta.version(), updated=fixes.num_rows, moved=shift)

    def _recent_events(self, now_us: int) -> pa.Table:
        """Id and event_time of the last week's events, sorted by id (the same table gives the same picks);
        of all events when the table holds nothing that recent, e.g. seeded long ago."""
        dataset = tables.open_table(self.root, USAGE_EVENTS).to_pyarrow_dataset()
        event_time = pc.field("event_time")
        recent = (event_time >= _ts_scalar(now_us - RECENT_DAYS * _DAY)) & (event_time < _ts_scalar(now_us))
        events = dataset.to_table(columns=["event_id", "event_time"], filter=recent)
        if not events.num_rows:
            events = dataset.to_table(columns=["event_id", "event_time"])
        return events.sort_by("event_id")


def run_live(
    writer: LiveUsageWriter,
    stop: threading.Event,
    *,
    interval: float = DEFAULT_INTERVAL,
    on_version: Callable[[LiveVersion], None] = lambda version: None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Write a step, wait `interval` seconds, repeat until `stop` is set; returns the versions written.

    Setting `stop` (from a signal handler or another thread) lets the version under way finish and starts
    no other.
    """
    written = 0
    while not stop.is_set():
        for version in writer.write_step(clock(), stop=stop.is_set):
            on_version(version)
            written += 1
        stop.wait(interval)
    return written


def run_live_until_signalled(
    writer: LiveUsageWriter, *, interval: float, on_version: Callable[[LiveVersion], None]
) -> int:
    """`run_live` until SIGINT or SIGTERM, which let the version under way finish (call from the main
    thread, where Python runs signal handlers); returns the versions written."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in _STOP_SIGNALS}
    try:
        return run_live(writer, stop, interval=interval, on_version=on_version)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _customer_mix(root: Path, seed: int) -> _CustomerMix:
    """Who generates the new usage: the customers table's paying customers, a few large ones and a long tail
    (internal test accounts excluded)."""
    customers = (
        tables.open_table(root, CUSTOMERS).to_pyarrow_dataset().to_table(columns=["customer_id", "plan"])
    )
    ids = customers["customer_id"].filter(pc.not_equal(customers["plan"], "internal"))
    if not len(ids):
        raise ValueError(f"table {CUSTOMERS} under {root} has no customers to bill new usage events to")
    ids = ids.take(pc.sort_indices(ids)).combine_chunks().cast(pa.string())
    weights = 1.0 / np.random.default_rng([seed, 9]).permutation(np.arange(1, len(ids) + 1)) ** 0.9
    return _CustomerMix(ids, weights / weights.sum())


# The inverse of seed._event_ids's mix (splitmix64's finalizer): each step undone, last first.
_MIX_INVERSES = (pow(0x94D049BB133111EB, -1, 2**64), pow(0xBF58476D1CE4E5B9, -1, 2**64))
_HEX_VALUE = np.zeros(256, dtype=np.uint64)
_HEX_VALUE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint64)
_ID_SHAPE = "^evt_[0-9a-f]{16}$"


def _id_values(event_ids: pa.ChunkedArray) -> np.ndarray:
    """The running values behind ids of the seed's shape (`evt_` and 16 hex digits); other ids are skipped."""
    ours = pc.filter(event_ids, pc.match_substring_regex(event_ids, _ID_SHAPE))
    ours = ours.combine_chunks().cast(pa.string())
    if not len(ours):
        return np.empty(0, dtype=np.uint64)
    offsets = np.frombuffer(ours.buffers()[1], np.int32)[ours.offset : ours.offset + len(ours) + 1]
    chars = np.frombuffer(ours.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 20)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    x = np.bitwise_or.reduce(_HEX_VALUE[chars[:, 4:]] << shifts, axis=1)
    x = x ^ (x >> np.uint64(31)) ^ (x >> np.uint64(62))
    x = x * np.uint64(_MIX_INVERSES[0])
    x = x ^ (x >> np.uint64(27)) ^ (x >> np.uint64(54))
    x = x * np.uint64(_MIX_INVERSES[1])
    return x ^ (x >> np.uint64(30)) ^ (x >> np.uint64(60))


def _some(rng: np.random.Generator, chance: float, most: int) -> int:
    """With probability `chance`, between 1 and `most`; else 0."""
    return int(rng.integers(1, most + 1)) if most > 0 and rng.random() < chance else 0


def _micros(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC), e.g. datetime.now(UTC)")
    return (now.astimezone(UTC) - _EPOCH) // timedelta(microseconds=1)


def _since(events: pa.Table, column: str) -> str:
    """`column >= '<the events' oldest event_time>'`, a delta-rs predicate."""
    oldest = pc.min(events["event_time"]).as_py()
    return f"{column} >= '{oldest.isoformat()}'"


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"

"""Batches and what the ledger and the dead letters record of them.

A batch never spans two windows, holds at most `batch_size` events in event-id order, and its idempotency key
is derived from its id and its exact bytes, so a key is never sent with another body; its bytes are a JSON
array of its events' texts as the ledger keeps them, so a batch rebuilt from the ledger is the batch sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.delivery.events import EVENT, EVENT_ID, REFUSAL, WINDOW
from zenskar_pipeline.delivery.ledger import DEAD_LETTER_SCHEMA, Entry, entries_table, identity_key


@dataclass(frozen=True, eq=False)
class Batch:
    batch_id: str
    idempotency_key: str
    partition: str | None
    event_ids: pa.Array  # strings, in batch order
    events: pa.Array  # the events' JSON texts, in batch order
    body: bytes  # what is sent: `[` the texts joined by `,` `]`, UTF-8
    deadline: float | None = None  # when (epoch seconds) Zenskar may forget its key: not sent after that

    def __len__(self) -> int:
        return len(self.event_ids)

    def halves(self, stream: str, deadline: float) -> tuple[Batch, Batch]:
        """The batch cut in two (Zenskar refused it whole), each half a batch of its own with its own key."""
        middle = len(self) // 2
        ids, events = self.event_ids, self.events
        first = new_batch(stream, f"{self.batch_id}a", self.partition, ids[:middle], events[:middle])
        second = new_batch(stream, f"{self.batch_id}b", self.partition, ids[middle:], events[middle:])
        return dataclasses.replace(first, deadline=deadline), dataclasses.replace(second, deadline=deadline)


def new_batch(
    stream: str, batch_id: str, partition: str | None, event_ids: pa.Array, events: pa.Array
) -> Batch:
    """A batch whose key is derived from its id and its bytes: a key is never sent with another body."""
    body = ("[" + ",".join(events.to_pylist()) + "]").encode("utf-8")
    digest = hashlib.sha256(f"{stream}\n{batch_id}\n".encode() + body).digest()
    return Batch(batch_id, str(uuid.UUID(bytes=digest[:16])), partition, event_ids, events, body)


@dataclass(frozen=True)
class BatchSlice:
    """A batch as planned, before its bytes are joined and its key derived (done when it is planned in the
    ledger, a chunk at a time)."""

    batch_id: str
    partition: str | None
    event_ids: pa.Array
    events: pa.Array

    def build(self, stream: str, deadline: float) -> Batch:
        batch = new_batch(stream, self.batch_id, self.partition, self.event_ids, self.events)
        return dataclasses.replace(batch, deadline=deadline)


def plan_batches(events: pa.Table, size: int, seed: str) -> list[BatchSlice]:
    """The events (sorted by window and event id) cut into batches of at most `size` events, never across
    windows; batch ids are `<seed>.<n>`."""
    batches: list[BatchSlice] = []
    ids = events.column(EVENT_ID).combine_chunks()
    texts = events.column(EVENT).combine_chunks()
    for start, end, window in runs(events.column(WINDOW)):
        for first in range(start, end, size):
            count = min(size, end - first)
            batch_id = f"{seed}.{len(batches)}"
            batches.append(BatchSlice(batch_id, window, ids.slice(first, count), texts.slice(first, count)))
    return batches


def open_batches_of(planned: pa.Table) -> list[Batch]:
    """Batches as their `planned` ledger entries hold them (sorted by batch id and position): the very
    ids, keys and bytes that were sent."""
    batches = []
    ids, texts = planned.column("event_id").combine_chunks(), planned.column("event").combine_chunks()
    keys, windows = planned.column("idempotency_key"), planned.column("partition")
    for start, end, batch_id in runs(planned.column("batch_id")):
        count = end - start
        body = ("[" + ",".join(texts.slice(start, count).to_pylist()) + "]").encode("utf-8")
        key, window = keys[start].as_py(), windows[start].as_py()
        batches.append(
            Batch(str(batch_id), key, window, ids.slice(start, count), texts.slice(start, count), body)
        )
    return batches


def runs(values: pa.ChunkedArray) -> list[tuple[int, int, str | None]]:
    """(start, end, value) of each run of equal values, in order."""
    if len(values) == 0:
        return []
    encoded = pc.run_end_encode(values.combine_chunks())
    ends = encoded.run_ends.to_pylist()
    starts = [0, *ends[:-1]]
    return list(zip(starts, ends, encoded.values.to_pylist(), strict=True))


# --- ledger entries --------------------------------------------------------------------------------------


def _repeated(values: Sequence[Any], sizes: Sequence[int], kind: pa.DataType) -> pa.Array:
    """Each of `values` repeated as many times as its size says."""
    return pc.take(pa.array(values, kind), pa.array(np.repeat(np.arange(len(values)), sizes)))


def planned_entries_of(
    run_id: str, batches: Sequence[Batch], now: dt.datetime, identity: str | None = None
) -> pa.Table:
    """The `planned` entries of many batches, in one table; `identity` as `events.identity_description`."""
    sizes = [len(batch) for batch in batches]
    return entries_table(
        {
            "partition": _repeated([batch.partition for batch in batches], sizes, pa.string()),
            "event_id": pa.concat_arrays([batch.event_ids for batch in batches]),
            "entry": Entry.PLANNED.value,
            "batch_id": _repeated([batch.batch_id for batch in batches], sizes, pa.string()),
            "idempotency_key": _repeated([batch.idempotency_key for batch in batches], sizes, pa.string()),
            "position": pa.array(np.concatenate([np.arange(n, dtype=np.int32) for n in sizes])),
            "event": pa.concat_arrays([batch.events for batch in batches]),
            "at": now,
            "run_id": run_id,
            "identity": identity,
            "identity_key": identity_key(identity) if identity else None,
        },
        sum(sizes),
    )


def answer_entries_of(
    run_id: str, answers: Sequence[tuple[Batch, Entry, int | None, str]], now: dt.datetime
) -> pa.Table:
    """The answer entries of many batches, in one table: (batch, entry, HTTP status, answer) each."""
    sizes = [len(batch) for batch, _, _, _ in answers]
    return entries_table(
        {
            "partition": _repeated([batch.partition for batch, _, _, _ in answers], sizes, pa.string()),
            "event_id": pa.concat_arrays([batch.event_ids for batch, _, _, _ in answers]),
            "entry": _repeated([entry.value for _, entry, _, _ in answers], sizes, pa.string()),
            "batch_id": _repeated([batch.batch_id for batch, _, _, _ in answers], sizes, pa.string()),
            "idempotency_key": _repeated([b.idempotency_key for b, _, _, _ in answers], sizes, pa.string()),
            "http_status": _repeated([status for _, _, status, _ in answers], sizes, pa.int32()),
            "answer": _repeated([answer for _, _, _, answer in answers], sizes, pa.string()),
            "at": now,
            "run_id": run_id,
        },
        sum(sizes),
    )


def refused_entries(run_id: str, refused: pa.Table, now: dt.datetime) -> pa.Table:
    return entries_table(
        {
            "partition": refused.column(WINDOW),
            "event_id": refused.column(EVENT_ID),
            "entry": Entry.DEAD_LETTER.value,
            "answer": refused.column(REFUSAL),
            "at": now,
            "run_id": run_id,
        },
        refused.num_rows,
    )


def refused_dead_letters(run_id: str, refused: pa.Table, now: dt.datetime) -> pa.Table:
    count = refused.num_rows
    return pa.table(
        {
            "partition": refused.column(WINDOW),
            "event_id": refused.column(EVENT_ID),
            "batch_id": pa.nulls(count, pa.string()),
            "idempotency_key": pa.nulls(count, pa.string()),
            "event": pa.nulls(count, pa.string()),
            "http_status": pa.nulls(count, pa.int32()),
            "answer": refused.column(REFUSAL),
            "at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
            "run_id": pa.array([run_id] * count, pa.string()),
        },
        schema=DEAD_LETTER_SCHEMA,
    )


def batch_dead_letters(
    run_id: str, batch: Batch, status: int | None, answer: str, now: dt.datetime
) -> pa.Table:
    count = len(batch)
    return pa.table(
        {
            "partition": [batch.partition] * count,
            "event_id": batch.event_ids,
            "batch_id": [batch.batch_id] * count,
            "idempotency_key": [batch.idempotency_key] * count,
            "event": batch.events,
            "http_status": pa.array([status] * count, pa.int32()),
            "answer": [answer] * count,
            "at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
            "run_id": [run_id] * count,
        },
        schema=DEAD_LETTER_SCHEMA,
    )

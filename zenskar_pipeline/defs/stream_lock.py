"""One writer per stream, whoever started the run.

The run queue's `zenskar/stream` limit keeps two queued runs of one stream apart, but a run that does not go
through the queue (`zenskar-pipeline sync` runs in its own process) could start while a queued one writes.
So each sync step also holds its stream's slot in the instance's concurrency table (key
`zenskar/stream:<stream>`, one slot), claimed before anything is read and freed when the step ends. The
table lives in the instance's storage (SQLite or PostgreSQL), so the claim is atomic across processes and
hosts. A slot held by a run that has ended (its worker was killed before it could free it) is freed here
rather than blocking the stream; a run that still reads as started is waited for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES

STREAM_LOCK_PREFIX = "zenskar/stream:"
DELIVERY_LOCK_PREFIX = "zenskar/deliver:"  # a stream's deliveries: one at a time, apart from its syncs
HOLDS = ": this run holds the stream"  # after the stream's name, in the run's log once the slot is claimed
RELEASES = ": this run releases the stream"  # and just before it is freed
POLL_SECONDS = 1.0


def lock_key(stream: str, prefix: str = STREAM_LOCK_PREFIX) -> str:
    return f"{prefix}{stream}"


@contextmanager
def holding_stream(
    instance: dg.DagsterInstance,
    stream: str,
    run_id: str,
    step_key: str,
    log: dg.DagsterLogManager,
    *,
    prefix: str = STREAM_LOCK_PREFIX,
) -> Iterator[None]:
    """Hold `stream`'s slot (`prefix`: its syncs' or its deliveries') for the body; wait (logging who holds
    it) while another live run does."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:  # an in-memory instance: one process, one writer
        yield
        return
    key = lock_key(stream, prefix)
    if storage.get_concurrency_info(key).slot_count != 1:
        storage.set_concurrency_slots(key, 1)
    waiting_for: str | None = None
    while not storage.claim_concurrency_slot(key, run_id, step_key).is_claimed:
        info = storage.get_concurrency_info(key)
        # the run writing, or next in line (a slot is assigned to the longest waiting step when freed)
        holders = (info.active_run_ids | info.assigned_run_ids | info.pending_run_ids) - {run_id}
        for holder in sorted(holders):
            record = instance.get_run_record_by_id(holder)
            if record is None or record.dagster_run.status in FINISHED_STATUSES:
                storage.free_concurrency_slots_for_run(holder)
                holders.discard(holder)
                if holder in info.active_run_ids:
                    log.warning(f"{stream}: freed the stream's slot left by run {holder}, which has ended")
        current = min(info.active_run_ids & holders, default=None)
        if current is not None and current != waiting_for:
            log.info(f"{stream}: waiting for run {current}, which is writing this stream")
            waiting_for = current
        time.sleep(POLL_SECONDS)
    log.info(f"{stream}{HOLDS}")
    try:
        yield
    finally:
        log.info(f"{stream}{RELEASES}")
        storage.free_concurrency_slot_for_step(run_id, step_key)

"""One delivery run of one stream: the copy's events of some windows that the ledger has not seen are
planned into batches, the plan committed, the batches sent, and each answer committed as it comes.

1. Read the copy's events of the windows at one Delta version (`events.read_events`).
2. Read the ledger. Events it has answered (accepted or dead-lettered), or holds in a batch still open,
   are not planned again, in whichever window they were planned (a row whose window changed is still the
   event it was). Open batches of these windows are what a run that died left: they are sent again as they
   are, same bytes, same key; one planned more than `KEY_LIFETIME` ago is not (Zenskar may have forgotten
   its key, and may hold its events): its events are dead-lettered for a person to look into.
3. Plan the rest: per window, batches of `batch_size` in event-id order, each with an idempotency key
   derived from the batch and its bytes. The first plan is committed only if the ledger has not moved since
   step 2 (another run planning the same events), otherwise steps 2-3 are done again; a large plan goes in
   chunks while the first batches are sent, each only if the ledger holds nothing but this attempt's own
   commits since its last plan (otherwise the rest is left to a later run). Nothing goes out before its
   plan is committed. The ledger must identify events as it always has (`IdentityChangedError`).
4. Send, `max_concurrent_requests` at once, no batch later than `KEY_LIFETIME` after its plan. Answers are
   committed together at most `COMMIT_SECONDS` apart: accepted; refused as a whole (4xx) and split in two,
   the halves planned in the same commit, down to the one event Zenskar refuses, which is dead-lettered
   with its answer. Wrong settings (401, 403, 404, a redirect) stop the run and leave the batch open, as a
   batch still failing after its retries is: the next run sends it again under its key.
5. Compare what was delivered in these windows with what the copy holds now: an event changed, moved out
   of its window, or deleted after delivery is reported (`delivered_rows_unchanged`), never sent again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from zenskar_pipeline.delivery.batches import (
    Batch,
    answer_entries_of,
    batch_dead_letters,
    open_batches_of,
    plan_batches,
    planned_entries_of,
    refused_dead_letters,
    refused_entries,
)
from zenskar_pipeline.delivery.events import (
    EVENT,
    EVENT_ID,
    EVENTS_SCHEMA,
    REFUSAL,
    WINDOW,
    read_events,
)
from zenskar_pipeline.delivery.ledger import (
    DEAD_LETTER_SCHEMA,
    STILL_DEAD,
    DeliveryLedger,
    Entry,
    LedgerMoved,
    identity_key,
)
from zenskar_pipeline.delivery.run import (
    DeliveryReport,
    DeliveryRun,
    DeliverySettingsError,
    IdentityChangedError,
    Plan,
    UndeliveredError,
    WindowFigures,
)
from zenskar_pipeline.delivery.sending import KEY_LIFETIME, Sender

PLAN_ATTEMPTS = 5
FIRST_CHUNK = 2  # batches per request in flight planned before anything is sent
PLAN_CHUNK = 250  # batches per later plan commit


def deliver(run: DeliveryRun) -> DeliveryReport:
    """Deliver `run.partitions` (see the module docstring). `DeliverySettingsError` when Zenskar refuses
    the settings, `UndeliveredError` when batches stay unanswered; what was answered is committed first."""
    started = time.monotonic()
    windows = list(run.partitions) if run.partitions is not None else [None]
    report = DeliveryReport(run.stream, {window: WindowFigures() for window in windows})
    report.copy_version = run.copy.version()
    events = (
        read_events(
            run.copy.dataset(report.copy_version),
            run.source,
            run.partitions,
            partitioned=run.copy.partitioned,
        )
        if report.copy_version is not None
        else EVENTS_SCHEMA.empty_table()
    )
    for counted in pc.value_counts(events.column(WINDOW)).to_pylist():
        report.windows.setdefault(counted["values"], WindowFigures()).events = counted["counts"]
    plan = _plan(run, events, report)
    errors: list[Exception] = []
    if plan.batches:
        with ThreadPoolExecutor(run.max_concurrent_requests, thread_name_prefix="zenskar") as pool:
            sender = Sender(run, report, pool, plan)
            sender.run_all()
        errors, report.accepted_earlier = sender.errors, sender.accepted_earlier
    report.ledger_version = run.ledger.version() if plan.batches else plan.version
    _compare(run, events, plan, report)
    report.seconds = time.monotonic() - started
    if errors:
        settings = [e for e in errors if isinstance(e, DeliverySettingsError)]
        raise settings[0] if settings else errors[0]
    return report


# --- planning --------------------------------------------------------------------------------------------


def _plan(run: DeliveryRun, events: pa.Table, report: DeliveryReport) -> Plan:
    """Steps 2 and 3."""
    # No copy (before the first sync, or after a reset, which keeps the ledger): nothing to plan or compare.
    known = run.ledger.identity_keys() if run.identity else set()
    if known and known != {identity_key(run.identity)}:
        before = run.ledger.identities_other_than(identity_key(run.identity)) or ["another identity"]
        raise IdentityChangedError(
            f"{run.stream}: its events were delivered identified by {'; '.join(before)}; the stream "
            f"now identifies them by {run.identity}, which would give every event a new id and send it "
            "again. Set primary_key (and the column types) back as they were; to start the ledger over "
            "knowing that what it holds may go out again, move the ledger and dead letters aside"
        )
    for _ in range(PLAN_ATTEMPTS):
        version = run.ledger.version()
        state = _LedgerState.read(run.ledger, run.partitions, version)
        for window, count in state.accepted_by_window.items():
            if window in report.windows:
                report.windows[window].delivered_before = count
        fresh = _not_taken(events, state.taken)
        elsewhere = run.ledger.entries_of_events(fresh.column(EVENT_ID), version)
        if elsewhere.num_rows:
            fresh = _not_taken(fresh, _LedgerState.of(elsewhere).taken)
        now = run.now()
        open_batches = state.open_batches()
        stale = [b for b in open_batches if state.planned_at[b.batch_id] < now - KEY_LIFETIME]
        resend = [
            dataclasses.replace(b, deadline=(state.planned_at[b.batch_id] + KEY_LIFETIME).timestamp())
            for b in open_batches
            if b not in stale
        ]
        refused = fresh.filter(pc.is_valid(fresh.column(REFUSAL)))
        sendable = fresh.filter(pc.is_null(fresh.column(REFUSAL)))
        seed = f"{run.writer}.{version if version is not None else -1}"
        deadline = (now + KEY_LIFETIME).timestamp()
        planned = plan_batches(sendable, run.batch_size, seed)
        # The first batches are planned (and sent) at once; the rest a chunk at a time while they go out.
        opening = FIRST_CHUNK * run.max_concurrent_requests
        first = [batch.build(run.stream, deadline) for batch in planned[:opening]]
        rest = planned[opening:]
        later = [rest[i : i + PLAN_CHUNK] for i in range(0, len(rest), PLAN_CHUNK)]
        entries = [planned_entries_of(run.run_id, first, now, run.identity)] if first else []
        entries += [refused_entries(run.run_id, refused, now)] if refused.num_rows else []
        if stale:
            dead_answers = [(b, Entry.DEAD_LETTER, None, _STALE) for b in stale]
            entries.append(answer_entries_of(run.run_id, dead_answers, now))
        if not entries:
            return Plan(resend, [], resend, version, state.entries, elsewhere)
        dead = [refused_dead_letters(run.run_id, refused, now)] if refused.num_rows else []
        dead += [batch_dead_letters(run.run_id, b, None, _STALE, now) for b in stale]
        run.ledger.add_dead_letters(pa.concat_tables(dead) if dead else DEAD_LETTER_SCHEMA.empty_table())
        try:
            version = run.ledger.plan(pa.concat_tables(entries), version, run.writer)
        except LedgerMoved:
            run.log.info(f"{run.stream}: another delivery wrote the ledger meanwhile; planning again")
            continue
        for window, count in Counter(refused.column(WINDOW).to_pylist()).items():
            report.windows.setdefault(window, WindowFigures()).dead_lettered += count
        for batch in stale:
            report.windows.setdefault(batch.partition, WindowFigures()).dead_lettered += len(batch)
        if stale:
            run.log.warning(
                f"{run.stream}: {sum(len(b) for b in stale)} event(s) in batches planned over "
                f"{KEY_LIFETIME.total_seconds() / 3600:.0f} h ago never got an answer; dead-lettered, not "
                "sent again (Zenskar may hold them: look for their idempotency keys)"
            )
        return Plan(resend + first, later, resend, version, state.entries, elsewhere)
    raise LedgerMoved(f"{run.stream}: the ledger kept moving while planning ({PLAN_ATTEMPTS} attempts)")


_STALE = "not sent again: planned over 23 hours ago and never answered; Zenskar may hold these events"


def _not_taken(events: pa.Table, taken: set[str]) -> pa.Table:
    if not taken or events.num_rows == 0:
        return events
    mask = pc.invert(pc.is_in(events.column(EVENT_ID), value_set=pa.array(sorted(taken), pa.string())))
    return events.filter(mask)


class _LedgerState:
    """What a ledger's entries say: which events are taken (answered for good, or in an open batch), and
    the open batches with their events."""

    def __init__(self, entries: pa.Table) -> None:
        self.entries = entries
        with duckdb.connect() as con:
            con.register("e", entries)
            answered = "SELECT DISTINCT batch_id FROM e WHERE entry <> 'planned' AND batch_id IS NOT NULL"
            # Answered for good: accepted, or dead-lettered and not released since.
            final = con.sql(
                "SELECT event_id FROM e WHERE entry = 'accepted' UNION "
                f"SELECT event_id FROM e WHERE entry IN ('dead_letter', 'released') {STILL_DEAD}"
            )
            waiting = con.sql(
                f"SELECT DISTINCT event_id FROM e WHERE entry = 'planned' AND batch_id NOT IN ({answered})"
            )
            self.taken = set(final.fetchnumpy()["event_id"].tolist()) | set(
                waiting.fetchnumpy()["event_id"].tolist()
            )
            by_window = con.sql(
                """SELECT "partition", count(DISTINCT event_id) AS n FROM e
                WHERE entry = 'accepted' GROUP BY 1"""
            ).fetchall()
            self.accepted_by_window: dict[str | None, int] = {window: n for window, n in by_window}
            self._open = (
                con.sql(
                    # Two runs splitting one refused batch both plan its halves: one row per place.
                    f"""SELECT batch_id, idempotency_key, "partition", event_id, event, "position", "at"
                    FROM e WHERE entry = 'planned' AND batch_id NOT IN ({answered})
                    QUALIFY row_number() OVER (PARTITION BY batch_id, "position" ORDER BY "at") = 1
                    ORDER BY batch_id, "position"
                    """
                ).to_arrow_table()
                if "position" in entries.column_names  # not in `entries_of_events`: taken only
                else None
            )
        self.planned_at: dict[str, dt.datetime] = {}

    @classmethod
    def read(
        cls, ledger: DeliveryLedger, partitions: Sequence[str] | None, version: int | None
    ) -> _LedgerState:
        return cls(ledger.entries(partitions, version))

    @classmethod
    def of(cls, entries: pa.Table) -> _LedgerState:
        return cls(entries)

    def open_batches(self) -> list[Batch]:
        if self._open is None or self._open.num_rows == 0:
            return []
        batches = open_batches_of(self._open)
        first_planned = self._open.group_by("batch_id").aggregate([("at", "min")])
        at = dict(
            zip(
                first_planned.column("batch_id").to_pylist(),
                first_planned.column("at_min").to_pylist(),
                strict=True,
            )
        )
        self.planned_at.update({batch.batch_id: at[batch.batch_id] for batch in batches})
        return batches


# --- after delivery ----------------------------------------------------------------------------------------


def _compare(run: DeliveryRun, events: pa.Table, plan: Plan, report: DeliveryReport) -> None:
    """Step 5: the events delivered before this run (as the plan read the ledger: in these windows, and
    elsewhere for events these windows hold now) and those of open batches it sent again, against the
    copy's events now, window and text (also where Zenskar refused such a batch whole and took its halves);
    an event this run planned was read from the copy now, so it has not changed. Then the events of these
    windows the ledger has dead-lettered."""
    again = report.accepted_earlier
    sent_again = pa.table(
        {
            WINDOW: pa.array([b.partition for b in again for _ in range(len(b))], pa.string()),
            EVENT_ID: pa.concat_arrays([b.event_ids for b in again]) if again else pa.array([], pa.string()),
            EVENT: pa.concat_arrays([b.events for b in again]) if again else pa.array([], pa.string()),
        }
    )
    columns = ["partition", "event_id", "entry", "batch_id", "event"]
    earlier = pa.concat_tables([plan.before.select(columns), plan.elsewhere.select(columns)])
    with duckdb.connect() as con:
        con.register("e", earlier)
        con.register("sent_again", sent_again)
        con.register("current_events", events.select([WINDOW, EVENT_ID, EVENT]))
        changed = con.sql(
            """
            WITH delivered AS (
                SELECT DISTINCT p."partition", p.event_id, p.event FROM e p
                JOIN (SELECT DISTINCT batch_id FROM e WHERE entry = 'accepted') a USING (batch_id)
                WHERE p.entry = 'planned'
                UNION SELECT "partition", event_id, event FROM sent_again
            )
            SELECT DISTINCT d."partition", d.event_id FROM delivered d
            LEFT JOIN current_events n ON n.event_id = d.event_id
            WHERE n.event_id IS NULL OR n.event IS DISTINCT FROM d.event
                OR n."partition" IS DISTINCT FROM d."partition"
            ORDER BY d.event_id
            """
        ).fetchall()
    windows = set(report.windows)
    for window, event_id in changed:
        # Reported under the window this run covers: where it was delivered, or where its row is now.
        here = window if window in windows else _window_of(events, event_id)
        report.changed_after_delivery.append(event_id)
        report.changed_by_window.setdefault(here, []).append(event_id)
    dead = run.ledger.dead_lettered(run.partitions, report.ledger_version)
    if dead.num_rows:
        unique = dead.group_by(["partition", "event_id"]).aggregate([])
        pairs = sorted(
            zip(unique.column("partition").to_pylist(), unique.column("event_id").to_pylist(), strict=True),
            key=lambda pair: pair[1],
        )
        report.dead_letters = [event_id for _, event_id in pairs]
        for window, event_id in pairs:
            report.dead_letters_by_window.setdefault(window, []).append(event_id)


def _window_of(events: pa.Table, event_id: str) -> str | None:
    found = events.filter(pc.equal(events.column(EVENT_ID), event_id)).column(WINDOW)
    return found[0].as_py() if len(found) else None


def settled_keys(
    keys: Sequence[str], window_end: Callable[[str], dt.datetime], settle: dt.timedelta, now: dt.datetime
) -> tuple[list[str], list[str]]:
    """`keys` split into those whose window closed at least `settle` ago, and the rest."""
    ready = [key for key in keys if window_end(key) + settle <= now]
    return ready, [key for key in keys if key not in set(ready)]


__all__ = [
    "DeliveryReport",
    "DeliveryRun",
    "DeliverySettingsError",
    "IdentityChangedError",
    "UndeliveredError",
    "WindowFigures",
    "deliver",
    "settled_keys",
]

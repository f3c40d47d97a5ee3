"""One delivery run of one stream: the copy's events of some windows that the ledger has not seen are
planned into batches, the plan committed, the batches sent, and each answer committed as it comes.

1. Read the copy's events of the windows at one Delta version (`events.read_events`).
2. Read the ledger. Events it has answered (accepted or dead-lettered), or holds in a batch still open,
   are not planned again, in whichever window they were planned (a row whose window changed is still the
   event it was). Open batches of these windows are what a run that died left: they are sent again as they
   are, same bytes, same key; one planned more than `KEY_LIFETIME` ago is not (Zenskar may have forgotten
   its key, and may hold its events): its events are dead-lettered for a person to look into.
3. Plan the rest: per window, batches of `batch_size` in event-id order, each with an idempotency key
   derived from the batch and its bytes. The plan is committed only if the ledger has not moved since step
   2 (another run planning the same events); otherwise steps 2-3 are done again.
4. Send, `max_concurrent_requests` at once. Whenever answers have come in, they are committed in one
   append: accepted; refused as a whole (4xx) and split in two, the halves planned in the same commit, down
   to the one event Zenskar refuses, which is dead-lettered with its answer; wrong settings (401, 403, 404),
   which stop the run. A batch still failing after its retries stays open for the next run.
5. Compare what was delivered in these windows with what the copy holds now: an event changed, moved out
   of its window, or deleted after delivery is reported (`delivered_rows_unchanged`), never sent again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

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
from zenskar_pipeline.delivery.client import SETTINGS_STATUSES, Answer, Outcome, UsageApiClient
from zenskar_pipeline.delivery.events import (
    EVENT,
    EVENT_ID,
    EVENTS_SCHEMA,
    REFUSAL,
    WINDOW,
    EventSource,
    read_events,
)
from zenskar_pipeline.delivery.ledger import DEAD_LETTER_SCHEMA, DeliveryLedger, Entry, LedgerMoved
from zenskar_pipeline.destinations import Destination

# Zenskar keeps an idempotency key 24 hours; an open batch older than this is not sent again.
KEY_LIFETIME = dt.timedelta(hours=23)
PLAN_ATTEMPTS = 5
FIRST_CHUNK = 2  # batches per request in flight planned before anything is sent
PLAN_CHUNK = 100  # batches per later plan commit
COMMIT_SECONDS = 0.5
LOG = logging.getLogger(__name__)
SAMPLE = 10


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
    accepted_batches: set[str] = field(default_factory=set)

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
            sender = _Sender(run, report, pool, plan)
            sender.run_all()
        errors, report.accepted_batches = sender.errors, sender.accepted
    report.ledger_version = run.ledger.version() if plan.batches else plan.version
    _compare(run, events, plan, report)
    report.seconds = time.monotonic() - started
    if errors:
        settings = [e for e in errors if isinstance(e, DeliverySettingsError)]
        raise settings[0] if settings else errors[0]
    return report


# --- planning --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    batches: list[Batch]  # to send at once: open ones first, then the first planned ones
    later: list[list[Batch]]  # planned in chunks, each committed before it is sent
    resent: list[Batch]  # the open ones
    version: int | None  # the ledger's, after the plan
    before: pa.Table  # the ledger's entries of these windows as the plan read them
    elsewhere: pa.Table  # its entries, in other windows, of events these windows hold


def _plan(run: DeliveryRun, events: pa.Table, report: DeliveryReport) -> _Plan:
    """Steps 2 and 3."""
    known = run.ledger.identities()
    if known and known != {run.identity}:
        raise IdentityChangedError(
            f"{run.stream}: its events were delivered identified by {', '.join(sorted(known))}; the stream "
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
        planned = [
            dataclasses.replace(batch, deadline=deadline)
            for batch in plan_batches(run.stream, sendable, run.batch_size, seed)
        ]
        # The first batches are planned (and sent) at once; the rest a chunk at a time while they go out.
        first, rest = (
            planned[: FIRST_CHUNK * run.max_concurrent_requests],
            planned[FIRST_CHUNK * run.max_concurrent_requests :],
        )
        later = [rest[i : i + PLAN_CHUNK] for i in range(0, len(rest), PLAN_CHUNK)]
        entries = [planned_entries_of(run.run_id, first, now, run.identity)] if first else []
        entries += [refused_entries(run.run_id, refused, now)] if refused.num_rows else []
        if stale:
            dead_answers = [(b, Entry.DEAD_LETTER, None, _STALE) for b in stale]
            entries.append(answer_entries_of(run.run_id, dead_answers, now))
        if not entries:
            return _Plan(resend, [], resend, version, state.entries, elsewhere)
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
        return _Plan(resend + first, later, resend, version, state.entries, elsewhere)
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
            final = con.sql("SELECT DISTINCT event_id FROM e WHERE entry IN ('accepted', 'dead_letter')")
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
                if "event" in entries.column_names
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


# --- sending ---------------------------------------------------------------------------------------------


class _Sender:
    """Step 4: the batches in flight, and the answers not committed yet. Answers are committed together at
    most every `COMMIT_SECONDS` (a Delta commit takes tens of milliseconds; one per batch would hold a
    million events' delivery to the ledger's pace), and at once when a refused batch's halves must be
    planned before they are sent, or when nothing is left in flight."""

    def __init__(
        self, run: DeliveryRun, report: DeliveryReport, pool: ThreadPoolExecutor, plan: _Plan
    ) -> None:
        self.run, self.report, self.pool, self.plan = run, report, pool, plan
        self.later = list(plan.later)
        self.plan_version = plan.version  # the run's last plan commit
        self.pending: dict[Future[Answer], Batch] = {}
        self.answers: list[tuple[Batch, Entry, int | None, str]] = []
        self.planned: list[Batch] = []  # halves of refused batches, planned in the next commit
        self.dead: list[pa.Table] = []
        self.errors: list[Exception] = []
        self.accepted: set[str] = set()  # batch ids

    def submit(self, batch: Batch) -> None:
        slug = self.run.source.spec.api_slug
        send = self.run.client.send
        future = self.pool.submit(send, slug, batch.body, batch.idempotency_key, batch.deadline)
        self.pending[future] = batch

    def run_all(self) -> None:
        for batch in self.plan.batches:
            self.submit(batch)
        last_commit = time.monotonic()
        while self.pending or (self.later and not self.errors):
            if self.later and not self.errors and len(self.pending) <= 2 * self.run.max_concurrent_requests:
                self.plan_next()
                continue
            done, _ = wait(self.pending, timeout=COMMIT_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                self.answered(self.pending.pop(future), future.result())
            due = time.monotonic() - last_commit >= COMMIT_SECONDS
            if self.answers and (due or self.planned or not self.pending or self.errors):
                halves = self.commit()
                last_commit = time.monotonic()
                if not any(isinstance(e, DeliverySettingsError) for e in self.errors):
                    for half in halves:
                        self.submit(half)

    def plan_next(self) -> None:
        """Commit the next chunk's plan, if the ledger holds nothing but this run's own commits since its last
        plan (else another run may be planning the same events: the rest is left to a later run), and send
        it."""
        chunk = self.later.pop(0)
        assert self.plan_version is not None
        try:
            entries = planned_entries_of(self.run.run_id, chunk, self.run.now(), self.run.identity)
            self.plan_version = self.run.ledger.plan_more(entries, self.plan_version, self.run.writer)
        except LedgerMoved as moved:
            self.later = []
            self.errors.append(moved)
            return
        for batch in chunk:
            self.submit(batch)

    def answered(self, batch: Batch, answer: Answer) -> None:
        figures = self.report.windows.setdefault(batch.partition, WindowFigures())
        if answer.outcome is not Outcome.GAVE_UP:
            self.report.requests += 1
        if answer.outcome is Outcome.ACCEPTED:
            self.answers.append((batch, Entry.ACCEPTED, answer.status, answer.body))
            self.accepted.add(batch.batch_id)
            figures.sent += len(batch)
        elif answer.outcome is Outcome.REFUSED and len(batch) > 1:
            self.answers.append((batch, Entry.RETRY, answer.status, answer.body))
            self.planned += batch.halves(self.run.stream, time.time() + KEY_LIFETIME.total_seconds())
        elif answer.outcome is Outcome.REFUSED:
            self.answers.append((batch, Entry.DEAD_LETTER, answer.status, answer.body))
            now = self.run.now()
            self.dead.append(batch_dead_letters(self.run.run_id, batch, answer.status, answer.body, now))
            figures.dead_lettered += 1
        elif answer.outcome is Outcome.WRONG_SETTINGS:
            # Not answered for good: an earlier attempt under this key may have been ingested before the
            # settings went wrong, so the batch stays planned, to go again under its key.
            figures.unanswered += len(batch)
            if not any(isinstance(e, DeliverySettingsError) for e in self.errors):
                self.errors.append(_settings_error(self.run, answer))
            for other in list(self.pending):
                if other.cancel():
                    self.pending.pop(other)
        else:
            figures.unanswered += len(batch)
            if not any(isinstance(e, UndeliveredError) for e in self.errors):
                self.errors.append(_unanswered_error(self.run, answer))

    def commit(self) -> list[Batch]:
        """Commit the answers (dead letters first, so that a dead-lettered event always has its letter) and
        the plans of refused batches' halves; returns those halves, to send."""
        now = self.run.now()
        if self.dead:
            self.run.ledger.add_dead_letters(pa.concat_tables(self.dead))
        tables = [answer_entries_of(self.run.run_id, self.answers, now)]
        if self.planned:
            tables.append(planned_entries_of(self.run.run_id, self.planned, now, self.run.identity))
        self.run.ledger.record(pa.concat_tables(tables), self.run.writer)
        halves, self.planned, self.answers, self.dead = self.planned, [], [], []
        return halves


def _unanswered_error(run: DeliveryRun, answer: Answer) -> UndeliveredError:
    last = answer.status or answer.body
    return UndeliveredError(
        f"{run.stream}: Zenskar did not answer a batch after {answer.attempts} attempts (last: {last}); it "
        "stays planned and the next run sends it again under the same key"
    )


def _settings_error(run: DeliveryRun, answer: Answer) -> DeliverySettingsError:
    setting = SETTINGS_STATUSES.get(answer.status or 0, "ZENSKAR_API_URL")
    what = {
        401: "refused the API key",
        403: "refused the organisation",
        404: f"has no usage event with api_slug {run.source.spec.api_slug!r}",
    }.get(answer.status or 0, "answered with a redirect")
    return DeliverySettingsError(
        f"{run.stream}: Zenskar {what} ({answer.status}: {answer.body[:200]}); check {setting}"
    )


# --- after delivery ----------------------------------------------------------------------------------------


def _compare(run: DeliveryRun, events: pa.Table, plan: _Plan, report: DeliveryReport) -> None:
    """Step 5: the events delivered before this run (as the plan read the ledger: in these windows, and
    elsewhere for events these windows hold now) and those of open batches it sent again, against the
    copy's events now, window and text; an event this run planned was read from the copy now, so it has not
    changed. Then the events of these windows the ledger has dead-lettered."""
    again = [batch for batch in plan.resent if batch.batch_id in report.accepted_batches]
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
    "SETTINGS_STATUSES",
    "Batch",
    "DeliveryReport",
    "DeliveryRun",
    "DeliverySettingsError",
    "UndeliveredError",
    "WindowFigures",
    "deliver",
    "settled_keys",
]

"""Step 4 of a delivery run: the batches in flight, the answers not committed yet, and the later chunks of a
large plan (see `deliver`)."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import pyarrow as pa

from zenskar_pipeline.delivery.batches import (
    Batch,
    answer_entries_of,
    batch_dead_letters,
    planned_entries_of,
)
from zenskar_pipeline.delivery.client import SETTINGS_STATUSES, Answer, Outcome
from zenskar_pipeline.delivery.ledger import Entry, LedgerMoved
from zenskar_pipeline.delivery.run import (
    DeliveryReport,
    DeliveryRun,
    DeliverySettingsError,
    Plan,
    UndeliveredError,
    WindowFigures,
)

KEY_LIFETIME = dt.timedelta(hours=23)  # Zenskar keeps a key 24 hours: no batch goes out later than this
COMMIT_SECONDS = 1.0


class Sender:
    """Step 4: the batches in flight, and the answers not committed yet. Answers are committed together at
    most every `COMMIT_SECONDS` (a Delta commit takes tens of milliseconds; one per batch would hold a
    million events' delivery to the ledger's pace), and at once when a refused batch's halves must be
    planned before they are sent, or when nothing is left in flight."""

    def __init__(
        self, run: DeliveryRun, report: DeliveryReport, pool: ThreadPoolExecutor, plan: Plan
    ) -> None:
        self.run, self.report, self.pool, self.plan = run, report, pool, plan
        self.later = list(plan.later)
        self.plan_version = plan.version  # the run's last plan commit
        self.pending: dict[Future[Answer], Batch] = {}
        self.answers: list[tuple[Batch, Entry, int | None, str]] = []
        self.planned: list[Batch] = []  # halves of refused batches, planned in the next commit
        self.dead: list[pa.Table] = []
        self.errors: list[Exception] = []
        # Batches accepted in this run that an earlier run planned: sent again, or cut from one sent again.
        self.earlier_ids = frozenset(batch.batch_id for batch in plan.resent)
        self.accepted_earlier: list[Batch] = []

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
        deadline = time.time() + KEY_LIFETIME.total_seconds()
        chunk = [batch.build(self.run.stream, deadline) for batch in self.later.pop(0)]
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
            if self.earlier_ids and _cut_from(batch.batch_id, self.earlier_ids):
                self.accepted_earlier.append(batch)
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


def _cut_from(batch_id: str, ancestors: frozenset[str]) -> bool:
    """Whether `batch_id` is one of `ancestors` or a half of one, at any depth (`Batch.halves` names them
    by `a` and `b` after the whole's id)."""
    halvings = len(batch_id) - len(batch_id.rstrip("ab"))
    return any(batch_id[: len(batch_id) - cut] in ancestors for cut in range(halvings + 1))

"""The delivery asset: one per stream with a `deliver:` block, downstream of its copy, same partitions. Its
step sends the copy's events of the run's windows that have settled (closed `settle` ago) and that the
ledger has not seen, and answers the delivery's two checks.

No annotations import from `__future__` here: Dagster reads the step function's resource annotations.
"""

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import dagster as dg
from deltalake.exceptions import CommitFailedError

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.defs import checks
from zenskar_pipeline.defs.assets import TRANSIENT_RETRY, is_terminated, partitions_def
from zenskar_pipeline.defs.stream_lock import DELIVERY_LOCK_PREFIX, holding_stream
from zenskar_pipeline.defs.translator import DELIVERY_TAG, StreamTranslator
from zenskar_pipeline.delivery.deliver import (
    DeliveryReport,
    DeliveryRun,
    UndeliveredError,
    deliver,
    settled_keys,
)
from zenskar_pipeline.delivery.events import EventSource, identity_of
from zenskar_pipeline.delivery.ledger import DeliveryLedger, LedgerMoved
from zenskar_pipeline.delivery.resource import ZenskarResource
from zenskar_pipeline.delivery.settings import events_of
from zenskar_pipeline.destinations import DestinationResource
from zenskar_pipeline.sync.calendar import PartitionCalendar
from zenskar_pipeline.sync.checks import CheckOutcome, CheckSpec

UNCHANGED = CheckSpec(
    "delivered_rows_unchanged",
    "No event delivered to Zenskar has changed, left its window, or been deleted in the copy since: a "
    "correction after delivery is never sent as a second event, so billing must act on what this reports.",
)
NO_DEAD_LETTERS = CheckSpec(
    "no_dead_letters",
    "No event of the windows delivered was refused by Zenskar (4xx) or could not be sent; refused events "
    "are in the dead-letter table beside the copy, with Zenskar's answer.",
)
SAMPLE = 10  # event ids a failing check shows
# Retried by the step's policy: the ledger raced another writer, or Zenskar left batches unanswered
# (they stay planned, and are sent again under the same keys).
RETRIED = (CommitFailedError, LedgerMoved, UndeliveredError)


def delivery_asset(
    stream: ResolvedStream, table: DiscoveredTable, translator: StreamTranslator
) -> dg.AssetsDefinition:
    """The delivery of one stream's events; its step needs the `destination` and `zenskar` resources."""
    spec = translator.delivery_spec(stream, table).replace_attributes(skippable=True)
    key = spec.key
    deliver_spec = stream.settings.deliver
    rows = events_of(stream, table)
    assert deliver_spec is not None and rows is not None  # the settings' checks refuse a stream without
    source = EventSource.of(stream, rows)
    check_specs = [
        dg.AssetCheckSpec(check.name, asset=key, description=check.description)
        for check in (UNCHANGED, NO_DEAD_LETTERS)
    ]

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        check_specs=check_specs,
        partitions_def=partitions_def(stream.settings.partitions),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        op_tags={DELIVERY_TAG: stream.name},
    )
    def deliver_stream(
        context: dg.AssetExecutionContext, destination: DestinationResource, zenskar: ZenskarResource
    ) -> Iterator[Any]:
        partitioned = stream.settings.partitions is not None
        windows: list[str] | None = None
        if partitioned:
            windows, waiting = settled_windows(stream, context.partition_keys, dt.datetime.now(dt.UTC))
            if waiting:
                context.log.info(
                    f"{stream.name}: {len(waiting)} window(s) not settled yet (closed less than "
                    f"{deliver_spec.settle} ago), left for a later run: {waiting[0]}..{waiting[-1]}"
                )
            if not windows:
                return
        copy = destination.for_stream(stream)
        step_key = context.op_execution_context.get_step_execution_context().step.key
        try:
            client = zenskar.client()
            with holding_stream(
                context.instance,
                stream.name,
                context.run_id,
                step_key,
                context.log,
                prefix=DELIVERY_LOCK_PREFIX,
            ):
                run = DeliveryRun(
                    stream.name,
                    copy,
                    DeliveryLedger.beside(copy),
                    client,
                    source,
                    windows,
                    context.run_id,
                    identity_of(copy, rows),
                    batch_size=zenskar.batch_size,
                    max_concurrent_requests=zenskar.max_concurrent_requests,
                    log=context.log,
                )
                report = deliver_until_still(run, context.log)
        except RETRIED as error:
            if is_terminated(context):
                raise dg.Failure(f"{stream.name}: the run was terminated", allow_retries=False) from error
            raise
        except Exception as error:  # settings Zenskar refused, a copy that cannot be read: not retried
            raise dg.Failure(f"{stream.name}: {error}", allow_retries=False) from error
        yield from delivery_events(key, report)
        yield from checks.check_results(context, key, delivery_outcomes(report), windows or ())

    return deliver_stream


PASSES = 3


class CopyKeptChangingError(RuntimeError):
    """Syncs changed the copy during every delivery pass: the run fails, with no materialization, so that
    the sensor asks for the delivery again."""


def deliver_until_still(run: DeliveryRun, log: logging.Logger) -> DeliveryReport:
    """Deliver, and again while a sync changed the copy meanwhile (up to `PASSES` times): the sensor takes a
    window as delivered once this run's materialization is newer than the copy's, so rows a sync landed
    during the delivery would otherwise wait for the window's next sync. What each pass sent adds up. A copy
    still changing after the last pass fails the run (`CopyKeptChangingError`): what was sent is in the
    ledger, and the sensor asks again for what is left."""
    report = deliver(run)
    for _ in range(PASSES - 1):
        if run.copy.version() == report.copy_version:
            break
        log.info(f"{run.stream}: a sync changed the copy during the delivery; delivering what it added")
        later = deliver(run)
        for window, figures in later.windows.items():
            earlier = report.windows.get(window)
            if earlier is not None:
                figures.sent += earlier.sent
                figures.dead_lettered += earlier.dead_lettered
                figures.delivered_before -= earlier.sent
        later.requests += report.requests
        later.seconds += report.seconds
        report = later
    if run.copy.version() != report.copy_version:
        raise CopyKeptChangingError(
            f"syncs changed the copy during each of {PASSES} delivery passes; the {report.sent:,} event(s) "
            "sent are in the ledger, and what the syncs added goes with the next delivery, which the sensor "
            "asks for (or run `zenskar-pipeline deliver` once the syncs are done)"
        )
    return report


def settled_windows(stream: ResolvedStream, keys: list[str], now: dt.datetime) -> tuple[list[str], list[str]]:
    """The run's partitions whose window closed at least `settle` ago, and the others."""
    spec, settle = stream.settings.partitions, stream.settings.deliver
    assert spec is not None and settle is not None
    calendar = PartitionCalendar(spec, None, now)

    def end(key: str) -> dt.datetime:
        return calendar.instant(calendar.window(key).end)

    return settled_keys(keys, end, settle.settle, now)


def delivery_events(key: dg.AssetKey, report: DeliveryReport) -> Iterator[dg.AssetMaterialization]:
    """One materialization per window delivered, with what became of its events."""
    rate = round(report.events_per_second, 1)
    for window, figures in report.windows.items():
        yield dg.AssetMaterialization(
            asset_key=key,
            partition=window,
            metadata={
                "dagster/row_count": figures.sent + figures.delivered_before,
                "events_in_copy": figures.events,
                "events_sent": figures.sent,
                "events_delivered_before": figures.delivered_before,
                "events_dead_lettered": figures.dead_lettered,
                "events_unanswered": figures.unanswered,
                "changed_after_delivery": len(report.changed_by_window.get(window, [])),
                "copy_version": report.copy_version,
                "ledger_version": report.ledger_version,
                "run_seconds": round(report.seconds, 3),
                "run_requests": report.requests,
                "run_events_per_second": rate,
            },
        )


def delivery_outcomes(report: DeliveryReport) -> list[CheckOutcome]:
    """The two checks' answers, for the run and for each window: a count and a sample of event ids."""
    windows = [window for window in report.windows if window is not None]
    return [
        _outcome(
            UNCHANGED.name,
            "changed_after_delivery",
            report.changed_after_delivery,
            report.changed_by_window,
            windows,
        ),
        _outcome(
            NO_DEAD_LETTERS.name, "dead_letters", report.dead_letters, report.dead_letters_by_window, windows
        ),
    ]


def _outcome(
    name: str, figure: str, found: list[str], by_window: dict[str | None, list[str]], windows: list[str]
) -> CheckOutcome:
    def answer(ids: list[str]) -> CheckOutcome:
        return CheckOutcome(name, not ids, {figure: len(ids), "sample_event_ids": ids[:SAMPLE]})

    whole = answer(found)
    return CheckOutcome(
        name, whole.passed, whole.metadata, {window: answer(by_window.get(window, [])) for window in windows}
    )

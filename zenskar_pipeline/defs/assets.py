"""The asset factory: one Dagster asset per stream whose step runs one `run_sync` and reports each partition.

No annotations import from `__future__` here: Dagster reads the step function's resource annotation.
"""

import contextlib
import datetime as dt
import functools
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from databricks.sql.exc import RequestError
from deltalake.exceptions import CommitFailedError
from urllib3.exceptions import MaxRetryError

from zenskar_pipeline.config import Granularity, PartitionSpec, ResolvedStream
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.defs import checks
from zenskar_pipeline.defs.stream_lock import holding_stream
from zenskar_pipeline.defs.translator import STREAM_TAG, StreamTranslator
from zenskar_pipeline.destinations import DestinationResource
from zenskar_pipeline.sync import PartitionReport, Scope, check_sync, run_sync

WAREHOUSE_POOL = "databricks_warehouse"
BACKFILL_TAG = "dagster/backfill"
REBUILD_TAG = "zenskar/rebuild"

# The connector already retries 429/503 answers within a request; this covers what it gives up on (a reset
# connection, a warehouse that kept starting) and a Delta commit conflict that outlived the writer's retries.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RequestError,  # the connector gave up on a request (after its own 429/503 retries)
    MaxRetryError,
    ConnectionError,
    TimeoutError,
    CommitFailedError,  # a Delta commit race that outlived the writer's retries
)
# What the step's retry policy runs again: transient errors, and interruptions (Dagster retries those too: a
# preempted worker), unless the run is being terminated.
RETRIED: tuple[type[BaseException], ...] = (
    *TRANSIENT_ERRORS,
    DagsterExecutionInterruptedError,
    KeyboardInterrupt,
)
TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)

_PARTITIONS: dict[Granularity, type[dg.TimeWindowPartitionsDefinition]] = {
    Granularity.HOURLY: dg.HourlyPartitionsDefinition,
    Granularity.DAILY: dg.DailyPartitionsDefinition,
    Granularity.WEEKLY: dg.WeeklyPartitionsDefinition,
    Granularity.MONTHLY: dg.MonthlyPartitionsDefinition,
}


@functools.cache  # streams of one definition share one object: Dagster compares them often when loading
def partitions_def(spec: PartitionSpec | None) -> dg.TimeWindowPartitionsDefinition | None:
    """Dagster's time-window partitions for a stream's `partitions:` (None: unpartitioned)."""
    if spec is None:
        return None
    kind: Any = _PARTITIONS[spec.granularity]
    definition: dg.TimeWindowPartitionsDefinition = kind(
        start_date=spec.start_key, timezone=spec.timezone, end_offset=spec.end_offset
    )
    return definition


def stream_asset(
    stream: ResolvedStream, table: DiscoveredTable, translator: StreamTranslator
) -> dg.AssetsDefinition:
    """The copy of one stream as an asset; its step needs the `databricks` and `destination` resources."""
    spec = translator.copy_spec(stream, table).replace_attributes(skippable=True)
    key = spec.key
    specs = checks.check_specs(stream, key)
    # Every partition's materialization shows the copy's columns: known from discovery, so no Delta read.
    column_schema = spec.metadata["dagster/column_schema"]

    @dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[spec],
        check_specs=specs,
        partitions_def=partitions_def(stream.settings.partitions),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        pool=WAREHOUSE_POOL,
        op_tags={STREAM_TAG: stream.name},
    )
    def sync_stream(
        context: dg.AssetExecutionContext, databricks: DatabricksResource, destination: DestinationResource
    ) -> Iterator[Any]:
        partitioned = stream.settings.partitions is not None
        scope = Scope.partitions(context.partition_keys) if partitioned else Scope.whole_table()
        copy = destination.for_stream(stream)
        step_key = context.op_execution_context.get_step_execution_context().step.key
        # The stream is held from before the first read to after the last event about the copy.
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(
                    holding_stream(context.instance, stream.name, context.run_id, step_key, context.log)
                )
                with databricks.session() as session:
                    reports = run_sync(session, stream, table, copy, scope, rebuild=is_rebuild(context))
                    earlier = checks.last_outcomes(context.instance, specs)
                    outcomes = check_sync(session, stream, table, copy, reports, earlier=earlier)
            except RETRIED as error:
                if is_terminated(context):
                    raise dg.Failure(f"{stream.name}: the run was terminated", allow_retries=False) from error
                raise  # the retry policy takes these (an interruption, not Terminate: a preempted worker)
            except Exception as error:
                # Bad settings or partition keys, a breaking source change, an unwritable destination:
                # retrying cannot help, so the run fails at once with the reason.
                raise dg.Failure(f"{stream.name}: {error}", allow_retries=False) from error
            for report in reports:
                if report.note:
                    context.log.warning(f"{stream.name}: {report.note}")
            reported = reported_partitions(context, key, reports)
            landed = copy.row_counts([r.partition for r in reported if r.partition is not None] or None)
            run_figures = run_metadata(reports)
            for report in reported:
                yield dg.AssetMaterialization(
                    asset_key=key,
                    partition=report.partition,
                    metadata={
                        **report_metadata(report, stream, landed.get(report.partition, 0)),
                        "dagster/column_schema": column_schema,
                        **run_figures,
                    },
                )
            yield from checks.check_results(
                context, key, outcomes, context.partition_keys if partitioned else ()
            )

    return sync_stream


def is_terminated(context: dg.AssetExecutionContext) -> bool:
    """Whether the run is being terminated (Terminate in the UI). Dagster interrupts the step then, and a
    warehouse request under way fails with what looks like a transient error (the connector wraps the
    interruption); the step's retry policy, which Dagster also applies to interruptions, would run the sync
    again as if nothing had asked it to stop."""
    run = context.instance.get_run_by_id(context.run_id)
    return run is not None and run.status in (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


def reported_partitions(
    context: dg.AssetExecutionContext, key: dg.AssetKey, reports: list[PartitionReport]
) -> list[PartitionReport]:
    """The partitions a run records a materialization for. Each costs Dagster an event written to the
    instance (about 20 ms on SQLite), so a run records the partitions whose copy changed or that read
    something worth reporting, those never materialized yet, and its latest partition (the copy is
    current as of this run); a partition already materialized and untouched keeps its record. Runs of a
    Dagster backfill record every partition: the backfill is complete only when each of its partitions is."""
    if len(reports) <= 1 or BACKFILL_TAG in context.run.tags:
        return reports
    materialized = context.instance.get_materialized_partitions(key)
    latest = context.partition_keys[-1]
    return [
        report
        for report in reports
        if report.rows_written
        or report.rows_deleted
        or report.skipped_null_cursor
        or report.skipped_outside_windows
        or report.note
        or report.partition == latest
        or report.partition not in materialized
    ]


def is_rebuild(context: dg.AssetExecutionContext) -> bool:
    """Whether the run rebuilds windows (a change-feed stream's backfill) rather than bringing the copy
    current: runs of a Dagster backfill, or tagged `zenskar/rebuild: true`."""
    tags = context.run.tags
    return BACKFILL_TAG in tags or tags.get(REBUILD_TAG, "").lower() == "true"


def report_metadata(report: PartitionReport, stream: ResolvedStream, copy_rows: int) -> dict[str, Any]:
    """What one partition's materialization shows: `dagster/row_count` is the rows the copy's partition
    holds after the run (from the Delta log); `rows_written` what this run wrote there."""
    metadata: dict[str, Any] = {
        "dagster/row_count": copy_rows,
        "dagster/uri": stream.destination_uri,
        "rows_read": report.rows_read,
        "rows_written": report.rows_written,
        "rows_deleted": report.rows_deleted,
        "skipped_null_cursor": report.skipped_null_cursor,
        "skipped_outside_windows": report.skipped_outside_windows,
        "source_version": report.source_version,
        "destination_version": report.destination_version,
        "cursor_before": _cursor(report.cursor_before),
        "cursor_after": _cursor(report.cursor_after),
    }
    if report.synced_through is not None:
        metadata["synced_through_version"] = report.synced_through
    if report.note:
        metadata["note"] = report.note
    return metadata


def run_metadata(reports: list[PartitionReport]) -> dict[str, Any]:
    """The run's time, on each partition it reports: a range run reads its windows in one statement and
    lands them in one commit, so no partition has a time of its own; `run_rows_per_second` is every row
    the run read over that time."""
    seconds = max((report.seconds for report in reports), default=0.0)
    rows = sum(report.rows_read for report in reports)
    return {
        "run_seconds": round(seconds, 3),
        "run_partitions": len(reports),
        "run_rows_per_second": round(rows / seconds, 1) if seconds > 0 else 0.0,
    }


def _cursor(value: Any) -> Any:
    """A cursor as metadata: instants and dates as ISO text, numbers as they are, None as null."""
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, int | float | str):
        return value
    return str(value)

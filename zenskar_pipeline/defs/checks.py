"""Asset checks evaluated in the sync step itself: the checks the stream's sync mode promises
(`SyncStrategy.checks`), answered from what the run reported and verified (`SyncStrategy.verify`).

Dagster plans a partitioned run's checks once per partition of its range, but an `AssetCheckResult` of a
range run carries no partition: answered that way, each partition's planned evaluation ends "Skipped" beside
one answer for no partition. So a partitioned run answers every check for each partition it covered, as an
`AssetCheckEvaluation` naming the partition (the per-partition answer where the check has one, else the
run's answer about the whole copy).

Each answer is an event Dagster stores (about 24 ms each on SQLite): a year of hourly partitions answered
partition by partition took a sync that landed nothing from 20 s to 212 s. So a run of more than
`PER_PARTITION_LIMIT` partitions (history, not the sensor's, a schedule's or a UI backfill's few) answers
each check once for the run, its metadata naming the partitions, and leaves the planned ones to Dagster.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.sync import checks
from zenskar_pipeline.sync.modes import strategy_for

OUTSIDE_WINDOWS = checks.OUTSIDE_WINDOWS.name
ROW_COUNT = checks.ROW_COUNT.name
UNIQUE_KEY = checks.UNIQUE_KEY.name


def check_specs(stream: ResolvedStream, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks a stream's copy carries, as its mode promises them."""
    return [
        dg.AssetCheckSpec(spec.name, asset=key, description=spec.description)
        for spec in strategy_for(stream.settings).checks(stream)
    ]


def last_outcomes(
    instance: dg.DagsterInstance, specs: Sequence[dg.AssetCheckSpec]
) -> dict[str, checks.CheckOutcome]:
    """The last evaluation of each check, by name, as the sync's checks read them (a check that reads the
    copy answers from it when the copy has not moved since)."""
    answered = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
    outcomes: dict[str, checks.CheckOutcome] = {}
    for spec in specs:
        records = instance.event_log_storage.get_asset_check_execution_history(
            spec.key, limit=1, status=answered
        )
        event = records[0].event if records else None
        evaluation = event.dagster_event.event_specific_data if event and event.dagster_event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            metadata = {name: getattr(value, "value", value) for name, value in evaluation.metadata.items()}
            outcomes[spec.name] = checks.CheckOutcome(spec.name, evaluation.passed, metadata)
    return outcomes


PER_PARTITION_LIMIT = 100


def check_results(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    outcomes: Sequence[checks.CheckOutcome],
    partitions: Sequence[str] = (),
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output[None]]:
    """The checks' answers, as errors when they fail: one per check for an unpartitioned run, one per check
    and partition of `partitions` for a partitioned one of at most `PER_PARTITION_LIMIT` partitions (with the
    check's output, which an `AssetCheckResult` would have carried)."""
    if not partitions or len(partitions) > PER_PARTITION_LIMIT:
        for outcome in outcomes:
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=outcome.name,
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=outcome.metadata,
            )
        return
    selected = context.selected_asset_check_keys
    for outcome in outcomes:
        check_key = dg.AssetCheckKey(key, outcome.name)
        if check_key not in selected:
            continue
        for partition in partitions:
            answer = outcome.for_partition(partition)
            yield dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=outcome.name,
                passed=answer.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata=answer.metadata,
                partition=partition,
            )
        yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(check_key))

"""Asset checks evaluated in the sync step itself: the checks the stream's sync mode promises
(`SyncStrategy.checks`), answered from what the run reported and verified (`SyncStrategy.verify`).

Dagster gives the check evaluations of a range run no partition, so each check is evaluated once per run,
its metadata naming the partitions it covers.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def check_results(key: dg.AssetKey, outcomes: Sequence[checks.CheckOutcome]) -> list[dg.AssetCheckResult]:
    """One evaluation per outcome, as an error when it fails."""
    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=outcome.metadata,
        )
        for outcome in outcomes
    ]

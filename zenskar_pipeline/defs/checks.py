"""Asset checks evaluated in the sync step itself: the checks the stream's sync mode promises
(`SyncStrategy.checks`), answered from what the run reported and verified (`SyncStrategy.verify`).

Dagster gives the check evaluations of a range run no partition, so each check is evaluated once per run,
its metadata naming the partitions it covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

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

"""Asset checks evaluated in the sync step itself, from what the sync reported and verified.

Dagster gives the check evaluations of a range run no partition, so each check is evaluated once per run,
its metadata naming the partitions it covers.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from zenskar_pipeline.config import ResolvedStream, SyncMode
from zenskar_pipeline.sync import PartitionReport
from zenskar_pipeline.sync.verify import Verification, counts_rows

OUTSIDE_WINDOWS = "no_rows_outside_partition_windows"
ROW_COUNT = "row_count_matches_source"
UNIQUE_KEY = "primary_key_unique"


def check_specs(stream: ResolvedStream, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks a stream's copy carries, by what its mode promises."""
    specs = []
    if stream.settings.partitions is not None:
        specs.append(
            dg.AssetCheckSpec(
                OUTSIDE_WINDOWS,
                asset=key,
                description="Source rows the run read whose partition field is NULL or outside every "
                "partition window; they are not landed, so the copy misses them until the data or "
                "partitions.start moves.",
            )
        )
    if counts_rows(stream):
        specs.append(
            dg.AssetCheckSpec(
                ROW_COUNT,
                asset=key,
                description="The copy holds as many rows as the source at the version synced, in the "
                "windows the run covered (change feed: in every window; soft-deleted rows left out).",
            )
        )
    if stream.settings.sync_mode is SyncMode.INCREMENTAL_APPEND_DEDUPED:
        specs.append(
            dg.AssetCheckSpec(
                UNIQUE_KEY, asset=key, description="No primary key value is held by two rows of the copy."
            )
        )
    return specs


def check_results(
    key: dg.AssetKey,
    specs: Sequence[dg.AssetCheckSpec],
    reports: Sequence[PartitionReport],
    verification: Verification,
) -> list[dg.AssetCheckResult]:
    """One evaluation per declared check."""
    names = {spec.name for spec in specs}
    results = []
    if OUTSIDE_WINDOWS in names:
        results.append(_outside_windows(key, reports))
    if ROW_COUNT in names and verification.row_count is not None:
        counted = verification.row_count
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=ROW_COUNT,
                passed=counted.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "source_rows": counted.source_rows,
                    "copy_rows": counted.copy_rows,
                    "source_version": counted.source_version,
                    "partitions": list(counted.partitions) if counted.partitions else "all",
                },
            )
        )
    if UNIQUE_KEY in names and verification.duplicate_keys is not None:
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=UNIQUE_KEY,
                passed=verification.duplicate_keys == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "duplicate_keys": verification.duplicate_keys,
                    "primary_key": list(verification.primary_key),
                },
            )
        )
    return results


def _outside_windows(key: dg.AssetKey, reports: Sequence[PartitionReport]) -> dg.AssetCheckResult:
    skipped = {report.partition or "": report.skipped_outside_windows for report in reports}
    total = sum(skipped.values())
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=OUTSIDE_WINDOWS,
        passed=total == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_outside_windows": total,
            "by_partition": {k: v for k, v in skipped.items() if v},
            "partitions": [k for k in skipped if k],
        },
    )

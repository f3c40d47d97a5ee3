"""Asset checks evaluated in the sync step itself, from the reports the sync returned (no extra query)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.sync import PartitionReport

OUTSIDE_WINDOWS = "no_rows_outside_partition_windows"


def check_specs(stream: ResolvedStream, key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """The checks a stream's copy carries; partitioned streams only (others have no windows)."""
    if stream.settings.partitions is None:
        return []
    return [
        dg.AssetCheckSpec(
            OUTSIDE_WINDOWS,
            asset=key,
            description="Source rows the run read whose partition field is NULL or outside every partition "
            "window; they are not landed, so the copy misses them until the data or partitions.start moves.",
        )
    ]


def outside_windows_result(key: dg.AssetKey, reports: Sequence[PartitionReport]) -> dg.AssetCheckResult:
    """One evaluation for the whole run: Dagster gives check evaluations of a range run no partition."""
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

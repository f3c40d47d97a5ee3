"""Run requests for one stream, as the sensor and the schedules send them: one partition, a contiguous range
(Dagster's partition-range tags, one run), or the whole table; always with the `zenskar/stream` tag."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.defs.translator import STREAM_TAG

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def stream_run_request(
    stream: ResolvedStream,
    keys: Sequence[str],
    run_key: str,
    *,
    job_name: str | None = None,
    asset_selection: Sequence[dg.AssetKey] | None = None,
) -> dg.RunRequest:
    """A run of `keys` (one contiguous range, in order; empty: the whole, unpartitioned table)."""
    tags = {STREAM_TAG: stream.name}
    partition_key = None
    if len(keys) == 1:
        partition_key = keys[0]
    elif keys:
        tags.update({RANGE_START: keys[0], RANGE_END: keys[-1]})
    return dg.RunRequest(
        run_key=run_key,
        job_name=job_name,
        asset_selection=asset_selection,
        partition_key=partition_key,
        tags=tags,
    )


def range_label(keys: Sequence[str]) -> str:
    """`first..last` for run keys and logs; `whole` for an unpartitioned run."""
    return f"{keys[0]}..{keys[-1]}" if keys else "whole"

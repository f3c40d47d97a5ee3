"""Which job runs a stream's copy: one job per partitions definition, each run selecting one copy."""

from __future__ import annotations

import re

from zenskar_pipeline.config import ResolvedStream


def stream_job_name(stream: ResolvedStream) -> str:
    """The job that runs the stream's copy, e.g. `zenskar_sync_daily_2026_01_01_UTC`,
    `zenskar_sync_unpartitioned`. Dagster cannot hold assets of different partitions definitions in one
    job, so streams share a job exactly when they share a definition."""
    spec = stream.settings.partitions
    if spec is None:
        return "zenskar_sync_unpartitioned"
    name = f"zenskar_sync_{spec.granularity.value}_{spec.start_key}_{spec.timezone}"
    if not spec.include_current:
        name += "_complete_windows"
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def delivery_job_name(stream: ResolvedStream) -> str:
    """The job that runs the stream's delivery to Zenskar: `zenskar_deliver_...`, one per partitions
    definition, as for the copies."""
    return stream_job_name(stream).replace("zenskar_sync_", "zenskar_deliver_", 1)

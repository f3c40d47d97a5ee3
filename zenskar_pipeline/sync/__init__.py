"""The sync engine: a plan per (stream, scope), one read of the source at one Delta version, one write.

`run_sync` is the entry point; `reader.read_statement` is the one place the incremental range is spelled out.
"""

from zenskar_pipeline.sync.change_feed import ChangeFeedHistoryError, app_id
from zenskar_pipeline.sync.engine import run_sync
from zenskar_pipeline.sync.plan import PartitionCalendar, Scope, SyncPlan, Window
from zenskar_pipeline.sync.report import PartitionReport

__all__ = [
    "ChangeFeedHistoryError",
    "PartitionCalendar",
    "PartitionReport",
    "Scope",
    "SyncPlan",
    "Window",
    "app_id",
    "run_sync",
]

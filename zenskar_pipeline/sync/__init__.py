"""The sync engine: each stream's sync mode (`sync.modes`) reads the source at one Delta version and lands
what is new in one commit, and reports per partition.

`run_sync` is the entry point, `check_sync` answers the checks the mode promises; `databricks.statements`
spells every statement a sync sends.
"""

from zenskar_pipeline.sync.calendar import PartitionCalendar, Window
from zenskar_pipeline.sync.engine import check_sync, run_sync
from zenskar_pipeline.sync.feed import ChangeFeedHistoryError, app_id
from zenskar_pipeline.sync.plan import Scope, SyncPlan
from zenskar_pipeline.sync.report import PartitionReport

__all__ = [
    "ChangeFeedHistoryError",
    "PartitionCalendar",
    "PartitionReport",
    "Scope",
    "SyncPlan",
    "Window",
    "app_id",
    "check_sync",
    "run_sync",
]

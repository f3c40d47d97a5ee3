"""The sync engine: a plan per (stream, scope), one read of the source at one Delta version, one write.

`run_sync` is the entry point; `reader.read_statement` is the one place the incremental range is spelled out.
"""

from zenskar_pipeline.sync.engine import PartitionReport, run_sync
from zenskar_pipeline.sync.plan import PartitionCalendar, Scope, SyncPlan, Window

__all__ = ["PartitionCalendar", "PartitionReport", "Scope", "SyncPlan", "Window", "run_sync"]

"""What a sync reports per partition: the figures a materialization shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PartitionReport:
    """What a run did for one partition (`partition` None: an unpartitioned stream)."""

    partition: str | None
    rows_read: int  # rows read that could land (skipped rows are counted below, not here)
    rows_written: int
    rows_deleted: int
    skipped_null_cursor: int
    skipped_outside_windows: int
    source_version: int
    cursor_before: Any  # the high-water mark before the run (None: nothing landed, or full refresh)
    cursor_after: Any
    seconds: float  # the whole run's wall-clock time (a range run is one read and one commit)
    destination_version: int | None  # the commit that landed the rows; None: nothing committed
    note: str | None = None  # what the run did out of the ordinary (a change feed's resnapshot)
    synced_through: int | None = None  # change feeds: the source version the copy is synced through

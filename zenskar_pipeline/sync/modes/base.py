"""What a sync mode decides, in one place per mode: `SyncStrategy`.

A strategy decides what a run reads (the statement), how it lands (the destination's writes), which checks
the copy carries, what the sensor asks for when the source has a new version, and which settings the mode
requires. Everything else asks the strategy of a stream (`sync.modes.strategy_for`); nothing outside
`sync/modes/` branches on a sync mode.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import ClassVar

from zenskar_pipeline.config import Problem, ResolvedStream, StreamConfig, StreamSettings, SyncMode
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.destinations import Destination
from zenskar_pipeline.sync import checks
from zenskar_pipeline.sync.changed_partitions import Look, Requested
from zenskar_pipeline.sync.checks import CheckOutcome, CheckSpec
from zenskar_pipeline.sync.plan import Scope, column_name
from zenskar_pipeline.sync.report import PartitionReport

DISCOVER = "`zenskar-pipeline discover`"
# What a mode that reads by cursor (or whole) says of the change feed's own settings.
FEED_ONLY_SETTINGS: Mapping[str, tuple[str, str]] = {
    key: (f"only applies with change_feed: true ({reason})", f"set change_feed: true, or remove {key}")
    for key, reason in (
        ("deletes", "cursor syncs do not see deletes"),
        ("on_missing_history", "it is about the feed"),
    )
}


@dataclass(frozen=True)
class SyncRun:
    """One run of one stream: what it syncs, from where, into which copy."""

    session: DatabricksSession
    stream: ResolvedStream
    table: DiscoveredTable
    destination: Destination
    now: dt.datetime
    scope: Scope = field(default_factory=Scope.whole_table)  # what a sync covers (checks need none)
    rebuild: bool = False  # a backfill of windows (a change feed rebuilds them as of its synced version)
    # The checks' last evaluations, by check name (for those that may answer from them: `sync.checks`).
    earlier_checks: Mapping[str, checks.CheckOutcome] = field(default_factory=dict)


@dataclass(frozen=True)
class EventRows:
    """Which rows of a copy are the usage events to deliver (`zenskar_pipeline.delivery`), as the sync mode
    that wrote them knows: the copy's columns that tell one event from another (`identity`), a DuckDB
    predicate on the rows (`where`; None: every row), and, where one identity may hold several rows (an
    appended history of versions), the columns that order them (`latest_by`, descending: the first is the
    event) and a predicate that latest row must meet (`keep`; a change feed's delete is no event).
    Predicates read system columns only (they are carried through by name)."""

    identity: tuple[str, ...]
    where: str | None = None
    latest_by: tuple[str, ...] = ()
    keep: str | None = None
    prefer: str | None = None  # a predicate true of the row to take among rows tied on `latest_by[0]`


class SyncStrategy(ABC):
    """One sync mode. Subclasses set the class attributes and implement `sync` and `requested`."""

    mode: ClassVar[SyncMode]
    change_feed: ClassVar[bool] = False
    reads_by_cursor: ClassVar[bool] = False  # reads rows at or above a high-water mark of `cursor_field`
    needs_primary_key: ClassVar[str | None] = None  # why the mode needs a key (None: it does not)
    catches_up: ClassVar[bool] = False  # any run lands every change up to the version it reads
    # Settings this mode does not read, with the problem and fix to report when one is written anyway.
    unused_settings: ClassVar[Mapping[str, tuple[str, str]]] = {}
    # Why this mode has no change-feed variant (None: it has one, or is one).
    refuses_change_feed: ClassVar[tuple[str, str] | None] = None  # (problem, fix)

    @property
    def name(self) -> str:
        return f"{self.mode.value}{' with change_feed' if self.change_feed else ''}"

    # --- settings ------------------------------------------------------------------------------------------

    def settings_problems(self, where: str, stream: StreamConfig, written: AbstractSet[str]) -> list[Problem]:
        """What is wrong with the stream's settings for this mode, from the streams file alone."""
        return [
            Problem(where, key, problem, fix)
            for key, (problem, fix) in self.unused_settings.items()
            if key in written
        ]

    def cursor_problems(self, where: str, settings: StreamSettings) -> list[Problem]:
        """A cursor the mode reads by but the stream does not name (`discover` suggests one, so it may let
        this pass)."""
        if not self.reads_by_cursor or settings.cursor_field is not None:
            return []
        return [
            Problem(
                where,
                "cursor_field",
                f"missing; sync_mode {self.mode.value} without change_feed reads rows by a cursor",
                f"set cursor_field to a column that grows with every change ({DISCOVER} suggests one), "
                "or set change_feed: true",
            )
        ]

    def source_problems(self, stream: ResolvedStream, table: DiscoveredTable) -> list[Problem]:
        """What is wrong with the stream's settings for this mode, given its source table (whose Unity
        Catalog key has been filled in where the stream names none)."""
        if self.needs_primary_key is None or stream.settings.primary_key:
            return []
        suggested = table.suggested_key
        hint = f" ({suggested.columns[0]!r} looks like one)" if suggested else ""
        return [
            Problem(
                f"stream {stream.name}",
                "primary_key",
                f"missing; sync_mode {self.mode.value} {self.needs_primary_key}, and {stream.name} "
                "declares no PRIMARY KEY constraint in Unity Catalog",
                f"set primary_key{hint}, or declare a PRIMARY KEY constraint on the table in Unity Catalog",
            )
        ]

    def primary_key(self, stream: ResolvedStream, table: DiscoveredTable) -> tuple[str, ...]:
        """The stream's key as the source spells it (the table's Unity Catalog key when the stream names
        none); empty when there is none. A mode that needs one raises naming the stream."""
        declared = stream.settings.primary_key or table.primary_key or ()
        key = tuple(column_name(stream, table, name, "primary_key") for name in declared)
        if not key and self.needs_primary_key is not None:
            raise ValueError(
                f"stream {stream.name}: {self.name} needs a primary_key (set primary_key, or declare a "
                "PRIMARY KEY constraint on the table)"
            )
        return key

    def cursor(self, stream: ResolvedStream, table: DiscoveredTable) -> str | None:
        """The cursor as the source spells it; a mode that reads by cursor raises when there is none."""
        name = stream.settings.cursor_field
        if name is None:
            if self.reads_by_cursor:
                raise ValueError(f"stream {stream.name}: {self.mode.value} needs a cursor_field")
            return None
        return column_name(stream, table, name, "cursor_field")

    # --- a run ---------------------------------------------------------------------------------------------

    @abstractmethod
    def sync(self, run: SyncRun) -> list[PartitionReport]:
        """Read what the mode reads for `run.scope` and land it; one report per partition touched."""

    # --- checks --------------------------------------------------------------------------------------------

    def checks(self, stream: ResolvedStream) -> list[CheckSpec]:
        """The checks a copy of this mode carries."""
        return [checks.OUTSIDE_WINDOWS] if stream.settings.partitions is not None else []

    def verify(self, run: SyncRun, reports: Sequence[PartitionReport]) -> list[CheckOutcome]:
        """One outcome per check of `checks`, for a finished run."""
        if run.stream.settings.partitions is None:
            return []
        return [checks.outside_windows(reports)]

    # --- delivery ------------------------------------------------------------------------------------------

    def event_rows(self, stream: ResolvedStream, table: DiscoveredTable) -> EventRows | None:
        """The copy's rows that are usage events, told apart by the primary key (one row per key); None
        when the stream has no key, and so nothing that keeps an event from being sent twice."""
        key = self.primary_key(stream, table)
        return EventRows(key) if key else None

    # --- the sensor ----------------------------------------------------------------------------------------

    @abstractmethod
    def requested(self, look: Look) -> Requested:
        """What a new version of a partitioned stream's table asks to sync (see `changed_partitions`)."""

    def holds_whole_table(self, stream: ResolvedStream, destination: Destination, version: int) -> bool:
        """Whether an unpartitioned copy is known to hold the source as of `version`, so that the sensor's
        first sight of the table asks for no run. By default not known: a run finds what is new."""
        return False

"""Running one sync: the stream's strategy (`sync.modes`) plans against the source's current Delta version,
reads in one statement and lands in one commit (or a few, for a large keyed read); the engine makes sure
the copy can be written before anything is read, then answers the checks the strategy promises.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.destinations import Destination
from zenskar_pipeline.sync.checks import CheckOutcome
from zenskar_pipeline.sync.modes import SyncRun, strategy_for
from zenskar_pipeline.sync.plan import Scope
from zenskar_pipeline.sync.report import PartitionReport


def run_sync(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: Destination,
    scope: Scope,
    *,
    now: dt.datetime | None = None,
    rebuild: bool = False,
) -> list[PartitionReport]:
    """Sync `scope` of `stream` from the source's current Delta version into `destination`; one report per
    partition the run covered or touched. `rebuild` (a backfill) makes a change-feed run rebuild the scope's
    windows as of the copy's synced-through version; other modes ignore it."""
    destination.check_writable()
    run = SyncRun(session, stream, table, destination, now or dt.datetime.now(dt.UTC), scope, rebuild)
    return strategy_for(stream.settings).sync(run)


def check_sync(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: Destination,
    reports: Sequence[PartitionReport],
    *,
    now: dt.datetime | None = None,
    earlier: Mapping[str, CheckOutcome] | None = None,
) -> list[CheckOutcome]:
    """The outcome of every check the stream's mode promises, for a finished run; `earlier`: the checks'
    last evaluations, by check name (a check that reads the copy reuses one made at its current version)."""
    if not reports:
        return []
    run = SyncRun(
        session, stream, table, destination, now or dt.datetime.now(dt.UTC), earlier_checks=earlier or {}
    )
    return strategy_for(stream.settings).verify(run, reports)

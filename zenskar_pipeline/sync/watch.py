"""One pass over the watched source tables, as the sensor makes it every tick: each table's latest Delta
version (`DESCRIBE HISTORY ... LIMIT 1`), read by a few workers that each reuse one session from table to
table, and for every table whose version moved, what the new version asks to sync (the stream's strategy
decides: `changed_partitions`).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DatabricksSession
from zenskar_pipeline.destinations import Destination, DestinationResource
from zenskar_pipeline.errors import first_line
from zenskar_pipeline.sync.changed_partitions import Look, Requested
from zenskar_pipeline.sync.modes import strategy_for
from zenskar_pipeline.sync.plan import stream_calendar
from zenskar_pipeline.sync.reader import current_version

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 4  # the client parses answers on the GIL: more sessions only cost more connects
OpenSession = Callable[[], AbstractContextManager[DatabricksSession]]


@dataclass(frozen=True)
class Watched:
    """A stream whose source table the pass looks at."""

    stream: ResolvedStream
    table: DiscoveredTable

    @property
    def name(self) -> str:
        return self.stream.name


@dataclass(frozen=True)
class NewVersion:
    """A table whose latest version is not the one seen before, and what that version asks to sync."""

    stream: ResolvedStream
    seen: int | None  # None: first sight
    version: int
    requested: Requested


@dataclass(frozen=True)
class WatchPass:
    """What one pass found. A failed table keeps the version seen before, so the next pass covers it."""

    versions: Mapping[str, int]  # per table handled: the version now seen
    new: tuple[NewVersion, ...]  # in the order the tables were given
    failed: Mapping[str, str]  # per table that failed: why
    statements: int  # statements issued in all
    unreachable: str | None = None  # no session could be opened: why (every table then failed)


@dataclass
class _Worker:
    """What one worker did; each worker writes only its own."""

    versions: dict[str, int] = field(default_factory=dict)
    new: dict[str, NewVersion] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    statements: int = 0
    opened: bool = False
    connect_error: str | None = None  # its session could not be opened


def watch(
    open_session: OpenSession,
    destinations: DestinationResource,
    watched: Sequence[Watched],
    seen: Mapping[str, int],
    *,
    workers: int = DEFAULT_WORKERS,
    now: dt.datetime | None = None,
) -> WatchPass:
    """Read every table's latest version with at most `workers` sessions at once; for a version other than
    `seen[table]`, work out what it asks to sync. One table's failure (dropped, no permission, an unreadable
    copy) is recorded and the others go on."""
    now = now or dt.datetime.now(dt.UTC)
    pending: queue.SimpleQueue[Watched] = queue.SimpleQueue()
    for item in watched:
        pending.put(item)

    def work() -> _Worker:
        done = _Worker()
        try:
            with open_session() as session:
                done.opened = True
                while True:
                    try:
                        item = pending.get_nowait()
                    except queue.Empty:
                        break
                    # records its own failures
                    _look(session, destinations, item, seen.get(item.name), now, done)
                done.statements = session.statements_issued
        except Exception as error:
            if done.opened:  # closing failed: what the session read stands
                log.warning("closing a session failed: %s", error)
            else:  # the other workers take the tables this one would have read
                done.connect_error = f"{type(error).__name__}: {error}"
        return done

    count = max(1, min(workers, len(watched)))
    with ThreadPoolExecutor(count, thread_name_prefix="watch") as pool:
        results = list(pool.map(lambda _: work(), range(count)))
    versions: dict[str, int] = {}
    new: dict[str, NewVersion] = {}
    failed: dict[str, str] = {}
    for result in results:
        versions.update(result.versions)
        new.update(result.new)
        failed.update(result.failed)
    errors = [result.connect_error for result in results if result.connect_error]
    for item in watched:
        if item.name not in versions and item.name not in failed:  # no worker reached it
            failed[item.name] = errors[0] if errors else "no session could be opened"
    return WatchPass(
        versions=versions,
        new=tuple(new[item.name] for item in watched if item.name in new),
        failed=failed,
        statements=sum(result.statements for result in results),
        unreachable=errors[0] if errors and len(errors) == len(results) else None,
    )


def _look(
    session: DatabricksSession,
    destinations: DestinationResource,
    item: Watched,
    seen: int | None,
    now: dt.datetime,
    done: _Worker,
) -> None:
    try:
        version = current_version(session, item.table.name)
        if version == seen:
            done.versions[item.name] = version
            return
        if seen is not None and version < seen:
            log.warning(
                "table %s is at version %d, before the %d seen: was it replaced?", item.name, version, seen
            )
        since = seen if seen is not None and seen < version else None
        destination = destinations.for_stream(item.stream)
        requested = changed_partitions(session, item.stream, item.table, destination, since, version, now=now)
    except Exception as error:
        done.failed[item.name] = f"{type(error).__name__}: {first_line(error, default='')}"
        return
    done.versions[item.name] = version
    done.new[item.name] = NewVersion(item.stream, seen, version, requested)


def changed_partitions(
    session: DatabricksSession,
    stream: ResolvedStream,
    table: DiscoveredTable,
    destination: Destination,
    since: int | None,
    version: int,
    *,
    now: dt.datetime,
) -> Requested:
    """What `version` of the stream's table asks to sync; `since` is the version seen before (None: the
    table's first sight, or a table that went back in time). Unpartitioned: the whole table; partitioned:
    what the stream's sync mode asks for (`SyncStrategy.requested`), keys outside the partitions
    definition dropped."""
    found = stream_calendar(stream, table, now)
    if found is None:
        return Requested(whole=True, reason="unpartitioned: the whole table")
    field, calendar = found
    look = Look(session, stream, table, destination, calendar, field, since, version)
    return strategy_for(stream.settings).requested(look)

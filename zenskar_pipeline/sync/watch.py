"""One pass over the watched source tables, as the sensor makes it every tick: each table's latest Delta
version (`DESCRIBE HISTORY ... LIMIT 1`), read by a few workers that each reuse one session from table to
table, and for every table whose version moved, what the new version asks to sync (the stream's strategy
decides: `changed_partitions`).

With a `WatchMemory` (the sensor keeps one in its process between ticks), a pass reads a table's version
only when `information_schema.tables.last_altered` moved since it last did, or the table has not been read
yet, or its turn has come to be verified anyway: the hint costs one statement per catalog, and every table is
still read at least once every `VERIFY_EVERY` passes, so a hint that missed a commit delays it, never loses
it. Its sessions stay open from tick to tick.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from zenskar_pipeline.config import ResolvedStream
from zenskar_pipeline.databricks import statements as statements_module
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
VERIFY_EVERY = 10  # passes within which every table's version is read, whatever the hints say
OpenSession = Callable[[], AbstractContextManager[DatabricksSession]]


class SessionPool:
    """Sessions kept open between passes (one process, many ticks), so that a tick does not pay for
    connecting. A session is handed to one worker at a time; one that failed, or idled longer than
    `idle_limit_s`, is closed instead of handed out again.

    A pool dropped with sessions still open (a code location reloaded, definitions built again) closes
    them on a thread of its own: left to the connector's `__del__`, they would close in whichever thread
    the garbage collector happened to run, blocking it on a network call."""

    def __init__(self, idle_limit_s: float = 300.0) -> None:
        self._idle: list[tuple[float, AbstractContextManager[DatabricksSession], DatabricksSession]] = []
        self._lock = threading.Lock()
        self._idle_limit_s = idle_limit_s
        weakref.finalize(self, _close_elsewhere, self._idle)

    def opener(self, open_session: OpenSession) -> OpenSession:
        """`open_session` through the pool."""

        @contextmanager
        def borrowed() -> Iterator[DatabricksSession]:
            opened = self._take()
            if opened is None:
                manager = open_session()
                opened = (manager, manager.__enter__())
            manager, session = opened
            try:
                yield session
            except BaseException:
                _close(manager)
                raise
            with self._lock:
                self._idle.append((time.monotonic(), manager, session))

        return borrowed

    def _take(self) -> tuple[AbstractContextManager[DatabricksSession], DatabricksSession] | None:
        with self._lock:
            while self._idle:
                since, manager, session = self._idle.pop()
                if time.monotonic() - since <= self._idle_limit_s:
                    return manager, session
                _close(manager)
        return None

    def close(self) -> None:
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
        for _, manager, _ in idle:
            _close(manager)


def _close_elsewhere(
    idle: list[tuple[float, AbstractContextManager[DatabricksSession], DatabricksSession]],
) -> None:
    """Close `idle`'s sessions on a new thread (see `SessionPool`)."""
    if not idle:
        return
    managers = [manager for _, manager, _ in idle]
    idle.clear()

    def close_all() -> None:
        for manager in managers:
            _close(manager)

    threading.Thread(target=close_all, name="closing-kept-sessions", daemon=True).start()


def _close(manager: AbstractContextManager[DatabricksSession]) -> None:
    try:
        manager.__exit__(None, None, None)
    except Exception as error:  # closing is best effort: the session may be gone already
        log.debug("closing a kept session failed: %s", error)


@dataclass
class WatchMemory:
    """What a sensor remembers in its process between passes: each table's `last_altered` when its version
    was last read, whose turn it is to be verified, and the open sessions. Lost with the process: the next
    pass then reads every table."""

    altered: dict[str, dt.datetime] = field(default_factory=dict)
    verify_next: int = 0
    sessions: SessionPool = field(default_factory=SessionPool)


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
    read: int = 0  # tables whose version was read (the others' hints had not moved)


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
    memory: WatchMemory | None = None,
) -> WatchPass:
    """Read the tables' latest versions with at most `workers` sessions at once (with `memory`, only those
    the module docstring says); for a version other than `seen[table]`, work out what it asks to sync. One
    table's failure (dropped, no permission, an unreadable copy) is recorded and the others go on."""
    now = now or dt.datetime.now(dt.UTC)
    if memory is not None:
        open_session = memory.sessions.opener(open_session)
    hints, hint_statements = _hints(open_session, watched) if memory is not None else ({}, 0)
    to_read = _due(watched, seen, hints, memory)
    pending: queue.SimpleQueue[Watched] = queue.SimpleQueue()
    for item in to_read:
        pending.put(item)

    def work() -> _Worker:
        done = _Worker()
        try:
            with open_session() as session:
                done.opened = True
                before = session.statements_issued
                while True:
                    try:
                        item = pending.get_nowait()
                    except queue.Empty:
                        break
                    # records its own failures
                    _look(session, destinations, item, seen.get(item.name), now, done)
                done.statements = session.statements_issued - before
        except Exception as error:
            if done.opened:  # closing failed: what the session read stands
                log.warning("closing a session failed: %s", error)
            else:  # the other workers take the tables this one would have read
                done.connect_error = f"{type(error).__name__}: {error}"
        return done

    count = max(1, min(workers, len(to_read)))
    with ThreadPoolExecutor(count, thread_name_prefix="watch") as pool:
        results = list(pool.map(lambda _: work(), range(count))) if to_read else []
    reading = {item.name for item in to_read}
    versions: dict[str, int] = {item.name: seen[item.name] for item in watched if item.name not in reading}
    new: dict[str, NewVersion] = {}
    failed: dict[str, str] = {}
    for result in results:
        versions.update(result.versions)
        new.update(result.new)
        failed.update(result.failed)
    errors = [result.connect_error for result in results if result.connect_error]
    for item in to_read:
        if item.name not in versions and item.name not in failed:  # no worker reached it
            failed[item.name] = errors[0] if errors else "no session could be opened"
    if memory is not None:
        memory.altered.update({name: hints[name] for name in reading if name in hints and name not in failed})
    return WatchPass(
        versions=versions,
        new=tuple(new[item.name] for item in watched if item.name in new),
        failed=failed,
        statements=hint_statements + sum(result.statements for result in results),
        unreachable=errors[0] if errors and len(errors) == len(results) else None,
        read=len(to_read),
    )


def _hints(open_session: OpenSession, watched: Sequence[Watched]) -> tuple[dict[str, dt.datetime], int]:
    """`last_altered` of every watched table (one statement per catalog), and the statements it took; a
    catalog whose hints cannot be read has none (its tables are then all read)."""
    by_catalog: dict[str, set[str]] = {}
    for item in watched:
        by_catalog.setdefault(item.table.name.catalog, set()).add(item.table.name.schema)
    names = {item.name for item in watched}
    hints: dict[str, dt.datetime] = {}
    statements = 0
    try:
        with open_session() as session:
            for catalog, schemas in sorted(by_catalog.items()):
                statements += 1
                rows = session.query_table(statements_module.last_altered(catalog, sorted(schemas)))
                for row in rows.to_pylist():
                    name = f"{catalog}.{row['table_schema']}.{row['table_name']}".lower()
                    if name in names and isinstance(row["last_altered"], dt.datetime):
                        hints[name] = row["last_altered"]
    except Exception as error:  # no hints: every table is read, as without a memory
        log.warning("last_altered hints unavailable this tick: %s", first_line(error))
    return hints, statements


def _due(
    watched: Sequence[Watched],
    seen: Mapping[str, int],
    hints: Mapping[str, dt.datetime],
    memory: WatchMemory | None,
) -> list[Watched]:
    """The tables whose version a pass reads: all without a memory; else those never read, without a hint,
    whose hint moved, and the next `len / VERIFY_EVERY` in turn."""
    if memory is None:
        return list(watched)
    turn = -(-len(watched) // VERIFY_EVERY)
    start = memory.verify_next % max(1, len(watched))
    verified = {watched[(start + offset) % len(watched)].name for offset in range(min(turn, len(watched)))}
    memory.verify_next = start + turn
    return [
        item
        for item in watched
        if item.name in verified
        or item.name not in seen
        or item.name not in hints
        or memory.altered.get(item.name) != hints[item.name]
    ]


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
    table's first sight, or a table that went back in time). Unpartitioned: the whole table, unless at first
    sight the copy already holds it as of `version` (a run made before the sensor first looked, such as the
    demo's); partitioned: what the stream's sync mode asks for (`SyncStrategy.requested`), keys outside the
    partitions definition dropped."""
    found = stream_calendar(stream, table, now)
    if found is None:
        strategy = strategy_for(stream.settings)
        if since is None and strategy.holds_whole_table(stream, destination, version):
            return Requested(reason=f"first sight: the copy already holds version {version}")
        return Requested(whole=True, reason="unpartitioned: the whole table")
    field, calendar = found
    look = Look(session, stream, table, destination, calendar, field, since, version)
    return strategy_for(stream.settings).requested(look)

"""The sensor's pass with its memory between ticks: `last_altered` hints spare the quiet tables, every table
is still read within `VERIFY_EVERY` passes (a hint that missed a commit delays it, never loses it), and the
sessions stay open from pass to pass."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.config import SyncMode
from zenskar_pipeline.destinations import DeltaDestinationResource
from zenskar_pipeline.sync.watch import VERIFY_EVERY, Watched, WatchMemory, watch
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_sync.conftest import Source, utc

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
TABLES = 12


def _sources(make_source: Any) -> list[Source]:
    sources = []
    for _ in range(TABLES):
        source: Source = make_source(
            SCHEMA, SyncMode.INCREMENTAL_APPEND_DEDUPED, primary_key=("id",), partition_field="event_time"
        )
        source.append([{"id": 1, "event_time": utc(2), "updated_at": utc(2)}])
        sources.append(source)
    return sources


def test_quiet_tables_are_spared_and_each_is_still_read_within_its_turns(
    make_source: Any, warehouse: LocalWarehouse, cursor: Any
) -> None:
    sources = _sources(make_source)
    watched = [Watched(s.stream, s.table) for s in sources]
    resource, destinations, memory = databricks_resource(warehouse), DeltaDestinationResource(), WatchMemory()
    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)

    def one_pass(seen: dict[str, int]) -> Any:
        return watch(resource.session, destinations, watched, seen, memory=memory, now=now)

    first = one_pass({})
    assert first.read == TABLES and not first.failed
    seen = dict(first.versions)
    sessions = warehouse.service.counts()["sessions"]
    quiet = one_pass(seen)
    turn = -(-TABLES // VERIFY_EVERY)
    assert (quiet.read, quiet.statements, quiet.new) == (turn, 1 + turn, ())  # one hint statement per catalog
    assert quiet.versions == seen
    assert warehouse.service.counts()["sessions"] == sessions  # the sessions of the first pass, kept open

    # A commit whose hint does not move (as Databricks documents last_altered for definition changes only).
    changed = sources[5]
    changed.append([{"id": 2, "event_time": utc(3), "updated_at": utc(3)}])
    name = changed.stream.table
    cursor.execute(
        f"SELECT last_altered FROM {name.catalog}.information_schema.tables "
        "WHERE table_schema = :s AND table_name = :t",
        {"s": name.schema, "t": name.table},
    )
    memory.altered[changed.stream.name] = cursor.fetchone()[0]
    found_after = None
    for passes in range(1, VERIFY_EVERY + 1):
        result = one_pass(seen)
        seen = dict(result.versions)
        if result.new:
            (new,) = result.new
            assert new.stream.name == changed.stream.name and new.version == seen[changed.stream.name]
            found_after = passes
            break
    assert found_after is not None, f"the new version was not found within {VERIFY_EVERY} passes"


def test_a_moved_hint_reads_the_table_at_once(make_source: Any, warehouse: LocalWarehouse) -> None:
    sources = _sources(make_source)
    watched = [Watched(s.stream, s.table) for s in sources]
    resource, destinations, memory = databricks_resource(warehouse), DeltaDestinationResource(), WatchMemory()
    now = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    seen = dict(watch(resource.session, destinations, watched, {}, memory=memory, now=now).versions)
    sources[7].append([{"id": 2, "event_time": utc(4), "updated_at": utc(4)}])
    result = watch(resource.session, destinations, watched, seen, memory=memory, now=now)
    assert [new.stream.name for new in result.new] == [sources[7].stream.name]
    assert result.new[0].version == seen[sources[7].stream.name] + 1


def test_a_dropped_memory_closes_its_kept_sessions_on_a_thread_of_its_own(
    warehouse: LocalWarehouse, monkeypatch: Any
) -> None:
    """Sessions a sensor kept must not be left to the connector's `__del__`: run by the garbage collector in
    whatever thread it lands, that would block the thread on a network call (in the in-process warehouse,
    its own serving thread, so nothing answered until the call timed out)."""
    import gc
    import threading
    import time

    from zenskar_pipeline.sync import watch as watch_module

    closed_on: list[str] = []
    close = watch_module._close

    def recording_close(manager: Any) -> None:
        closed_on.append(threading.current_thread().name)
        close(manager)

    monkeypatch.setattr(watch_module, "_close", recording_close)
    memory = WatchMemory()
    with memory.sessions.opener(databricks_resource(warehouse).session)() as session:
        session_id = session._connection.get_session_id()
    assert session_id in warehouse.service._sessions  # kept open for the next pass

    del memory, session
    gc.collect()

    deadline = time.monotonic() + 10
    while session_id in warehouse.service._sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_id not in warehouse.service._sessions
    assert closed_on and set(closed_on) == {"closing-kept-sessions"}  # earlier tests' memories close too

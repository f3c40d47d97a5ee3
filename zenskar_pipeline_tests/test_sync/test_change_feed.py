"""Change-feed syncs against the local warehouse's real change data feed and real Delta copies: snapshots,
updates no cursor sees, deletes hard and soft, append mode's change types, crashes, window rebuilds,
missing history and schema changes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from databricks.sql.exc import ServerOperationError
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.faults import FaultKind, FaultRule
from zenskar_pipeline.config import Deletes, OnMissingHistory, SyncMode
from zenskar_pipeline.destinations import PARTITION, SOURCE_VERSION
from zenskar_pipeline.destinations.landing import CHANGE_TYPE, DELETED
from zenskar_pipeline.sync import ChangeFeedHistoryError, app_id
from zenskar_pipeline_tests.test_sync.conftest import Source, utc

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.int64(), nullable=False),
        ("amount", pa.int64()),
        ("event_time", pa.timestamp("us", tz="UTC")),
    ]
)
DAYS = ("2026-01-01", "2026-01-02", "2026-01-03")


def event(event_id: int, amount: int, day: int) -> dict[str, Any]:
    return {"event_id": event_id, "amount": amount, "event_time": utc(day, 12)}


def _source(make_source: Any, mode: SyncMode = SyncMode.INCREMENTAL_APPEND_DEDUPED, **options: Any) -> Source:
    options.setdefault("partition_field", "event_time")
    source: Source = make_source(
        EVENTS, mode, cursor=None, primary_key=("event_id",), change_feed=True, **options
    )
    return source


def _version(source: Source) -> int:
    return tables.open_table(source.warehouse.root, source.name).version()


def _synced(source: Source) -> int | None:
    return source.destination.transaction_version(app_id(source.stream.name))


def test_first_run_snapshots_the_whole_table_and_reports_every_partition(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1), event(2, 20, 2), event(3, 30, 3), event(4, 40, 3)])
    reports = source.sync("2026-01-02")
    assert {r.partition: r.rows_written for r in reports} == {DAYS[0]: 1, DAYS[1]: 1, DAYS[2]: 2}
    assert source.landed("event_id", PARTITION) == [(1, DAYS[0]), (2, DAYS[1]), (3, DAYS[2]), (4, DAYS[2])]
    assert _synced(source) == _version(source)
    assert {r.cursor_after for r in reports} == {_version(source)}


def test_nothing_new_is_one_statement_and_no_commit(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1)])
    source.sync("2026-01-01")
    copy_version = source.copy_version()
    before = source.session.statements_issued
    (report,) = source.sync("2026-01-01")
    assert source.session.statements_issued - before == 1
    assert (report.destination_version, report.rows_written) == (None, 0)
    assert source.copy_version() == copy_version


def test_updates_that_touch_no_cursor_and_a_move_across_partitions(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1), event(2, 20, 2), event(3, 30, 3)])
    source.sync("2026-01-01")
    source.upsert([event(1, 11, 1)])  # a correction: no cursor column moves
    source.upsert([event(2, 20, 3)])  # event 2 moves from day 2 to day 3
    source.append([event(5, 50, 1)])
    reports = source.sync("2026-01-01")
    assert {r.partition for r in reports} == set(DAYS)  # day 2 lost a row: it is reported too
    assert source.landed("event_id", "amount", PARTITION) == [
        (1, 11, DAYS[0]),
        (2, 20, DAYS[2]),
        (3, 30, DAYS[2]),
        (5, 50, DAYS[0]),
    ]
    assert _synced(source) == _version(source)
    versions = dict(source.landed("event_id", SOURCE_VERSION))
    assert versions[3] < versions[1] < versions[2] < versions[5]  # each row carries its commit version


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
def test_hard_deletes_remove_the_row(make_source: Any, partitioned: bool) -> None:
    source = _source(make_source, partition_field="event_time" if partitioned else None)
    source.append([event(1, 10, 1), event(2, 20, 2)])
    keys = ("2026-01-01",) if partitioned else ()
    source.sync(*keys)
    source.delete("event_id = 2")
    reports = source.sync(*keys)
    assert sum(r.rows_deleted for r in reports) == 1
    assert source.landed("event_id") == [(1,)]
    assert sum(r.rows_deleted for r in source.sync(*keys)) == 0  # nothing new the second time


def test_soft_deletes_keep_the_row_marked(make_source: Any) -> None:
    source = _source(make_source, deletes=Deletes.SOFT)
    source.append([event(1, 10, 1), event(2, 20, 2)])
    source.sync("2026-01-01")
    source.delete("event_id = 2")
    reports = source.sync("2026-01-01")
    assert {r.partition: r.rows_deleted for r in reports}[DAYS[1]] == 1
    assert source.landed("event_id", "amount", DELETED) == [(1, 10, False), (2, 20, True)]
    source.append([event(2, 22, 2)])  # the key comes back
    source.sync("2026-01-01")
    assert source.landed("event_id", "amount", DELETED) == [(1, 10, False), (2, 22, False)]


def test_delete_and_reinsert_in_one_overwrite_commit_keeps_the_row(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1), event(2, 20, 1)])
    source.sync("2026-01-01")
    tables.overwrite(source.warehouse.root, source.name, pa.Table.from_pylist([event(1, 12, 1)], EVENTS))
    source.sync("2026-01-01")
    assert source.landed("event_id", "amount") == [(1, 12)]


def test_append_mode_lands_every_change_with_its_type(make_source: Any) -> None:
    source = _source(make_source, SyncMode.INCREMENTAL_APPEND)
    source.append([event(1, 10, 1)])
    source.sync("2026-01-01")
    source.append([event(2, 20, 1)])
    source.upsert([event(1, 11, 1)])
    source.delete("event_id = 2")
    source.append([event(2, 20, 1)])  # the same row again: a change of its own
    source.sync("2026-01-01")
    assert source.landed("event_id", "amount", CHANGE_TYPE) == [
        (1, 10, "snapshot"),
        (1, 11, "update_postimage"),
        (2, 20, "delete"),
        (2, 20, "insert"),
        (2, 20, "insert"),
    ]
    copy_version = source.copy_version()
    source.sync("2026-01-01")
    assert source.copy_version() == copy_version


def test_a_crash_between_read_and_commit_loses_and_repeats_nothing(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(i, i, 1) for i in range(1, 6)])
    source.sync("2026-01-01")
    synced, copy_version = _synced(source), source.copy_version()
    source.upsert([event(i, 100 + i, 2) for i in range(1, 4)])
    source.delete("event_id = 5")
    # The run's first statement (DESCRIBE HISTORY, one row) passes; its read of the changes fails.
    source.warehouse.faults.add(FaultRule(kind=FaultKind.FAIL_AFTER_ROWS, rows=1, count=2))
    with pytest.raises(ServerOperationError):
        source.sync("2026-01-01")
    assert (_synced(source), source.copy_version()) == (synced, copy_version)
    source.sync("2026-01-01")
    assert source.landed("event_id", "amount", PARTITION) == [
        (1, 101, DAYS[1]),
        (2, 102, DAYS[1]),
        (3, 103, DAYS[1]),
        (4, 4, DAYS[0]),
    ]
    assert _synced(source) == _version(source)


def test_a_window_backfill_rebuilds_it_as_of_the_synced_version(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1), event(2, 20, 2)])
    source.sync("2026-01-01")
    synced = _synced(source)
    # The copy's day 2 gets lost (a bad manual delete), and the source moves on meanwhile.
    DeltaTable(source.stream.destination_uri).delete(f"{PARTITION} = '2026-01-02'")
    source.upsert([event(2, 22, 2)])
    reports = source.sync("2026-01-02", rebuild=True)
    assert [(r.partition, r.rows_written) for r in reports] == [(DAYS[1], 1)]
    assert source.landed("event_id", "amount") == [(1, 10), (2, 20)]  # as of the synced version
    assert _synced(source) == synced
    source.sync("2026-01-02")  # the next run brings it current
    assert source.landed("event_id", "amount") == [(1, 10), (2, 22)]


@pytest.mark.parametrize("resnapshot", [False, True], ids=["error", "resnapshot"])
def test_feed_not_enabled(make_source: Any, resnapshot: bool) -> None:
    choice = OnMissingHistory.RESNAPSHOT if resnapshot else OnMissingHistory.ERROR
    source = _source(make_source, change_data_feed=False, on_missing_history=choice)
    source.append([event(1, 10, 1)])
    source.sync("2026-01-01")  # a snapshot needs no feed
    synced, copy_version = _synced(source), source.copy_version()
    source.append([event(2, 20, 1)])
    if not resnapshot:
        with pytest.raises(ChangeFeedHistoryError) as raised:
            source.sync("2026-01-01")
        message = str(raised.value)
        assert source.name in message and f"version {synced + 1}" in message  # type: ignore[operator]
        assert "DELTA_MISSING_CHANGE_DATA" in message and "on_missing_history: resnapshot" in message
        assert (_synced(source), source.copy_version()) == (synced, copy_version)
        return
    (report,) = source.sync("2026-01-01")
    assert report.note is not None and report.note.startswith("resnapshot")
    assert source.landed("event_id") == [(1,), (2,)]
    assert _synced(source) == _version(source)


@pytest.mark.parametrize("resnapshot", [False, True], ids=["error", "resnapshot"])
def test_vacuumed_change_files(make_source: Any, resnapshot: bool) -> None:
    choice = OnMissingHistory.RESNAPSHOT if resnapshot else OnMissingHistory.ERROR
    source = _source(make_source, on_missing_history=choice)
    source.append([event(1, 10, 1), event(2, 20, 1)])
    source.sync("2026-01-01")
    source.upsert([event(1, 11, 1)])  # an update writes change files
    folder = tables.open_table(source.warehouse.root, source.name).table_uri
    shutil.rmtree(Path(folder.removeprefix("file://")) / "_change_data")  # as VACUUM would, past retention
    if not resnapshot:
        with pytest.raises(ChangeFeedHistoryError, match="DELTA_CHANGE_DATA_FILE_NOT_FOUND"):
            source.sync("2026-01-01")
        assert source.landed("event_id", "amount") == [(1, 10), (2, 20)]
        return
    source.sync("2026-01-01")
    assert source.landed("event_id", "amount") == [(1, 11), (2, 20)]


def test_a_column_added_between_versions_appears_in_the_copy(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1)])
    source.sync("2026-01-01")
    wider = EVENTS.append(pa.field("region", pa.string()))
    row = {**event(2, 20, 1), "region": "eu"}
    delta = tables.open_table(source.warehouse.root, source.name)
    write_deltalake(delta, pa.Table.from_pylist([row], wider), mode="append", schema_mode="merge")
    source.schema = wider
    source.sync("2026-01-01")
    assert source.landed("event_id", "region") == [(1, None), (2, "eu")]


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
def test_a_rebuild_keeps_soft_deleted_rows(make_source: Any, partitioned: bool) -> None:
    source = _source(make_source, deletes=Deletes.SOFT, partition_field="event_time" if partitioned else None)
    keys = ("2026-01-01",) if partitioned else ()
    source.append([event(1, 10, 1), event(2, 20, 1)])
    source.sync(*keys)
    source.delete("event_id = 2")
    source.sync(*keys)
    source.sync(*keys, rebuild=True)  # as of the synced version, which no longer has event 2
    assert source.landed("event_id", "amount", DELETED) == [(1, 10, False), (2, 20, True)]


def test_a_version_without_data_changes_moves_the_synced_version_only(make_source: Any) -> None:
    source = _source(make_source)
    source.append([event(1, 10, 1)])
    source.append([event(2, 20, 1)])
    source.sync("2026-01-01")
    tables.open_table(source.warehouse.root, source.name).optimize.compact()  # no row changes
    (report,) = source.sync("2026-01-01")
    assert (report.rows_read, report.rows_written, report.rows_deleted) == (0, 0, 0)
    assert _synced(source) == _version(source)  # not read again next time
    assert source.landed("event_id", "amount") == [(1, 10), (2, 20)]

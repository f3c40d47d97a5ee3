"""Cursor syncs against the local warehouse and real Delta copies: boundaries, late commits, key-less events,
deduped moves, nothing-new runs, range runs, skipped rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from zenskar_pipeline.config import SyncMode
from zenskar_pipeline.destinations import PARTITION
from zenskar_pipeline_tests.test_sync.conftest import utc

EVENTS = pa.schema(
    [
        ("event_id", pa.int64()),
        ("amount", pa.int64()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
INCREMENTAL = [SyncMode.INCREMENTAL_APPEND, SyncMode.INCREMENTAL_APPEND_DEDUPED]


def event(event_id: int, amount: int, day: int, updated: dt.datetime | None) -> dict[str, Any]:
    return {"event_id": event_id, "amount": amount, "event_time": utc(day, 12), "updated_at": updated}


def _source(make_source: Any, mode: SyncMode, partitioned: bool, **options: Any) -> Any:
    options.setdefault("primary_key", ("event_id",))
    return make_source(EVENTS, mode, partition_field="event_time" if partitioned else None, **options)


def _keys(partitioned: bool, *keys: str) -> tuple[str, ...]:
    return keys if partitioned else ()


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
@pytest.mark.parametrize("mode", INCREMENTAL)
def test_boundary_rows_arriving_later_are_landed(make_source: Any, mode: SyncMode, partitioned: bool) -> None:
    source = _source(make_source, mode, partitioned)
    source.append([event(1, 10, 1, utc(1, 5))])
    (first,) = source.sync(*_keys(partitioned, "2026-01-01"))
    assert (first.rows_written, first.cursor_after) == (1, utc(1, 5))
    source.append([event(2, 20, 1, utc(1, 5))])  # the same cursor value, committed after the sync
    (second,) = source.sync(*_keys(partitioned, "2026-01-01"))
    assert second.cursor_before == utc(1, 5)
    assert second.rows_written == 1
    assert source.landed("event_id", "amount") == [(1, 10), (2, 20)]


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
@pytest.mark.parametrize("mode", INCREMENTAL)
def test_late_commit_with_an_older_cursor_needs_cursor_lag(
    make_source: Any, mode: SyncMode, partitioned: bool
) -> None:
    keys = _keys(partitioned, "2026-01-01")
    without = _source(make_source, mode, partitioned)
    with_lag = _source(make_source, mode, partitioned, lag=dt.timedelta(hours=1))
    for source in (without, with_lag):
        source.append([event(1, 10, 1, utc(1, 5))])
        source.sync(*keys)
        source.append([event(2, 20, 1, utc(1, 4, 30))])  # committed late, cursor behind the mark
        source.sync(*keys)
    assert without.landed("event_id") == [(1,)]
    assert with_lag.landed("event_id") == [(1,), (2,)]


@pytest.mark.parametrize("mode", INCREMENTAL)
def test_late_rows_in_an_old_partition(make_source: Any, mode: SyncMode) -> None:
    source = _source(make_source, mode, True)
    source.append([event(1, 10, 1, utc(1, 5)), event(2, 20, 2, utc(2, 5))])
    source.sync("2026-01-01", "2026-01-02")
    source.append([event(3, 30, 1, utc(3, 9))])  # late for day 1, newer than every mark
    reports = source.sync("2026-01-01", "2026-01-02")
    assert [(r.partition, r.rows_written) for r in reports] == [("2026-01-01", 1), ("2026-01-02", 0)]
    assert source.landed("event_id", PARTITION)[-1] == (3, "2026-01-01")


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
def test_two_identical_keyless_events_stay_two(make_source: Any, partitioned: bool) -> None:
    source = _source(make_source, SyncMode.INCREMENTAL_APPEND, partitioned, primary_key=())
    same = event(7, 10, 1, utc(1, 5))
    source.append([same, same])
    source.sync(*_keys(partitioned, "2026-01-01"))
    source.append([same])  # a third identical event, at the boundary
    source.sync(*_keys(partitioned, "2026-01-01"))
    assert source.landed("event_id", "amount") == [(7, 10)] * 3


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
def test_append_keeps_every_version_deduped_keeps_the_latest(make_source: Any, partitioned: bool) -> None:
    keys = _keys(partitioned, "2026-01-01")
    append = _source(make_source, SyncMode.INCREMENTAL_APPEND, partitioned)
    deduped = _source(make_source, SyncMode.INCREMENTAL_APPEND_DEDUPED, partitioned)
    for source in (append, deduped):
        source.append([event(1, 10, 1, utc(1, 5)), event(2, 20, 1, utc(1, 5))])
        source.sync(*keys)
        source.upsert([event(1, 11, 1, utc(1, 6))])
        source.sync(*keys)
    assert append.landed("event_id", "amount") == [(1, 10), (1, 11), (2, 20)]
    assert deduped.landed("event_id", "amount") == [(1, 11), (2, 20)]


def test_deduped_row_moving_to_another_partition_leaves_no_ghost(make_source: Any) -> None:
    source = _source(make_source, SyncMode.INCREMENTAL_APPEND_DEDUPED, True)
    source.append([event(1, 10, 1, utc(1, 5)), event(2, 20, 1, utc(1, 5))])
    source.sync("2026-01-01", "2026-01-02")
    source.upsert([event(1, 11, 2, utc(2, 6))])  # event 1 now belongs to day 2
    reports = source.sync("2026-01-02")
    assert reports[0].rows_written == 1
    assert source.landed("event_id", "amount", PARTITION) == [(1, 11, "2026-01-02"), (2, 20, "2026-01-01")]


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
@pytest.mark.parametrize("mode", [*INCREMENTAL, SyncMode.FULL_REFRESH])
def test_a_rerun_with_nothing_new_issues_two_statements_and_commits_nothing(
    make_source: Any, mode: SyncMode, partitioned: bool
) -> None:
    source = _source(make_source, mode, partitioned)
    source.append([event(1, 10, 1, utc(1, 5)), event(2, 20, 2, utc(2, 5)), event(3, 30, 2, None)])
    keys = _keys(partitioned, "2026-01-01", "2026-01-02")
    source.sync(*keys)
    version = source.copy_version()
    before = source.session.statements_issued
    reports = source.sync(*keys)
    assert source.session.statements_issued - before <= 2
    assert source.copy_version() == version
    assert all(r.rows_written == 0 and r.destination_version is None for r in reports)


@pytest.mark.parametrize("mode", [*INCREMENTAL, SyncMode.FULL_REFRESH])
def test_a_range_lands_what_its_partitions_land_one_by_one(make_source: Any, mode: SyncMode) -> None:
    ranged = _source(make_source, mode, True, lag=dt.timedelta(minutes=30))
    single = dataclasses.replace(ranged.stream, destination_uri=ranged.stream.destination_uri + "_single")
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]

    def both() -> None:
        ranged.sync(*days)
        for day in days:
            ranged.sync(day, stream=single)

    ranged.append([event(1, 10, 1, utc(1, 5)), event(2, 20, 2, utc(2, 5)), event(3, 30, 3, utc(2, 1))])
    both()
    ranged.upsert([event(1, 11, 2, utc(3, 6)), event(4, 40, 3, utc(2, 1)), event(5, 50, 1, utc(1, 4, 45))])
    both()
    ranged.append([event(6, 60, 1, utc(1, 4, 50))] * 2)
    both()
    columns = ("event_id", "amount", "updated_at", PARTITION)
    assert ranged.landed(*columns) == ranged.landed(*columns, uri=single.destination_uri)
    assert len(ranged.landed(*columns)) >= 5


@pytest.mark.parametrize("mode", [*INCREMENTAL, SyncMode.FULL_REFRESH])
def test_null_cursors_and_null_partition_fields_are_counted_not_landed(
    make_source: Any, mode: SyncMode
) -> None:
    source = _source(make_source, mode, True, start=dt.datetime(2026, 1, 2))
    outside = {**event(9, 90, 1, utc(1, 5)), "event_time": None}
    source.append([event(1, 10, 2, utc(2, 5)), event(2, 20, 2, None), outside, event(3, 30, 1, utc(1, 5))])
    (report,) = source.sync("2026-01-02")  # the first window: also counts rows before it
    expected_null = 0 if mode is SyncMode.FULL_REFRESH else 1
    assert report.skipped_null_cursor == expected_null
    assert report.skipped_outside_windows == 1  # event 3 falls before the first window
    assert {r[0] for r in source.landed("event_id")} == ({1} if expected_null else {1, 2})
    latest = source.sync(dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
    assert latest[0].skipped_outside_windows == 1  # the NULL partition field, under the latest window
    assert all(r[0] != 9 for r in source.landed("event_id"))


@pytest.mark.parametrize("mode", INCREMENTAL)
def test_a_large_read_written_in_chunks_lands_what_one_write_would(
    make_source: Any, mode: SyncMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [event(i, i, 1 + i % 3, utc(1 + i % 3, 5)) for i in range(1, 8)]
    # Delta does not enforce keys: the same event twice, the later version last, as a chunk boundary may fall.
    rows += [event(3, 300, 2, utc(4)), event(5, 5, 3, utc(3, 5))]
    whole = _source(make_source, mode, True)
    chunked = _source(make_source, mode, True)
    for source in (whole, chunked):
        source.append(rows)
    keys = ("2026-01-01", "2026-01-02", "2026-01-03")
    whole.sync(*keys)
    monkeypatch.setattr("zenskar_pipeline.sync.cursor.MERGE_CHUNK_ROWS", 2)
    monkeypatch.setattr("zenskar_pipeline.sync.cursor.FIRST_VERSION_STAGED", False)  # else one commit
    reports = chunked.sync(*keys)
    assert (chunked.copy_version() or 0) > 1  # several commits
    columns = ("event_id", "amount", "updated_at", PARTITION)
    assert chunked.landed(*columns) == whole.landed(*columns)
    # Deduped, a key a later chunk brings a newer version of is written twice: counted twice.
    assert sum(r.rows_written for r in reports) >= len(whole.landed("event_id"))
    again = chunked.sync(*keys)
    assert sum(r.rows_written for r in again) == 0

"""A scope of many partitions reads in one statement of constant size (windows and marks as one JSON value
joined to the rows) and lands exactly what the same scope read range by range lands."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from zenskar_pipeline.config import Granularity, SyncMode, TableName
from zenskar_pipeline.databricks import statements
from zenskar_pipeline.destinations import PARTITION
from zenskar_pipeline_tests.test_sync.conftest import Source

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("amount", pa.int64()),
    ]
)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 40  # more windows than statements.MAX_ALTERNATIVES


def row(id_: int, day: int | None, updated_day: float | None, amount: int = 1) -> dict[str, Any]:
    return {
        "id": id_,
        "event_time": None if day is None else START + dt.timedelta(days=day, hours=12),
        "updated_at": None if updated_day is None else START + dt.timedelta(days=updated_day, hours=13),
        "amount": amount,
    }


def keys(first: int, count: int) -> list[str]:
    return [f"{START + dt.timedelta(days=day):%Y-%m-%d}" for day in range(first, first + count)]


@pytest.mark.parametrize("mode", [SyncMode.INCREMENTAL_APPEND, SyncMode.INCREMENTAL_APPEND_DEDUPED])
def test_a_joined_read_lands_what_a_read_range_by_range_lands(
    make_source: Any, mode: SyncMode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source: Source = make_source(SCHEMA, mode, primary_key=("id",), partition_field="event_time")
    source.append([row(day, day, day) for day in range(DAYS)] + [row(100, -3, 0), row(101, None, 1)])
    spelled_out = replace(source.stream, destination_uri=str(tmp_path / "spelled_out"))
    scope = keys(0, DAYS)
    source.sync(*scope)
    monkeypatch.setattr(statements, "MAX_ALTERNATIVES", 10_000)  # every window spelled out, as before
    source.sync(*scope, stream=spelled_out)
    monkeypatch.undo()
    # Late rows: below some windows' marks (not read again), at a mark (read, dropped as landed), above.
    source.append(
        [
            row(200, 5, 4.5),  # below window 5's mark (day 5, 13:00): a late row no cursor sync can see
            row(201, 6, 6),  # at window 6's mark: read again, lands (a new key)
            row(202, 7, 30),  # above
            row(203, 39, None),  # NULL cursor: counted
        ]
    )
    source.upsert([row(7, 7, 31, amount=2)])  # a newer version of a landed row
    joined = source.sync(*scope)
    monkeypatch.setattr(statements, "MAX_ALTERNATIVES", 10_000)
    spelled = source.sync(*scope, stream=spelled_out)
    columns = ("id", "event_time", "updated_at", "amount", PARTITION)
    assert source.landed(*columns) == source.landed(*columns, uri=spelled_out.destination_uri)
    names = ("partition", "rows_read", "rows_written", "skipped_null_cursor", "skipped_outside_windows")
    assert [_figures(r, names) for r in joined] == [_figures(r, names) for r in spelled]
    landed_ids = {r[0] for r in source.landed("id")}
    assert {201, 202} <= landed_ids and 200 not in landed_ids


def _figures(report: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(report, name) for name in names)


def test_the_statement_is_the_same_size_for_40_and_8760_windows() -> None:
    table = TableName.parse("main.s.t")

    def read(count: int) -> statements.Statement:
        windows = [
            statements.WindowRange(
                START + dt.timedelta(hours=n),
                START + dt.timedelta(hours=n + 1),
                START + dt.timedelta(hours=n),
            )
            for n in range(count)
        ]
        where = statements.ReadRange("event_time", windows, cursor_field="updated_at")
        return statements.read_at_version(table, 7, ["id", "event_time", "updated_at"], where)

    small, year = read(40), read(8_760)
    assert small.sql == year.sql and len(year.parameters) == len(small.parameters)
    assert len(read(statements.MAX_ALTERNATIVES).parameters) == 3 * statements.MAX_ALTERNATIVES


def test_neighbouring_windows_without_marks_read_as_one_range() -> None:
    windows = [
        statements.WindowRange(START + dt.timedelta(hours=n), START + dt.timedelta(hours=n + 1))
        for n in range(8_760)
    ]
    where = statements.ReadRange("event_time", windows, cursor_field="updated_at")
    read = statements.read_at_version(TableName.parse("main.s.t"), 7, ["id"], where)
    assert read.parameters == {"w0_start": START, "w0_end": START + dt.timedelta(hours=8_760)}


def test_hourly_windows_of_a_year_land_through_the_joined_read(make_source: Any) -> None:
    source: Source = make_source(
        SCHEMA,
        SyncMode.INCREMENTAL_APPEND,
        primary_key=("id",),
        partition_field="event_time",
        granularity=Granularity.HOURLY,
        start=dt.datetime(2026, 1, 1),
    )
    hours = [START + dt.timedelta(hours=n) for n in range(0, 24 * 30, 7)]
    source.append([{"id": n, "event_time": at, "updated_at": at, "amount": 1} for n, at in enumerate(hours)])
    scope = [f"{START + dt.timedelta(hours=n):%Y-%m-%d-%H:%M}" for n in range(24 * 30)]
    first = source.sync(*scope)
    assert sum(r.rows_written for r in first) == len(hours)
    again = source.sync(*scope)  # every window has a mark now: the joined read
    assert sum(r.rows_written for r in again) == 0 and sum(r.rows_read for r in again) == len(hours)

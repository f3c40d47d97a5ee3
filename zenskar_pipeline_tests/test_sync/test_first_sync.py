"""A cursor mode's first sync (the copy does not exist yet) lands in one staged commit exactly what the merges
land chunk by chunk, and reports the same: read against the local warehouse, compared with a second copy of
the same source synced the earlier way."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_pipeline.config import SyncMode
from zenskar_pipeline.destinations import SYNCED_AT
from zenskar_pipeline.sync import cursor
from zenskar_pipeline_tests.test_sync.conftest import utc

EVENTS = pa.schema(
    [
        ("event_id", pa.int64()),
        ("amount", pa.int64()),
        ("note", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
KINDS = {
    "append_keyed": (SyncMode.INCREMENTAL_APPEND, ("event_id",)),
    "append_keyless": (SyncMode.INCREMENTAL_APPEND, ()),
    "deduped": (SyncMode.INCREMENTAL_APPEND_DEDUPED, ("event_id",)),
}
DAYS = ("2026-01-02", "2026-01-03", "2026-01-04")


def event(
    event_id: int, amount: int, day: int | None, updated: dt.datetime | None, note: str | None = None
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "amount": amount,
        "note": note,
        "event_time": None if day is None else utc(day, 12),
        "updated_at": updated,
    }


FIRST = [
    event(1, 10, 2, utc(2, 5)),
    event(1, 11, 2, utc(2, 6)),  # a newer version of key 1
    event(2, 20, 2, utc(2, 5)),
    event(2, 21, 2, utc(2, 5), "same key and cursor, other content"),
    event(3, 30, 3, utc(3, 5)),
    event(3, 30, 3, utc(3, 5)),  # the same row twice
    event(3, 30, 3, utc(3, 5)),
    event(4, 40, 2, utc(2, 7)),
    event(4, 41, 3, utc(2, 7)),  # key 4 in another window, same cursor
    event(5, 50, 3, None),  # NULL cursor: counted, not landed
    event(10, 60, 4, utc(4, 2)),  # the newer version read first
    event(10, 61, 4, utc(4, 1)),
    event(6, 70, None, utc(2, 1)),  # no partition field: outside every window
    event(7, 80, 1, utc(1, 1)),  # before the first window
    event(8, 90, 9, utc(9, 1), "a window outside the run's scope"),
    *[event(100 + i % 4, i, 2 + i % 3, utc(2 + i % 3, i % 2), f"n{i % 3}") for i in range(30)],
]
LATER = [
    event(1, 12, 2, utc(2, 6)),  # key 1 again at its mark, other content
    event(3, 30, 3, utc(3, 5)),  # the same row a fourth time
    event(9, 99, 4, utc(4, 9)),
]


def columns_of(uri: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    table = DeltaTable(uri).to_pyarrow_table()
    names = sorted(name for name in table.column_names if name != SYNCED_AT)
    rows = table.select(names).sort_by([(name, "ascending") for name in names]).to_pylist()
    return [f"{table.schema.field(n)}" for n in names], [tuple(row.values()) for row in rows]


def figures(reports: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r.partition,
            r.rows_read,
            r.rows_written,
            r.skipped_null_cursor,
            r.skipped_outside_windows,
            r.cursor_before,
            r.cursor_after,
            r.destination_version,
        )
        for r in reports
    ]


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_first_sync_lands_in_one_commit_what_the_merges_land(
    make_source: Any, kind: str, partitioned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    mode, key = KINDS[kind]
    source = make_source(
        EVENTS,
        mode,
        primary_key=key,
        partition_field="event_time" if partitioned else None,
        start=dt.datetime(2026, 1, 2),
    )
    merged = dataclasses.replace(source.stream, destination_uri=source.stream.destination_uri + "_merged")
    days = DAYS if partitioned else ()
    source.append(FIRST)

    staged_reports = source.sync(*days)
    with monkeypatch.context() as earlier_way:
        earlier_way.setattr(cursor, "FIRST_VERSION_STAGED", False)
        earlier_way.setattr(cursor, "MERGE_CHUNK_ROWS", 1_000)  # the merges' first chunk holds every row
        merged_reports = source.sync(*days, stream=merged)

    assert source.copy_version() == 0  # one commit
    assert columns_of(source.stream.destination_uri) == columns_of(merged.destination_uri)
    assert figures(staged_reports) == figures(merged_reports)
    assert sum(r.skipped_null_cursor for r in staged_reports) == 1
    assert sum(r.skipped_outside_windows for r in staged_reports) == (1 if partitioned else 0)  # event 7
    written = sum(r.rows_written for r in staged_reports)
    assert 0 < written < sum(r.rows_read for r in staged_reports) or kind == "append_keyless"

    # Later syncs merge into either copy alike: nothing lands twice, nothing is lost.
    source.append(LATER)
    later = [source.sync(*days), source.sync(*days, stream=merged)]
    assert columns_of(source.stream.destination_uri) == columns_of(merged.destination_uri)
    assert figures(later[0]) == figures(later[1])

"""Incremental append: every row version lands exactly once, also when two writers race."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_pipeline.destinations import PARTITION, ROW_ID, SOURCE_VERSION, DeltaDestination

from .rows import at, events, landed


@pytest.fixture
def copy(tmp_path: Path) -> DeltaDestination:
    return DeltaDestination(str(tmp_path / "usage"), partitioned=True)


def test_rows_already_landed_on_key_and_cursor_are_not_landed_again(copy: DeltaDestination) -> None:
    first = copy.append_new(
        events([(1, "a", Decimal(1), at(1)), (2, "b", None, at(2))]),
        ["event_id", "updated_at"],
        source_version=1,
    )
    again = events([(1, "a", Decimal(1), at(1)), (1, "a", Decimal(5), at(1, 6)), (3, "c", None, at(2))])

    second = copy.append_new(again, ["event_id", "updated_at"], source_version=2)

    assert (first.rows_written, second.rows_written, second.version) == (2, 2, 1)  # v0: the first write
    assert second.rows_by_partition == {"2026-01-01": 1, "2026-01-02": 1}
    assert landed(copy.table_uri, "event_id", "amount", SOURCE_VERSION) == [
        (1, Decimal(1), 1),
        (1, Decimal(5), 2),  # a newer version of a row is appended
        (2, None, 1),
        (3, None, 2),
    ]


def test_one_key_twice_in_a_batch_lands_once_by_version_then_content(copy: DeltaDestination) -> None:
    rows = events([(1, "a", Decimal(1), at(1)), (1, "z", Decimal(1), at(1)), (1, "b", Decimal(1), at(1))])
    rows = rows.append_column(SOURCE_VERSION, pa.array([3, 4, 4], pa.int64()))
    reversed_rows = rows.take([2, 1, 0])

    copy.append_new(rows, ["event_id", "updated_at"])
    other = DeltaDestination(copy.table_uri + "_other", partitioned=True)
    other.append_new(reversed_rows, ["event_id", "updated_at"])

    assert len(landed(copy.table_uri, "customer")) == 1
    assert landed(copy.table_uri, "customer", SOURCE_VERSION) == landed(
        other.table_uri, "customer", SOURCE_VERSION
    )
    assert landed(copy.table_uri, SOURCE_VERSION) == [(4,)]


def test_without_a_key_identical_rows_stay_two_and_relanding_commits_nothing(copy: DeltaDestination) -> None:
    rows = events([(1, "a", Decimal(1), at(1)), (1, "a", Decimal(1), at(1)), (2, "b", None, at(1))])

    first = copy.append_new(rows, None, source_version=1)
    again = copy.append_new(rows, None, source_version=2)
    third_copy = copy.append_new(events([(1, "a", Decimal(1), at(1))] * 3), None, source_version=3)

    assert (first.rows_written, again.rows_written, again.version) == (3, 0, None)
    assert third_copy.rows_written == 1  # the third identical event is new
    assert landed(copy.table_uri, "event_id", SOURCE_VERSION) == [(1, 1), (1, 1), (1, 3), (2, 1)]
    ids = [row_id for (row_id,) in landed(copy.table_uri, ROW_ID)]
    assert len(set(ids)) == 4 and all(row_id.rsplit("#", 1)[1] in {"0", "1", "2"} for row_id in ids)


def test_a_column_added_later_changes_no_row_id(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "events"), partitioned=False)
    copy.append_new(pa.table({"id": [1, 2]}), None, source_version=1)

    result = copy.append_new(pa.table({"id": [1, 2, 3], "note": [None, None, "x"]}), None, source_version=2)

    assert result.rows_written == 1
    assert landed(copy.table_uri, "id", "note") == [(1, None), (2, None), (3, "x")]


def test_racing_appends_of_overlapping_rows_land_each_row_once(copy: DeltaDestination) -> None:
    copy.append_new(events([(0, "seed", None, at(1))]), ["event_id", "updated_at"], source_version=1)
    batches = [
        events([(i, "a", Decimal(i), at(1 + i % 3)) for i in range(start, start + 400)])
        for start in (0, 100, 200, 300)
    ]
    barrier = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def land(rows: pa.Table) -> None:
        writer = DeltaDestination(copy.table_uri, partitioned=True)
        barrier.wait()
        try:
            writer.append_new(rows, ["event_id", "updated_at"], source_version=2)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=land, args=(rows,)) for rows in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    ids = [event_id for (event_id,) in landed(copy.table_uri, "event_id")]
    assert ids == list(range(700))
    history = DeltaTable(copy.table_uri).history()
    assert any(entry.get("operation") == "MERGE" for entry in history)


def test_partitioned_copy_needs_partition_keys(copy: DeltaDestination) -> None:
    rows = events([(1, "a", None, at(1))]).drop_columns([PARTITION])
    with pytest.raises(ValueError, match="must carry _zenskar_partition"):
        copy.append_new(rows, ["event_id"], source_version=1)
    with pytest.raises(ValueError, match="give source_version"):
        copy.append_new(events([(1, "a", None, at(1))]), ["event_id"])


def test_rows_landed_are_found_to_the_microsecond_across_many_partitions(tmp_path: Path) -> None:
    """The scan for rows already landed is narrowed by partition and by each key column's range; rows at
    either end of a range, a microsecond apart, in a hundred partitions, must still be found or landed."""
    import datetime as dt

    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    schema = pa.schema(
        [
            ("event_id", pa.int64()),
            ("day", pa.date32()),
            ("amount", pa.decimal128(18, 6)),
            ("updated_at", pa.timestamp("us", tz="UTC")),
            (PARTITION, pa.string()),
        ]
    )
    base = dt.datetime(2026, 1, 1, 0, 0, 0, 999_999, tzinfo=dt.UTC)

    def rows(shift_us: int, ids: range) -> pa.Table:
        stamps = [base + dt.timedelta(hours=i, microseconds=shift_us) for i in ids]
        return pa.table(
            {
                "event_id": list(ids),
                "day": [s.date() for s in stamps],
                "amount": [Decimal(i) / 1000 for i in ids],
                "updated_at": stamps,
                PARTITION: [f"{s:%Y-%m-%d-%H}" for s in stamps],
            },
            schema=schema,
        )

    key = ["event_id", "day", "amount", "updated_at"]
    first = copy.append_new(rows(0, range(100)), key, source_version=1)
    again = copy.append_new(rows(0, range(100)), key, source_version=2)
    outside = pa.concat_tables([rows(1, range(0, 1)), rows(-1, range(99, 100))])
    ends = copy.append_new(outside, key, source_version=3)

    assert (first.rows_written, again.rows_written, again.version) == (100, 0, None)
    assert ends.rows_written == 2  # a microsecond past either end of the landed range is a new row
    assert len(landed(copy.table_uri, "event_id")) == 102


def test_instants_far_from_today_and_a_cursor_inside_the_key_are_found_again(tmp_path: Path) -> None:
    """A sentinel like 9999-12-31 or a year-1600 typo in a key, and a cursor that is also a key column
    (its landing key names it twice), must not stop a later sync from finding the rows already landed."""
    import datetime as dt

    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=False)
    rows = pa.table(
        {
            "id": [1, 2, 3],
            "valid_until": pa.array(
                [dt.datetime(9999, 12, 31, tzinfo=dt.UTC), dt.datetime(1600, 1, 1, tzinfo=dt.UTC), None],
                pa.timestamp("us", tz="UTC"),
            ),
            "day": pa.array([dt.date(9999, 12, 31), dt.date(1, 1, 1), dt.date(2026, 1, 1)]),
        }
    )
    key = ["id", "valid_until", "day", "day"]

    first = copy.append_new(rows, key, source_version=1)
    again = copy.append_new(rows, key, source_version=2)

    assert (first.rows_written, again.rows_written, again.version) == (3, 0, None)
    assert landed(copy.table_uri, "id") == [(1,), (2,), (3,)]

"""What the copy tells the sync engine: high-water marks per partition, and app transaction versions."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.transaction import AddAction

from zenskar_pipeline.destinations import PARTITION, AppTransaction, DeltaDestination

from .rows import at, events


def test_high_water_marks_per_partition_in_one_scan(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    assert copy.high_water_marks("updated_at", ["2026-01-01"]) == {"2026-01-01": None}
    copy.append_new(
        events(
            [
                (1, "a", None, at(1, 3)),
                (2, "b", None, at(1, 9)),
                (3, "c", None, at(2, 1)),
                (4, "d", None, at(3)),
            ]
        ),
        ["event_id", "updated_at"],
        source_version=1,
    )
    copy.append_new(
        events([(5, "e", None, None, "2026-01-03")]), ["event_id", "updated_at"], source_version=2
    )

    assert copy.high_water_marks("updated_at", ["2026-01-01", "2026-01-02", "2026-01-04"]) == {
        "2026-01-01": at(1, 9),
        "2026-01-02": at(2, 1),
        "2026-01-04": None,
    }
    assert copy.high_water_marks("updated_at") == {
        "2026-01-01": at(1, 9),
        "2026-01-02": at(2, 1),
        "2026-01-03": at(3),
    }


def test_an_unpartitioned_copy_has_one_mark(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "plans"), partitioned=False)
    assert copy.high_water_marks("seq") == {None: None}

    copy.merge_deduped(pa.table({"id": [1, 2], "seq": [40, 12]}), ["id"], "seq", source_version=1)

    assert copy.high_water_marks("seq") == {None: 40}


def test_an_app_transaction_commits_with_the_data(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    app = "zenskar-pipeline:main.billing.usage"
    assert copy.transaction_version(app) is None

    copy.replace(
        events([(1, "a", None, at(1))]), None, source_version=7, app_transaction=AppTransaction(app, 7)
    )
    assert copy.transaction_version(app) == 7
    copy.merge_deduped(
        events([(1, "b", None, at(1, 1))]),
        ["event_id"],
        "updated_at",
        source_version=9,
        app_transaction=AppTransaction(app, 9),
    )
    assert copy.transaction_version(app) == 9
    with pytest.raises(ValueError, match="not written by a key-less append"):
        copy.append_new(events([(2, "c", None, at(1))]), None, source_version=11)
    copy.append_new(
        events([(2, "c", None, at(1))]),
        ["event_id"],
        source_version=11,
        app_transaction=AppTransaction(app, 11),
    )
    assert copy.transaction_version(app) == 11
    assert copy.transaction_version("someone-else") is None


def test_marks_come_from_file_statistics_and_agree_with_a_scan_of_the_copy(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    for version, day in enumerate((1, 2, 1, 3), start=1):  # several files per partition
        rows = [(version * 10 + n, "a", None, at(day, n + version)) for n in range(3)]
        copy.append_new(events(rows), ["event_id", "updated_at"], source_version=version)
    copy.append_new(
        events([(99, "z", None, None, "2026-01-04")]), ["event_id", "updated_at"], source_version=5
    )
    scanned = DeltaTable(copy.table_uri).to_pyarrow_table(columns=[PARTITION, "updated_at"])
    expected: dict[str | None, object] = {}
    for key, value in zip(
        scanned.column(PARTITION).to_pylist(), scanned.column("updated_at").to_pylist(), strict=True
    ):
        if value is not None:
            expected[key] = max(value, expected.get(key, value))
    assert copy.high_water_marks("updated_at") == expected  # every partition holding a mark
    assert copy.high_water_marks("updated_at", ["2026-01-01", "2026-01-04"]) == {
        "2026-01-01": expected["2026-01-01"],
        "2026-01-04": None,  # only a NULL cursor landed there
    }


def test_a_string_cursor_and_files_without_statistics_are_read(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "codes"), partitioned=False)
    schema = pa.schema([("event_id", pa.int64()), ("code", pa.string()), ("seq", pa.int64())])
    rows = pa.table(
        {"event_id": [1, 2], "code": ["b" * 40 + "z", "b" * 40 + "a"], "seq": [7, 3]}, schema=schema
    )
    copy.append_new(rows, ["event_id"], source_version=1)
    assert copy.high_water_marks("code") == {None: "b" * 40 + "z"}  # a truncated statistic would be wrong
    # A file committed without statistics (as other writers may): read, not trusted to be empty.
    table = DeltaTable(copy.table_uri)
    extra = pa.table({"event_id": [3], "code": ["c"], "seq": [11]}, schema=schema)
    extra = extra.append_column("_zenskar_source_version", pa.array([2], pa.int64()))
    extra = extra.append_column("_zenskar_synced_at", pa.array([at(1)], pa.timestamp("us", tz="UTC")))
    path = Path(copy.table_uri) / "without-stats.parquet"
    pq.write_table(extra.select(pa.schema(table.schema()).names), path)
    action = AddAction("without-stats.parquet", path.stat().st_size, {}, int(time.time() * 1000), True, "{}")
    table.create_write_transaction([action], mode="append", schema=pa.schema(table.schema()))
    assert copy.high_water_marks("seq") == {None: 11}


def test_microsecond_cursors_land_nothing_twice_though_statistics_keep_milliseconds(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "fine"), partitioned=True)
    fine = dt.datetime(2026, 1, 1, 5, 0, 0, 123456, tzinfo=dt.UTC)
    copy.append_new(events([(1, "a", None, fine)]), ["event_id", "updated_at"], source_version=1)
    (mark,) = copy.high_water_marks("updated_at").values()
    assert fine - dt.timedelta(milliseconds=1) < mark <= fine  # at most a millisecond early
    again = copy.append_new(events([(1, "a", None, fine)]), ["event_id", "updated_at"], source_version=2)
    assert again.version is None  # the row read again from the early mark is recognised as landed

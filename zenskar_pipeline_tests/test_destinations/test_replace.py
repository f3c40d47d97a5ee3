"""Full refresh: a scope becomes exactly the source's rows in one commit, or stays as it was."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_pipeline.destinations import PARTITION, SOURCE_VERSION, SYNCED_AT, DeltaDestination

from .rows import EVENTS, at, events, failing_reader, landed


@pytest.fixture
def copy(tmp_path: Path) -> DeltaDestination:
    return DeltaDestination(str(tmp_path / "main" / "billing" / "usage"), partitioned=True)


def test_first_write_creates_a_table_partitioned_by_window(copy: DeltaDestination) -> None:
    assert not copy.exists() and copy.version() is None and copy.schema() is None
    rows = events([(1, "acme", Decimal("1.5"), at(1)), (2, "acme", Decimal("2"), at(2))])

    result = copy.replace(rows.to_reader(), ["2026-01-01", "2026-01-02"], source_version=7)

    assert (result.rows_written, result.rows_deleted, result.version) == (2, 0, 0)
    assert result.rows_by_partition == {"2026-01-01": 1, "2026-01-02": 1}
    table = DeltaTable(copy.table_uri)
    assert table.metadata().partition_columns == [PARTITION]
    assert sorted(p[PARTITION] for p in table.partitions()) == ["2026-01-01", "2026-01-02"]
    schema = copy.schema()
    assert schema is not None
    assert schema.field(SOURCE_VERSION).type == pa.int64()
    assert schema.field(SYNCED_AT).type == pa.timestamp("us", tz="UTC")
    assert landed(copy.table_uri, "event_id", SOURCE_VERSION, PARTITION) == [
        (1, 7, "2026-01-01"),
        (2, 7, "2026-01-02"),
    ]


def test_replacing_one_window_leaves_the_others(copy: DeltaDestination) -> None:
    copy.replace(
        events([(1, "a", None, at(1)), (2, "b", None, at(2)), (3, "c", None, at(2))]), None, source_version=1
    )

    result = copy.replace(events([(4, "d", None, at(2, 5))]), ["2026-01-02"], source_version=2)

    assert (result.rows_written, result.rows_deleted, result.version) == (1, 2, 1)
    assert landed(copy.table_uri, "event_id", SOURCE_VERSION) == [(1, 1), (4, 2)]
    assert len(DeltaTable(copy.table_uri).history()) == 2  # one commit per replace


def test_a_reader_failing_midway_leaves_the_previous_version(copy: DeltaDestination) -> None:
    copy.replace(events([(1, "a", None, at(1)), (2, "b", None, at(2))]), None, source_version=1)
    new = events([(5, "e", None, at(1)), (6, "f", None, at(1)), (7, "g", None, at(1))])

    with pytest.raises(ConnectionError, match="source went away"):
        copy.replace(failing_reader(new, good_batches=2), ["2026-01-01"], source_version=2)

    assert copy.version() == 0
    assert landed(copy.table_uri, "event_id") == [(1,), (2,)]


def test_a_row_outside_the_replaced_windows_is_an_error_and_nothing_changes(copy: DeltaDestination) -> None:
    copy.replace(events([(1, "a", None, at(1))]), None, source_version=1)

    with pytest.raises(ValueError, match="2026-01-03 outside the replaced scope 2026-01-02"):
        copy.replace(events([(2, "b", None, at(3))]), ["2026-01-02"], source_version=2)

    assert copy.version() == 0


def test_an_empty_window_that_was_empty_commits_nothing(copy: DeltaDestination) -> None:
    copy.replace(events([(1, "a", None, at(1))]), None, source_version=1)

    result = copy.replace(EVENTS.empty_table(), ["2026-01-05"], source_version=2)
    emptied = copy.replace(EVENTS.empty_table(), ["2026-01-01"], source_version=2)

    assert result.version is None
    assert (emptied.rows_deleted, emptied.version) == (1, 1)
    assert landed(copy.table_uri, "event_id") == []


def test_an_unpartitioned_copy_is_replaced_whole(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "plans"), partitioned=False)
    schema = pa.schema([("plan", pa.string()), ("price", pa.int64())])
    copy.replace(pa.table({"plan": ["a", "b"], "price": [1, 2]}, schema=schema), None, source_version=3)

    result = copy.replace(pa.table({"plan": ["c"], "price": [3]}, schema=schema), None, source_version=4)

    assert (result.rows_written, result.rows_deleted, result.rows_by_partition) == (1, 2, {None: 1})
    assert DeltaTable(copy.table_uri).metadata().partition_columns == []
    assert landed(copy.table_uri, "plan", "price", SOURCE_VERSION) == [("c", 3, 4)]
    with pytest.raises(ValueError, match="not partitioned"):
        copy.replace(pa.table({"plan": ["d"], "price": [4]}, schema=schema), ["2026-01-01"], source_version=5)


def test_a_partition_key_with_a_quote_is_quoted_not_pasted(copy: DeltaDestination) -> None:
    copy.replace(events([(1, "a", None, at(1), "it's"), (2, "b", None, at(1))]), None, source_version=1)

    copy.replace(events([(3, "c", None, at(1), "it's")]), ["it's"], source_version=2)

    assert landed(copy.table_uri, "event_id", PARTITION) == [(2, "2026-01-01"), (3, "it's")]

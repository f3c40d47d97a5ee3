"""Incremental deduped: one row per key across the table, chosen the same way whatever the order."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_pipeline.destinations import CONTENT_HASH, PARTITION, SOURCE_VERSION, SYNCED_AT, DeltaDestination

from .rows import at, events, landed

KEY = ["event_id"]


@pytest.fixture
def copy(tmp_path: Path) -> DeltaDestination:
    return DeltaDestination(str(tmp_path / "usage"), partitioned=True)


def test_the_greatest_cursor_wins_in_the_batch_and_against_the_copy(copy: DeltaDestination) -> None:
    copy.merge_deduped(
        events([(1, "old", None, at(1, 1)), (1, "newer", None, at(1, 3)), (2, "b", None, at(1))]),
        KEY,
        "updated_at",
        source_version=1,
    )

    result = copy.merge_deduped(
        events([(1, "stale", None, at(1, 2)), (2, "b2", None, at(1, 5))]), KEY, "updated_at", source_version=2
    )

    assert (result.rows_written, result.rows_deleted) == (1, 0)
    assert landed(copy.table_uri, "event_id", "customer", SOURCE_VERSION) == [(1, "newer", 1), (2, "b2", 2)]


def test_an_equal_cursor_goes_to_the_higher_source_version(copy: DeltaDestination) -> None:
    copy.merge_deduped(events([(1, "v1", None, at(1))]), KEY, "updated_at", source_version=5)

    copy.merge_deduped(events([(1, "v0", None, at(1))]), KEY, "updated_at", source_version=4)
    assert landed(copy.table_uri, "customer") == [("v1",)]
    copy.merge_deduped(events([(1, "v2", None, at(1))]), KEY, "updated_at", source_version=6)
    assert landed(copy.table_uri, "customer", SOURCE_VERSION) == [("v2", 6)]


def test_full_ties_are_broken_by_content_whatever_the_order(tmp_path: Path) -> None:
    variants = events([(1, name, None, at(1)) for name in ("m", "a", "z", "q")])
    winners = []
    for run, order in enumerate(([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1])):
        copy = DeltaDestination(str(tmp_path / f"run{run}"), partitioned=True)
        copy.merge_deduped(
            variants.take([order[0]]), KEY, "updated_at", source_version=1
        )  # one already landed
        copy.merge_deduped(variants.take(order[1:]), KEY, "updated_at", source_version=1)
        winners.append(landed(copy.table_uri, "customer", CONTENT_HASH))
    assert winners[0] == winners[1] == winners[2] and len(winners[0]) == 1


def test_an_unchanged_row_is_not_rewritten(copy: DeltaDestination) -> None:
    rows = events([(1, "a", Decimal("1.25"), at(1)), (2, "b", None, at(2))])
    first = copy.merge_deduped(rows, KEY, "updated_at", source_version=1)
    synced = landed(copy.table_uri, "event_id", SYNCED_AT)

    again = copy.merge_deduped(rows, KEY, "updated_at", source_version=2)  # same content, later read
    changed = copy.merge_deduped(events([(2, "b", Decimal(9), at(2))]), KEY, "updated_at", source_version=3)

    assert (again.rows_written, again.version) == (0, None)
    assert (changed.rows_written, changed.version) == (1, (first.version or 0) + 1)
    assert landed(copy.table_uri, "event_id", SOURCE_VERSION) == [(1, 1), (2, 3)]
    assert landed(copy.table_uri, "event_id", SYNCED_AT)[0] == synced[0]


def test_a_row_whose_window_changed_moves_and_leaves_no_ghost(copy: DeltaDestination) -> None:
    copy.merge_deduped(
        events([(1, "a", None, at(1)), (2, "b", None, at(1))]), KEY, "updated_at", source_version=1
    )

    copy.merge_deduped(events([(1, "a", None, at(3))]), KEY, "updated_at", source_version=2)

    assert landed(copy.table_uri, "event_id", PARTITION) == [(1, "2026-01-03"), (2, "2026-01-01")]
    table = DeltaTable(copy.table_uri)
    in_first = table.to_pyarrow_table(partitions=[(PARTITION, "=", "2026-01-01")])
    assert in_first.column("event_id").to_pylist() == [2]


def test_null_keys_match_null_keys(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "accounts"), partitioned=False)
    schema = pa.schema(
        [("region", pa.string()), ("id", pa.int64()), ("name", pa.string()), ("v", pa.int64())]
    )
    table = pa.Table.from_pylist(
        [{"region": None, "id": 1, "name": "x", "v": 1}, {"region": "eu", "id": 1, "name": "y", "v": 1}],
        schema=schema,
    )
    copy.merge_deduped(table, ["region", "id"], "v", source_version=1)

    newer = pa.Table.from_pylist([{"region": None, "id": 1, "name": "x2", "v": 2}], schema=schema)
    copy.merge_deduped(newer, ["region", "id"], "v", source_version=2)

    assert landed(copy.table_uri, "region", "name") == [(None, "x2"), ("eu", "y")]


def test_without_a_cursor_the_source_version_decides(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "plans"), partitioned=False)
    copy.merge_deduped(pa.table({"id": [1], "price": [10]}), ["id"], None, source_version=3)

    copy.merge_deduped(pa.table({"id": [1], "price": [7]}), ["id"], None, source_version=2)
    copy.merge_deduped(pa.table({"id": [1], "price": [12]}), ["id"], None, source_version=4)

    assert landed(copy.table_uri, "id", "price", SOURCE_VERSION) == [(1, 12, 4)]

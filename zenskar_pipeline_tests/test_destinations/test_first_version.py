"""A copy's first version written in one staged commit (`create_copy`) holds exactly what the merges
(`append_new`, `merge_deduped`) write into a copy that does not exist, row for row; a copy another writer
creates meanwhile gets each row once."""

from __future__ import annotations

import datetime as dt
import decimal
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_pipeline.destinations import (
    PARTITION,
    SYNCED_AT,
    AppendNew,
    DeltaDestination,
    Landing,
    MergeDeduped,
    WriteResult,
    staging,
)

SCHEMA = pa.schema(
    [
        ("event_id", pa.int64()),
        ("customer", pa.string()),
        ("amount", pa.decimal128(18, 6)),
        ("billable", pa.bool_()),
        ("day", pa.date32()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        (PARTITION, pa.string()),
    ]
)
LANDINGS: dict[str, Landing] = {
    "append_keyed": AppendNew(("event_id", "updated_at")),
    "append_keyless": AppendNew(None),
    "deduped": MergeDeduped(("event_id",), "updated_at"),
}
VERSION = 7


def events(count: int, seed: int, *, partitioned: bool = True) -> pa.Table:
    """`count` rows drawn from few values, so that keys, (key, cursor) pairs and whole rows repeat; NULL keys,
    NULL cursors and NULL columns among them."""
    pick = random.Random(seed)
    rows = []
    for _ in range(count):
        day = pick.randint(1, 3)
        rows.append(
            {
                "event_id": pick.choice([None, *range(1, 12)]),
                "customer": pick.choice([None, "acme", "globex", "ünïcode"]),
                "amount": decimal.Decimal(pick.randint(0, 3)) / 4,
                "billable": pick.choice([True, False, None]),
                "day": dt.date(2026, 1, day),
                "updated_at": pick.choice(
                    [None, *(dt.datetime(2026, 1, day, hour, tzinfo=dt.UTC) for hour in (1, 2, 3))]
                ),
                PARTITION: f"2026-01-0{day}",
            }
        )
    table = pa.Table.from_pylist(rows, SCHEMA)
    return table if partitioned else table.drop_columns([PARTITION])


def merges(destination: DeltaDestination, rows: pa.Table, landing: Landing) -> WriteResult:
    """What a sync lands through the merges (the path before `create_copy`)."""
    if isinstance(landing, MergeDeduped):
        return destination.merge_deduped(
            rows, landing.primary_key, landing.cursor_field, source_version=VERSION
        )
    return destination.append_new(rows, landing.landing_key, source_version=VERSION)


def reader(rows: pa.Table, batch_rows: int, then: Callable[[], None] | None = None) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        yield from rows.to_batches(max_chunksize=batch_rows)
        if then is not None:
            then()

    return pa.RecordBatchReader.from_batches(rows.schema, batches())


def landed(uri: str) -> tuple[pa.Schema, list[dict[str, Any]]]:
    """A copy's schema and its rows in one order, every column but `_zenskar_synced_at`."""
    table = DeltaTable(uri).to_pyarrow_table()
    names = [name for name in table.column_names if name != SYNCED_AT]
    table = table.select(sorted(names))
    ordered = table.sort_by([(name, "ascending") for name in table.column_names])
    return pa.schema([table.schema.field(name) for name in sorted(names)]), ordered.to_pylist()


@pytest.mark.parametrize("partitioned", [True, False], ids=["partitioned", "whole"])
@pytest.mark.parametrize("name", list(LANDINGS))
def test_a_staged_first_version_lands_what_the_merges_land(
    tmp_path: Path, name: str, partitioned: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing = LANDINGS[name]
    rows = events(400, seed=len(name) + partitioned, partitioned=partitioned)
    # Batches of 7 rows read, handed back 3 at a time, positions 5 at a time: losers and numbers fall across
    # every boundary.
    monkeypatch.setattr(staging, "POSITION_BATCH_ROWS", 5)
    monkeypatch.setattr(staging, "BATCH_ROWS", 3)
    staged = DeltaDestination(str(tmp_path / "staged"), partitioned=partitioned)
    merged = DeltaDestination(str(tmp_path / "merged"), partitioned=partitioned)
    result = staged.create_copy(reader(rows, 7), landing, source_version=VERSION)
    expected = merges(merged, rows, landing)
    assert landed(staged.uri) == landed(merged.uri)
    assert (
        DeltaTable(staged.uri).metadata().partition_columns
        == DeltaTable(merged.uri).metadata().partition_columns
    )
    assert (result.rows_written, result.rows_deleted, result.version) == (expected.rows_written, 0, 0)
    assert result.rows_by_partition == expected.rows_by_partition
    assert 0 < result.rows_written < rows.num_rows or name == "append_keyless"
    # The copies go on alike: the same rows read again and new ones land the same through the merges.
    more = events(100, seed=99, partitioned=partitioned)
    for destination in (staged, merged):
        merges(destination, pa.concat_tables([rows.slice(0, 150), more]), landing)
    assert landed(staged.uri) == landed(merged.uri)


@pytest.mark.parametrize("name", list(LANDINGS))
def test_identical_rows_and_shared_keys_across_many_batches(tmp_path: Path, name: str) -> None:
    landing = LANDINGS[name]
    one = events(1, seed=3).to_pylist()[0] | {
        "event_id": 5,
        "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    }
    newer = one | {"updated_at": dt.datetime(2026, 1, 2, tzinfo=dt.UTC), "amount": decimal.Decimal(9)}
    rows = pa.Table.from_pylist([one, one, newer, one, newer, one], SCHEMA)
    staged = DeltaDestination(str(tmp_path / "staged"), partitioned=True)
    merged = DeltaDestination(str(tmp_path / "merged"), partitioned=True)
    staged.create_copy(reader(rows, 1), landing, source_version=VERSION)
    merges(merged, rows, landing)
    assert landed(staged.uri) == landed(merged.uri)
    counts = {"append_keyed": 2, "append_keyless": 6, "deduped": 1}
    assert len(landed(staged.uri)[1]) == counts[name]


def test_an_empty_read_commits_nothing(tmp_path: Path) -> None:
    staged = DeltaDestination(str(tmp_path / "staged"), partitioned=True)
    result = staged.create_copy(reader(events(0, seed=1), 10), LANDINGS["deduped"], source_version=VERSION)
    assert (result.rows_written, result.version) == (0, None)
    assert not staged.exists()


@pytest.mark.parametrize("name", list(LANDINGS))
def test_a_copy_another_writer_creates_meanwhile_gets_each_row_once(tmp_path: Path, name: str) -> None:
    landing = LANDINGS[name]
    rows = events(300, seed=11)
    earlier = rows.slice(0, 120)  # another run, which read part of the same rows, commits first
    staged = DeltaDestination(str(tmp_path / "staged"), partitioned=True)
    racer = DeltaDestination(str(tmp_path / "staged"), partitioned=True)

    def race() -> None:
        merges(racer, earlier, landing)

    result = staged.create_copy(reader(rows, 16, then=race), landing, source_version=VERSION)
    reference = DeltaDestination(str(tmp_path / "reference"), partitioned=True)
    merges(reference, earlier, landing)
    expected = merges(reference, rows, landing)
    assert staged.version() == 1  # the racer's commit, then this run's merge into it
    assert landed(staged.uri) == landed(reference.uri)
    assert result.rows_written == expected.rows_written > 0
    assert result.rows_by_partition == expected.rows_by_partition


def test_a_race_lands_in_chunks_when_the_rows_are_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("zenskar_pipeline.destinations.first_version.RACE_CHUNK_ROWS", 40)
    landing = LANDINGS["append_keyless"]
    rows = events(300, seed=12)
    staged = DeltaDestination(str(tmp_path / "staged"), partitioned=True)
    racer = DeltaDestination(str(tmp_path / "staged"), partitioned=True)

    def race() -> None:
        merges(racer, rows.slice(0, 50), landing)

    result = staged.create_copy(reader(rows, 16, then=race), landing, source_version=VERSION)
    reference = DeltaDestination(str(tmp_path / "reference"), partitioned=True)
    merges(reference, rows, landing)
    assert landed(staged.uri) == landed(reference.uri)
    assert (staged.version() or 0) > 2
    assert result.rows_written == 250


def create_at_once(uri: str, rows: pa.Table, landing: Landing) -> list[WriteResult]:
    """Two writers creating the copy at `uri` from `rows`, each having read everything before either writes
    (the staging consumes its reader first)."""
    import threading

    both_read = threading.Barrier(2)
    results: list[WriteResult] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            copy = DeltaDestination(uri, partitioned=True)
            read = reader(rows, 64, then=both_read.wait)
            results.append(copy.create_copy(read, landing, source_version=VERSION))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("name", list(LANDINGS))
def test_two_runs_creating_one_copy_at_once_land_each_row_once(tmp_path: Path, name: str) -> None:
    """Both find no copy and both write its first version at the same moment: the loser must not have its
    commit retried as an append (delta-rs does that unless told not to, landing every row twice); it merges
    into the winner's copy. A few rounds, as the two commits must meet."""
    landing = LANDINGS[name]
    rows = events(400, seed=13)
    reference = DeltaDestination(str(tmp_path / "reference"), partitioned=True)
    expected = merges(reference, rows, landing)
    for round_ in range(4):
        uri = str(tmp_path / f"copy{round_}")

        results = create_at_once(uri, rows, landing)

        assert landed(uri) == landed(reference.uri)
        assert sorted(r.rows_written for r in results) == [0, expected.rows_written]

"""`sync_mode: history` against the local warehouse and real Delta copies: every version of a row kept, by
cursor and by change feed; updates, deletes, re-inserts, unchanged re-reads, boundary ties, two changes of one
key in one read, a range against partition by partition, and a run killed between its read and its commit."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.faults import FaultKind, FaultRule
from zenskar_devtools.local_warehouse.server import ConnectionInfo
from zenskar_pipeline.config import (
    Deletes,
    OnMissingHistory,
    ResolvedStream,
    StreamConfig,
    StreamSettings,
    SyncMode,
)
from zenskar_pipeline.databricks import DatabricksResource
from zenskar_pipeline.databricks.discovery import DiscoveredTable
from zenskar_pipeline.databricks.resource import DEFAULT_BATCH_ROWS
from zenskar_pipeline.destinations import PARTITION, DeltaDestination
from zenskar_pipeline.sync import Scope, check_sync, run_sync
from zenskar_pipeline.sync.modes import MODE_RULES, STRATEGIES
from zenskar_pipeline.sync.modes.history import IS_CURRENT, VALID_FROM, VALID_TO
from zenskar_pipeline_tests.test_sync.conftest import Source, utc

PLANS = pa.schema(
    [
        pa.field("customer_id", pa.int64(), nullable=False),
        ("plan", pa.string()),
        ("seats", pa.int64()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)
VERSION_COLUMNS = ("customer_id", "plan", "seats", VALID_FROM, VALID_TO, IS_CURRENT)


def plan(customer: int, name: str, seats: int, day: int, hour: int = 0) -> dict[str, Any]:
    return {"customer_id": customer, "plan": name, "seats": seats, "updated_at": utc(day, hour)}


def _by_cursor(make_source: Any, **options: Any) -> Source:
    source: Source = make_source(PLANS, SyncMode.HISTORY, primary_key=("customer_id",), **options)
    return source


def _by_feed(make_source: Any, **options: Any) -> Source:
    source: Source = make_source(
        PLANS, SyncMode.HISTORY, cursor=None, primary_key=("customer_id",), change_feed=True, **options
    )
    return source


def versions(source: Source, uri: str | None = None) -> list[tuple[Any, ...]]:
    """The copy's versions, by customer and then as they follow one another."""
    return sorted(source.landed(*VERSION_COLUMNS, uri=uri), key=lambda row: (row[0], row[3]))


def commit_time(source: Source, version: int) -> dt.datetime:
    """When the source committed `version` (as `table_changes` reports it)."""
    for commit in tables.open_table(source.warehouse.root, source.name).history():
        if commit["version"] == version:
            return dt.datetime.fromtimestamp(commit["timestamp"] / 1000, tz=dt.UTC)
    raise AssertionError(f"no version {version}")


def source_version(source: Source) -> int:
    return tables.open_table(source.warehouse.root, source.name).version()


# --- by cursor ---------------------------------------------------------------------------------------------


def test_an_update_closes_the_previous_version(make_source: Any) -> None:
    source = _by_cursor(make_source)
    source.append([plan(1, "team", 5, 1), plan(2, "pro", 1, 1)])
    source.sync()
    source.upsert([plan(1, "team", 8, 3)])
    source.sync()
    assert versions(source) == [
        (1, "team", 5, utc(1), utc(3), False),
        (1, "team", 8, utc(3), None, True),
        (2, "pro", 1, utc(1), None, True),
    ]


def test_an_unchanged_re_read_adds_no_version_and_commits_nothing(make_source: Any) -> None:
    source = _by_cursor(make_source)
    source.append([plan(1, "team", 5, 1)])
    source.sync()
    copy_version = source.copy_version()
    (report,) = source.sync()  # the boundary row is read again: it has not changed
    assert (report.rows_written, report.destination_version) == (0, None)
    assert source.copy_version() == copy_version
    assert versions(source) == [(1, "team", 5, utc(1), None, True)]


def test_boundary_ties_a_late_row_at_the_mark_lands_and_a_same_cursor_change_replaces_in_place(
    make_source: Any,
) -> None:
    source = _by_cursor(make_source)
    source.append([plan(1, "team", 5, 2)])
    source.sync()
    # Committed later with the same cursor as the high-water mark: read again from the mark on.
    source.append([plan(2, "pro", 1, 2)])
    source.upsert([plan(1, "team", 6, 2)])  # a change that did not move the cursor
    source.sync()
    assert versions(source) == [
        (1, "team", 6, utc(2), None, True),  # one version per (key, valid_from): the later read wins
        (2, "pro", 1, utc(2), None, True),
    ]


def test_two_changes_of_one_key_in_one_read_become_two_versions(make_source: Any) -> None:
    source = _by_cursor(make_source)
    # An event-sourced table: one row per change of a customer's plan.
    source.append([plan(1, "free", 1, 1), plan(1, "team", 5, 2, 6), plan(1, "pro", 9, 4)])
    source.sync()
    assert versions(source) == [
        (1, "free", 1, utc(1), utc(2, 6), False),
        (1, "team", 5, utc(2, 6), utc(4), False),
        (1, "pro", 9, utc(4), None, True),
    ]


def test_a_range_run_lands_what_partition_by_partition_runs_land(make_source: Any, tmp_path: Path) -> None:
    source = _by_cursor(make_source, partition_field="updated_at")
    source.append([plan(1, "free", 1, 1), plan(1, "team", 5, 2), plan(2, "pro", 3, 2), plan(1, "pro", 9, 3)])
    days = ("2026-01-01", "2026-01-02", "2026-01-03")
    source.sync(*days)
    one_by_one = replace(source.stream, destination_uri=str(tmp_path / "one_by_one"))
    for day in reversed(days):  # in any order
        source.sync(day, stream=one_by_one)
    assert versions(source, one_by_one.destination_uri) == versions(source)
    placed = source.landed("customer_id", VALID_FROM, PARTITION)
    assert placed == source.landed("customer_id", VALID_FROM, PARTITION, uri=one_by_one.destination_uri)
    assert versions(source)[:3] == [
        (1, "free", 1, utc(1), utc(2), False),
        (1, "team", 5, utc(2), utc(3), False),
        (1, "pro", 9, utc(3), None, True),
    ]


def _sync_in_a_child(info: ConnectionInfo, stream: ResolvedStream, table: DiscoveredTable) -> None:
    resource = DatabricksResource(
        server_hostname=info.server_hostname,
        port=info.port,
        http_path=info.http_path,
        access_token=info.access_token,
        tls_ca_file=info.tls_ca_file,
    )
    with resource.session() as session:
        run_sync(session, stream, table, DeltaDestination.for_stream(stream), Scope.whole_table())


def test_a_run_killed_between_its_read_and_its_commit_changes_nothing(make_source: Any) -> None:
    source = _by_cursor(make_source)
    source.append([plan(1, "team", 5, 1)])
    source.sync()
    before, copy_version = versions(source), source.copy_version()
    rows = DEFAULT_BATCH_ROWS + 10  # more than the first page: the read asks for a second one
    source.append([plan(customer, "free", 1, 2) for customer in range(10, 10 + rows)])
    source.warehouse.faults.add(FaultRule(FaultKind.DELAY, seconds=60, count=1, rpc="FetchResults"))
    child = multiprocessing.get_context("spawn").Process(
        target=_sync_in_a_child, args=(source.warehouse.info, source.stream, source.table)
    )
    child.start()
    deadline = time.monotonic() + 60
    while source.warehouse.faults.rules() and time.monotonic() < deadline:
        time.sleep(0.1)  # the child's read has reached its second page, and waits
    assert not source.warehouse.faults.rules(), "the child never asked for its second page"
    os.kill(child.pid or 0, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL  # killed, not finished
    source.warehouse.faults.clear()
    assert source.copy_version() == copy_version and versions(source) == before
    source.sync()
    landed = versions(source)
    assert len(landed) == 1 + rows and landed[0] == (1, "team", 5, utc(1), None, True)


# --- by change feed ----------------------------------------------------------------------------------------


def test_feed_update_delete_and_re_insert_after_delete(make_source: Any) -> None:
    source = _by_feed(make_source)
    source.append([plan(1, "team", 5, 1), plan(2, "pro", 1, 1)])
    source.sync()
    snapshot = commit_time(source, source_version(source))
    source.upsert([plan(1, "team", 8, 1)])  # the cursor does not move: the feed still sees it
    updated = commit_time(source, source_version(source))
    source.delete("customer_id = 2")
    deleted = commit_time(source, source_version(source))
    source.sync()
    source.append([plan(2, "pro", 2, 5)])
    inserted = commit_time(source, source_version(source))
    source.sync()
    assert versions(source) == [
        (1, "team", 5, snapshot, updated, False),
        (1, "team", 8, updated, None, True),
        (2, "pro", 1, snapshot, deleted, False),  # a delete leaves no current row ...
        (2, "pro", 2, inserted, None, True),  # ... until the key comes back
    ]


def test_feed_two_changes_of_one_key_in_one_read_and_an_unchanged_update(make_source: Any) -> None:
    source = _by_feed(make_source)
    source.append([plan(1, "team", 5, 1)])
    source.sync()
    snapshot = commit_time(source, source_version(source))
    source.upsert([plan(1, "team", 6, 1)])
    first = commit_time(source, source_version(source))
    source.upsert([plan(1, "team", 6, 1)])  # rewrites the row with the same content: no new version
    source.upsert([plan(1, "pro", 6, 1)])
    second = commit_time(source, source_version(source))
    source.sync()
    assert versions(source) == [
        (1, "team", 5, snapshot, first, False),
        (1, "team", 6, first, second, False),
        (1, "pro", 6, second, None, True),
    ]


def test_feed_backfill_runs_as_any_run_and_keeps_the_history(make_source: Any) -> None:
    source = _by_feed(make_source, partition_field="updated_at")
    source.append([plan(1, "team", 5, 1)])
    source.sync("2026-01-01")
    source.upsert([plan(1, "team", 8, 1)])
    source.sync("2026-01-01", rebuild=True)  # a UI backfill of the window
    first, second = versions(source)
    assert (first[2], first[5], second[2], second[5]) == (5, False, 8, True)
    assert first[4] == second[3] and second[4] is None  # the first closes where the second opens


def test_feed_resnapshot_after_lost_history_closes_keys_the_table_no_longer_has(make_source: Any) -> None:
    source = _by_feed(make_source, on_missing_history=OnMissingHistory.RESNAPSHOT, change_data_feed=False)
    source.append([plan(1, "team", 5, 1), plan(2, "pro", 1, 1)])
    source.sync()  # a snapshot needs no feed
    # The table is replaced, and no feed can say how.
    tables.overwrite(source.warehouse.root, source.name, pa.Table.from_pylist([plan(1, "team", 7, 1)], PLANS))
    replaced = commit_time(source, source_version(source))
    (report,) = source.sync()
    assert report.note is not None and "resnapshot" in report.note
    landed = versions(source)
    assert [row[:3] + row[4:] for row in landed] == [
        (1, "team", 5, replaced, False),
        (1, "team", 7, None, True),
        (2, "pro", 1, replaced, False),
    ]


# --- checks and settings -----------------------------------------------------------------------------------


def test_one_current_version_per_key_fails_on_a_copy_edited_by_hand(make_source: Any) -> None:
    source = _by_cursor(make_source)
    source.append([plan(1, "team", 5, 1)])
    reports = source.sync()
    assert _one_current(source, reports).passed
    copy = DeltaTable(source.stream.destination_uri).to_pyarrow_table()
    valid_from = pa.array([utc(9)], copy.schema.field(VALID_FROM).type)
    forged = copy.set_column(copy.schema.get_field_index(VALID_FROM), VALID_FROM, valid_from)
    write_deltalake(source.stream.destination_uri, forged, mode="append")  # a second current version
    failed = _one_current(source, reports)
    assert not failed.passed and failed.metadata["keys_with_several_current_versions"] == 1


def _one_current(source: Source, reports: list[Any]) -> Any:
    outcomes = check_sync(source.session, source.stream, source.table, source.destination, reports)
    (outcome,) = [o for o in outcomes if o.name == "one_current_version_per_key"]
    return outcome


def test_history_needs_a_key_and_refuses_deletes_with_the_feed(make_source: Any) -> None:
    assert STRATEGIES[(SyncMode.HISTORY, False)].needs_primary_key
    settings = StreamSettings(sync_mode=SyncMode.HISTORY, change_feed=True, deletes=Deletes.SOFT)
    entry = StreamConfig("main.billing.plans", settings, 0)
    (problem,) = MODE_RULES.settings_problems("stream main.billing.plans", entry, {"deletes", "change_feed"})
    assert str(problem) == (
        "stream main.billing.plans: deletes: does not apply to sync_mode history (a delete closes the row's "
        "current version); remove deletes"
    )
    source = make_source(PLANS, SyncMode.HISTORY)  # no primary key
    source.append([plan(1, "team", 5, 1)])
    with pytest.raises(ValueError, match="history needs a primary_key"):
        source.sync()


def test_feed_first_snapshot_of_an_empty_table_then_its_first_rows(make_source: Any) -> None:
    source = _by_feed(make_source)
    (report,) = source.sync()  # nothing to copy yet: an empty copy that records the version
    assert report.synced_through == source_version(source)
    source.append([plan(1, "team", 5, 1)])
    inserted = commit_time(source, source_version(source))
    source.sync()
    assert versions(source) == [(1, "team", 5, inserted, None, True)]


def test_feed_resnapshot_of_unchanged_rows_adds_no_version_and_moves_the_synced_version(
    make_source: Any,
) -> None:
    source = _by_feed(make_source, on_missing_history=OnMissingHistory.RESNAPSHOT, change_data_feed=False)
    source.append([plan(1, "team", 5, 1)])
    source.sync()
    before = versions(source)
    tables.overwrite(source.warehouse.root, source.name, pa.Table.from_pylist([plan(1, "team", 5, 1)], PLANS))
    (report,) = source.sync()
    assert report.note is not None and report.synced_through == source_version(source)
    assert versions(source) == before
    (again,) = source.sync()  # the version was recorded: nothing to do
    assert again.note is None and again.destination_version is None

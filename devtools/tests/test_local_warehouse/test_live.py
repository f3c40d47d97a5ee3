"""The live demo writer, checked on the Delta versions and change data feed it leaves behind."""

from __future__ import annotations

import itertools
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.live import LiveMix, LiveUsageWriter, LiveVersion, _id_values, run_live
from zenskar_devtools.local_warehouse.seed import USAGE_EVENTS, _event_ids, seed_demo

NOW = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)
ROWS = 2_000
SEEDED_VERSION = 7
EVERY_KIND = LiveMix(correction_chance=1.0, max_corrections=6, delete_chance=1.0, max_deletes=3)
CLI = [sys.executable, "-m", "zenskar_pipeline.cli"]


@pytest.fixture(scope="module")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("seeded")
    seed_demo(root, rows=ROWS, seed=7, now=NOW)
    return root


@pytest.fixture
def root(seeded_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the seeded tables: each test writes its own versions."""
    shutil.copytree(seeded_template, tmp_path / "wh")
    return tmp_path / "wh"


def _usage(root: Path, version: int | None = None) -> DeltaTable:
    return DeltaTable(str(USAGE_EVENTS.path(root)), version=version)


def _changes(root: Path, start: int) -> list[dict[str, Any]]:
    return pa.table(_usage(root).load_cdf(starting_version=start)).to_pylist()


def _max_updated_at(root: Path, version: int) -> datetime:
    return max(_usage(root, version).to_pyarrow_table(columns=["updated_at"])["updated_at"].to_pylist())


def _steps(writer: LiveUsageWriter, count: int, start: datetime = NOW) -> list[LiveVersion]:
    versions: list[LiveVersion] = []
    for i in range(count):
        versions += writer.write_step(start + timedelta(seconds=5 * (i + 1)))
    return versions


def test_one_step_writes_one_version_per_write_it_reports(root: Path) -> None:
    step = LiveUsageWriter.open(root, seed=7, mix=EVERY_KIND).write_step(NOW + timedelta(minutes=1))
    assert [v.version for v in step] == [SEEDED_VERSION + 1, SEEDED_VERSION + 2, SEEDED_VERSION + 3]
    assert _usage(root).version() == SEEDED_VERSION + 3
    history = sorted(_usage(root).history(), key=lambda h: h["version"])[-3:]
    assert [h["operation"] for h in history] == ["WRITE", "MERGE", "DELETE"]
    inserted, updated, deleted = step
    assert inserted.inserted > 0 and (inserted.updated, inserted.deleted) == (0, 0)
    assert updated.updated > 0 and (updated.inserted, updated.deleted) == (0, 0)
    assert deleted.deleted > 0 and (deleted.inserted, deleted.updated) == (0, 0)
    assert re.fullmatch(
        rf"main\.billing\.usage_events version {deleted.version}: 0 inserted, 0 updated, \d+ deleted",
        deleted.line(),
    )
    assert f"version {updated.version}: 0 inserted, {updated.updated} updated (" in updated.line()


def test_the_change_feed_shows_the_counts_it_reported(root: Path) -> None:
    writer = LiveUsageWriter.open(root, seed=7, mix=EVERY_KIND)
    versions = _steps(writer, 3)
    reported: Counter[tuple[int, str]] = Counter()
    for v in versions:
        for kind, count in (
            ("insert", v.inserted),
            ("update_preimage", v.updated),
            ("update_postimage", v.updated),
            ("delete", v.deleted),
        ):
            if count:
                reported[(v.version, kind)] = count
    changes = _changes(root, SEEDED_VERSION + 1)
    assert Counter((c["_commit_version"], c["_change_type"]) for c in changes) == reported
    assert len(versions) == 9  # three steps of three writes each


def test_new_events_are_mostly_recent_and_some_late(root: Path) -> None:
    now = NOW + timedelta(minutes=1)
    before = _max_updated_at(root, SEEDED_VERSION)
    (inserted,) = LiveUsageWriter.open(
        root, mix=LiveMix(new_events=200, correction_chance=0, delete_chance=0)
    ).write_step(now)
    rows = [c for c in _changes(root, inserted.version) if c["_change_type"] == "insert"]
    assert len(rows) == inserted.inserted
    late = [r for r in rows if dict(r["properties"]).get("ingest") == "late"]
    assert len(late) == inserted.late and 0 < inserted.late < inserted.inserted // 2
    assert all(now - timedelta(days=10) <= r["event_time"] < now - timedelta(days=1) for r in late)
    on_time = [r for r in rows if r not in late]
    assert all(now - timedelta(hours=1) <= r["event_time"] < now for r in on_time)
    # A cursor sync that landed everything before this version still sees every new row.
    assert all(before <= r["updated_at"] < now for r in rows)


def test_corrections_bump_updated_at_past_the_maximum_and_some_move_a_day(root: Path) -> None:
    writer = LiveUsageWriter.open(root, seed=7, mix=EVERY_KIND)
    versions = [v for v in _steps(writer, 4) if v.updated]
    assert len(versions) == 4
    changes = _changes(root, SEEDED_VERSION + 1)
    moved_total = 0
    for v in versions:
        merged = [c for c in changes if c["_commit_version"] == v.version]
        before = {c["event_id"]: c for c in merged if c["_change_type"] == "update_preimage"}
        after = {c["event_id"]: c for c in merged if c["_change_type"] == "update_postimage"}
        assert before.keys() == after.keys() and len(after) == v.updated
        previous_max = _max_updated_at(root, v.version - 1)
        assert all(row["updated_at"] > previous_max for row in after.values())
        moved = [k for k in after if after[k]["event_time"].date() != before[k]["event_time"].date()]
        assert len(moved) == v.moved >= 1
        assert all(abs(after[k]["event_time"] - before[k]["event_time"]) == timedelta(days=1) for k in moved)
        assert all(after[k]["event_time"] < NOW + timedelta(minutes=1) for k in moved)  # never in the future
        assert any(after[k]["quantity"] != before[k]["quantity"] for k in after)
        moved_total += len(moved)
    assert moved_total >= 4


def test_deletes_hit_existing_rows_and_ids_stay_unique(root: Path) -> None:
    seeded_rows = _usage(root).to_pyarrow_table().num_rows
    writer = LiveUsageWriter.open(root, seed=7, mix=LiveMix(delete_chance=0.5))
    versions = _steps(writer, 12)
    deleted = [c for c in _changes(root, SEEDED_VERSION + 1) if c["_change_type"] == "delete"]
    assert len(deleted) == sum(v.deleted for v in versions) > 0
    rows = _usage(root).to_pyarrow_table()
    ids = rows["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == seeded_rows + sum(v.inserted - v.deleted for v in versions)
    assert not {c["event_id"] for c in deleted} & set(ids)
    for v in versions:
        if v.deleted:
            gone = {c["event_id"] for c in deleted if c["_commit_version"] == v.version}
            before = _usage(root, v.version - 1).to_pyarrow_table(columns=["event_id"])["event_id"]
            assert len(gone) == v.deleted and gone <= set(before.to_pylist())


def test_a_restarted_writer_carries_on_the_id_sequence_and_cursor(root: Path) -> None:
    first = _steps(LiveUsageWriter.open(root, seed=7, mix=EVERY_KIND), 2)
    later = NOW + timedelta(minutes=5)
    reopened = LiveUsageWriter.open(root, seed=7, mix=EVERY_KIND)
    assert reopened.high_water == _max_updated_at(root, first[-1].version)
    second = reopened.write_step(later)
    assert sum(v.deleted for v in first) > 0
    # Every id ever inserted is new, the deleted ones included: the sequence went on where it stood.
    inserted = [c["event_id"] for c in _changes(root, 0) if c["_change_type"] == "insert"]
    assert len(inserted) == len(set(inserted))
    new_rows = [c for c in _changes(root, second[0].version) if c["_change_type"] == "insert"]
    assert all(c["updated_at"] >= _max_updated_at(root, second[0].version - 1) for c in new_rows)


def test_the_same_seed_and_now_write_the_same_rows(seeded_template: Path, tmp_path: Path) -> None:
    roots = []
    for name in ("a", "b"):
        shutil.copytree(seeded_template, tmp_path / name)
        _steps(LiveUsageWriter.open(tmp_path / name, seed=7, mix=EVERY_KIND), 3)
        roots.append(tmp_path / name)
    a, b = (_usage(r).to_pyarrow_table().sort_by("event_id") for r in roots)
    assert a.equals(b)
    other = tmp_path / "c"
    shutil.copytree(seeded_template, other)
    _steps(LiveUsageWriter.open(other, seed=8, mix=EVERY_KIND), 3)
    assert not _usage(other).to_pyarrow_table().sort_by("event_id").equals(a)


def test_ids_are_read_back_into_their_running_values() -> None:
    values = np.array([0, 1, 2, 2**40, 2**63 - 1], dtype=np.uint64)
    key = 123_456_789
    ids = pa.chunked_array([_event_ids(values[:2], key), _event_ids(values[2:], key), pa.array(["other"])])
    assert _id_values(ids).tolist() == (values + np.uint64(key)).tolist()


def test_stop_ends_a_step_after_the_version_under_way(root: Path) -> None:
    asked = itertools.chain([False], itertools.repeat(True))  # yes once the first write is under way
    step = LiveUsageWriter.open(root, mix=EVERY_KIND).write_step(NOW, stop=lambda: next(asked))
    assert len(step) == 1 and _usage(root).version() == SEEDED_VERSION + 1
    assert LiveUsageWriter.open(root, mix=EVERY_KIND).write_step(NOW, stop=lambda: True) == ()


def test_run_live_writes_until_stopped(root: Path) -> None:
    stop = threading.Event()
    seen: list[LiveVersion] = []

    def on_version(version: LiveVersion) -> None:
        seen.append(version)
        if len(seen) >= 3:
            stop.set()

    written = run_live(LiveUsageWriter.open(root), stop, interval=0, on_version=on_version)
    assert written == len(seen) >= 3
    assert _usage(root).version() == seen[-1].version


def _wait_for_version(root: Path, version: int, process: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if DeltaTable.is_deltatable(str(USAGE_EVENTS.path(root))) and _usage(root).version() >= version:
            return
        time.sleep(0.1)
    raise AssertionError(f"no version {version} of {USAGE_EVENTS} within {seconds} s")


def test_seed_demo_live_seeds_writes_versions_and_stops_cleanly(tmp_path: Path) -> None:
    """First run: seeds, then writes; second run on the seeded root: skips the seed. SIGINT, then SIGTERM."""
    command = [
        *CLI,
        "warehouse",
        "seed-demo",
        "--root",
        "wh",
        "--rows",
        "2000",
        "--live",
        "--interval",
        "0.2",
    ]
    root = tmp_path / "wh"
    for run, stop_with in enumerate((signal.SIGINT, signal.SIGTERM)):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=tmp_path)
        start = SEEDED_VERSION if run == 0 else _usage(root).version()
        _wait_for_version(root, start + 2, process)
        process.send_signal(stop_with)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0, out
        if run == 0:
            assert f"rows, latest version {SEEDED_VERSION}" in out  # the seed's summary
        else:
            assert "already seeded" in out and "rows, latest version" not in out
        printed = [int(v) for v in re.findall(r"^main\.billing\.usage_events version (\d+): ", out, re.M)]
        assert len(printed) >= 2 and printed == list(range(start + 1, start + 1 + len(printed)))
        assert _usage(root).version() == printed[-1]  # the version under way finished, no other began
        assert re.search(rf"stopped after {len(printed)} live version", out, re.I)
    ids = _usage(root).to_pyarrow_table(columns=["event_id"])["event_id"].to_pylist()
    assert len(ids) == len(set(ids))

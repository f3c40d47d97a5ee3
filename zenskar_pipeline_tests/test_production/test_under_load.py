"""The production instance under load for more than two minutes: the local warehouse's live writer makes new
versions of the demo usage events and a second writer changes three more tables, while runs of the four
streams come from the daemon's sensor, a schedule ticking every minute, UI backfills and `zenskar-pipeline
sync`. Afterwards every copy equals its source at the version it was synced through, and the event log shows
that no two runs ever wrote one stream at once."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.live import LiveMix, LiveUsageWriter
from zenskar_devtools.local_warehouse.seed import USAGE_EVENTS, seed_demo
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.defs.stream_lock import HOLDS, RELEASES
from zenskar_pipeline_tests.test_production.stack import (
    COMMAND,
    all_runs_ended,
    instance_of,
    launch_ui_backfill,
    make_project,
    prod_stack,
    stop_schedules,
    wait_until,
)

LOAD_SECONDS = 125
WRITE_EVERY_S = 5.0
CURSOR_TABLES = [f"main.ops.meter_{i}" for i in range(3)]
USAGE_COLUMNS = ["event_id", "customer_id", "event_time", "updated_at", "metric", "quantity"]
METER_COLUMNS = ["reading_id", "read_at", "updated_at", "value"]
DAYS = 4
LAUNCHER_TAGS = {
    "sensor": "dagster/sensor_name",
    "schedule": "dagster/schedule_name",
    "ui": "dagster/backfill",
}


@pytest.fixture(scope="module")
def live_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWarehouse]:
    root = tmp_path_factory.mktemp("load")
    now = dt.datetime.now(dt.UTC)
    seed_demo(root, rows=3_000, seed=17, now=now - dt.timedelta(hours=2))
    for name in CURSOR_TABLES:
        tables.create_table(root, name, _readings(range(200), now, 0), primary_key=["reading_id"])
    server = LocalWarehouse(root)
    server.start()
    yield server
    server.stop()


def _readings(ids: range | list[int], now: dt.datetime, revision: int) -> pa.Table:
    """Meter readings spread over the last DAYS days; a later revision rewrites `updated_at` and `value`."""
    ts = pa.timestamp("us", "UTC")
    first_day = (now - dt.timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return pa.table(
        {
            "reading_id": pa.array([f"r{i:06d}" for i in ids]),
            "read_at": pa.array(
                [first_day + dt.timedelta(minutes=97 * i % (DAYS * 1440 - 1)) for i in ids], ts
            ),
            "updated_at": pa.array([now + dt.timedelta(microseconds=revision)] * len(ids), ts),
            "value": pa.array([i * 10 + revision for i in ids], pa.int64()),
        }
    )


def _streams(start: str) -> str:
    meters = "".join(
        textwrap.dedent(
            f"""\
              - table: {name}
                sync_mode: incremental_append_deduped
                cursor_field: updated_at
                primary_key: [reading_id]
                partitions: {{field: read_at, granularity: daily, start: "{start}"}}
                schedule: "* * * * *"
                lookback: 1
            """
        )
        for name in CURSOR_TABLES
    )
    usage = textwrap.dedent(
        f"""\
          - table: {USAGE_EVENTS}
            sync_mode: incremental_append_deduped
            change_feed: true
            partitions: {{field: event_time, granularity: daily, start: "{start}"}}
            schedule: "* * * * *"
            lookback: 1
        """
    )
    return "destination:\n  uri: {copies}\nstreams:\n" + usage + meters


def _sorted_rows(table: pa.Table, columns: list[str]) -> list[tuple[object, ...]]:
    return sorted(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def _copies_equal_sources(warehouse: LocalWarehouse, copies: Path, start: dt.datetime) -> bool:
    """Each copy holds exactly its source's rows in its partitions' windows (the demo's usage events go back
    months before `start`: those rows are outside every window, counted and reported, not copied)."""
    fields = [
        (str(USAGE_EVENTS), USAGE_COLUMNS, "event_time"),
        *((n, METER_COLUMNS, "read_at") for n in CURSOR_TABLES),
    ]
    for name, columns, field in fields:
        catalog, schema, table = name.split(".")
        copy_path = copies / catalog / schema / table
        if not copy_path.exists():
            return False
        source = tables.open_table(warehouse.root, name).to_pyarrow_table(columns=columns)
        source = source.filter(
            pc.greater_equal(source.column(field), pa.scalar(start, source.schema.field(field).type))
        )
        copy = DeltaTable(str(copy_path)).to_pyarrow_table(columns=columns)
        if _sorted_rows(source, columns) != _sorted_rows(copy, columns):
            return False
    return True


def _launcher(run: dg.DagsterRun) -> str:
    return next((name for name, tag in LAUNCHER_TAGS.items() if tag in run.tags), "sync")


def _writing_intervals(instance: dg.DagsterInstance) -> dict[str, list[tuple[float, float, str]]]:
    """Per stream, when each run held it: from its "holds the stream" message to its "releases" one."""
    intervals: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for record in instance.get_run_records():
        held: tuple[str, float] | None = None
        for entry in instance.all_logs(record.dagster_run.run_id):
            message = entry.user_message or ""
            if message.endswith(HOLDS):
                held = (message.removesuffix(HOLDS), entry.timestamp)
            elif message.endswith(RELEASES) and held is not None:
                assert message.removesuffix(RELEASES) == held[0]
                intervals[held[0]].append((held[1], entry.timestamp, record.dagster_run.run_id))
                held = None
        assert held is None, f"run {record.dagster_run.run_id} held {held} and never released it"
    return intervals


def test_four_streams_under_every_launcher_and_a_live_writer(
    live_warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)
    first_day = (now - dt.timedelta(days=DAYS - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    project = make_project(
        tmp_path / "project",
        live_warehouse,
        _streams(f"{first_day:%Y-%m-%d}"),
        ZENSKAR_PIPELINE_SENSOR_INTERVAL="10",
    )
    writer = LiveUsageWriter.open(live_warehouse.root, seed=3, mix=LiveMix(delete_chance=0.5, max_deletes=3))
    stop = threading.Event()
    versions = defaultdict(int)

    def write() -> None:
        revision = 1
        while not stop.wait(WRITE_EVERY_S):
            versions[str(USAGE_EVENTS)] += len(writer.write_step(dt.datetime.now(dt.UTC)))
            for index, name in enumerate(CURSOR_TABLES):
                changed = [(revision * 7 + index + k * 13) % 260 for k in range(20)]
                ids = sorted(set(changed))
                tables.upsert(live_warehouse.root, name, _readings(ids, now, revision), ["reading_id"])
                versions[name] += 1
            revision += 1

    with prod_stack(project) as stack, instance_of(stack) as instance:
        env = dict(stack.env)
        load = threading.Thread(target=write, daemon=True)
        started = time.monotonic()
        load.start()
        syncs: list[subprocess.Popen[bytes]] = []
        try:
            for at in (15, 75):
                time.sleep(max(0.0, started + at - time.monotonic()))
                syncs.append(subprocess.Popen([COMMAND, "sync"], env=env, cwd=project.folder))
                for name in [str(USAGE_EVENTS), *CURSOR_TABLES]:
                    path = ["zenskar", *name.split(".")]
                    keys = [f"{now - dt.timedelta(days=d):%Y-%m-%d}" for d in range(DAYS - 1, -1, -1)]
                    launch_ui_backfill(stack, path, keys)
            time.sleep(max(0.0, started + LOAD_SECONDS - time.monotonic()))
        finally:
            stop.set()
            load.join()
        for sync in syncs:
            assert sync.wait(timeout=300) == 0
        loaded_s = time.monotonic() - started

        # The schedules would start runs every minute for ever: off, as in the UI. The sensor notices the last
        # versions on its next ticks; then every copy equals its source.
        assert stop_schedules(stack)
        wait_until(
            lambda: (
                all_runs_ended(instance) and _copies_equal_sources(live_warehouse, project.copies, first_day)
            ),
            420,
            "every copy to equal its source",
            every=5,
        )
        runs = [record.dagster_run for record in instance.get_run_records()]
        failed = [(r.run_id, _launcher(r)) for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        assert not failed
        launchers = defaultdict(int)
        for run in runs:
            launchers[_launcher(run)] += 1
        assert set(launchers) == {"sensor", "schedule", "ui", "sync"}, launchers

        intervals = _writing_intervals(instance)
        assert set(intervals) == {str(USAGE_EVENTS), *CURSOR_TABLES}
        for stream, held in intervals.items():
            held.sort()
            for (_, end, earlier), (begin, _, later) in itertools.pairwise(held):
                assert end <= begin, f"{stream}: runs {earlier} and {later} wrote at once"
        print(
            f"{loaded_s:.0f} s of load, {sum(versions.values())} source versions, {len(runs)} runs "
            f"({dict(launchers)}), {sum(len(h) for h in intervals.values())} writes, none overlapping"
        )

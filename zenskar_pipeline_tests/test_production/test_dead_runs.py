"""Run workers that die, on the production instance (PostgreSQL, the daemon's run monitoring and retries):
a worker killed with SIGKILL in the middle of a merge, and a whole stack stopped at once (`make dev` or
`make prod-local` interrupted) while a run was under way. Either way the run is failed and run again, the
stream's later runs are not held up, and the copy equals its source."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import textwrap
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.defs.stream_lock import HOLDS
from zenskar_pipeline_tests.test_production.stack import (
    all_runs_ended,
    instance_of,
    launch_ui_run,
    make_project,
    prod_stack,
    stop_sensor,
    terminate_run,
    wait_until,
)

ROWS = 400_000
TIMESTAMP = pa.timestamp("us", "UTC")
PARENT_RUN_TAG = "dagster/parent_run_id"
STARTED_PROCESS = re.compile(r"Executing steps in process \(pid: (\d+)\)")  # the run worker


def _events(count: int, revision: int) -> pa.Table:
    """`count` events; every revision re-meters all of them with a later `updated_at`."""
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return pa.table(
        {
            "event_id": pa.array([f"e{i:07d}" for i in range(count)]),
            "updated_at": pa.array(
                [base + dt.timedelta(minutes=revision)] * count, pa.timestamp("us", "UTC")
            ),
            "customer_id": pa.array([f"c{i % 97}" for i in range(count)]),
            "quantity": pa.array([i * (revision + 1) for i in range(count)], pa.int64()),
        }
    )


def _streams(table: str) -> str:
    return textwrap.dedent(
        f"""\
        destination:
          uri: {{copies}}
        streams:
          - table: {table}
            sync_mode: incremental_append_deduped
            cursor_field: updated_at
            primary_key: [event_id]
        """
    )


def _copy_rows(path: Path) -> list[tuple[object, ...]]:
    copy = DeltaTable(str(path)).to_pyarrow_table(columns=["event_id", "updated_at", "quantity"])
    return sorted(zip(*(copy.column(c).to_pylist() for c in copy.column_names), strict=True))


def _source_rows(warehouse: LocalWarehouse, table: str) -> list[tuple[object, ...]]:
    source = tables.open_table(warehouse.root, table).to_pyarrow_table(
        columns=["event_id", "updated_at", "quantity"]
    )
    return sorted(zip(*(source.column(c).to_pylist() for c in source.column_names), strict=True))


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id):
        found = STARTED_PROCESS.search(entry.user_message or "")
        if found:
            return int(found.group(1))
    return None


def _files_written(copy: Path) -> set[str]:
    """The copy's data files, those still being written included (delta-rs writes each under a temporary
    name, then renames it)."""
    return {str(p) for p in copy.rglob("*") if p.is_file() and "_delta_log" not in p.parts}


def test_a_worker_killed_in_a_merge_is_failed_retried_and_the_copy_is_exact(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    table = "zprod_kill.billing.events"
    key = ["zenskar", "zprod_kill", "billing", "events"]
    tables.create_table(warehouse.root, table, _events(ROWS, 0), primary_key=["event_id"])
    project = make_project(tmp_path / "project", warehouse, _streams(table))
    copy = project.copies / "zprod_kill" / "billing" / "events"
    with prod_stack(project) as stack, instance_of(stack) as instance:
        stop_sensor(stack)  # runs here are the test's own
        first = launch_ui_run(stack, key)
        wait_until(lambda: instance.get_run_by_id(first).is_finished, 180, "the first sync to end")  # type: ignore[union-attr]
        assert instance.get_run_by_id(first).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
        wait_until(lambda: all_runs_ended(instance), 180, "the sensor's first run, if any, to end")
        landed_version = DeltaTable(str(copy)).version()

        # Every row changes: the next run merges all of them into the copy. The worker is killed as soon as
        # the merge's first data file appears; the commit follows that file within milliseconds, so a kill
        # that came too late (the copy moved on) is tried again with the next revision.
        for revision in range(1, 4):
            tables.upsert(warehouse.root, table, _events(ROWS, revision), ["event_id"])
            before = _files_written(copy)
            victim = launch_ui_run(stack, key)
            pid: list[int] = []

            def merging(victim: str = victim, before: set[str] = before, pid: list[int] = pid) -> bool:
                if not pid:
                    found = _worker_pid(instance, victim)
                    pid.extend([found] if found else [])
                return bool(pid) and bool(_files_written(copy) - before)

            wait_until(merging, 180, "the run's merge to start writing", every=0.01)
            os.kill(pid[0], signal.SIGKILL)
            killed_at, killed_ms = time.monotonic(), time.time() * 1000
            wait_until(lambda v=victim: instance.get_run_by_id(v).is_finished, 60, "the killed run to fail")  # type: ignore[misc,union-attr]
            detected_s = time.monotonic() - killed_at
            assert instance.get_run_by_id(victim).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
            wait_until(lambda v=victim: any(r.is_finished for r in _retries(instance, v)), 240, "the retry")  # type: ignore[misc]
            commits = DeltaTable(str(copy)).history()[: DeltaTable(str(copy)).version() - landed_version]
            if all(commit["timestamp"] > killed_ms for commit in commits):  # the killed run committed nothing
                break
            wait_until(lambda: all_runs_ended(instance), 180, "every run to end")
            landed_version = DeltaTable(str(copy)).version()
        else:
            raise AssertionError("three kills in a row came after the merge's commit")
        retry = _retries(instance, victim)[0]
        assert retry.status == dg.DagsterRunStatus.SUCCESS
        assert _copy_rows(copy) == _source_rows(warehouse, table)

        # The stream is not held up: a later change lands through a later run.
        tables.upsert(warehouse.root, table, _events(1_000, 2), ["event_id"])
        later = launch_ui_run(stack, key)
        wait_until(lambda: instance.get_run_by_id(later).is_finished, 180, "a later run to end")  # type: ignore[union-attr]
        assert instance.get_run_by_id(later).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
        assert _copy_rows(copy) == _source_rows(warehouse, table)
        held = instance.event_log_storage.get_concurrency_run_ids()
        assert victim not in held or _slots_freed_soon(instance, victim)
        print(f"killed worker failed after {detected_s:.1f} s; retry {retry.run_id} succeeded")


def test_runs_left_started_by_a_stopped_stack_are_failed_and_run_again_at_the_next_start(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    table = "zprod_stop.billing.events"
    key = ["zenskar", "zprod_stop", "billing", "events"]
    tables.create_table(warehouse.root, table, _events(ROWS, 0), primary_key=["event_id"])
    project = make_project(tmp_path / "project", warehouse, _streams(table))
    copy = project.copies / "zprod_stop" / "billing" / "events"
    with prod_stack(project) as stack:
        stop_sensor(stack)  # runs here are the test's own
        with instance_of(stack) as instance:
            # the daemon has made its cursors (an earlier session's daemon always has)
            wait_until(lambda: all_runs_ended(instance), 60, "the stack to settle")
            run_id = launch_ui_run(stack, key)
            wait_until(lambda: _worker_pid(instance, run_id) is not None, 120, "the run to start")
        # Everything at once, as a closed terminal or laptop does: nothing is left to fail the run.
        for name in ("webserver", "daemon", "code-server"):
            os.killpg(stack.processes[name].pid, signal.SIGKILL)
        stack.processes.clear()
        stack.postgres.stop(mode="immediate")
        stack.postgres.start()
        with instance_of(stack) as instance:
            # in progress (a crash may lose the cluster's last commits: RUN_START among them)
            status = instance.get_run_by_id(run_id).status  # type: ignore[union-attr]
            assert status in (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED)
        stack.start()  # the next session on the same instance
        assert run_id in [r.run_id for r in stack.recovered]  # with any other run the crash left started
        with instance_of(stack) as instance:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
            wait_until(
                lambda: any(r.is_finished for r in _retries(instance, run_id)), 240, "the retry to end"
            )
            assert _retries(instance, run_id)[0].status == dg.DagsterRunStatus.SUCCESS
            assert _copy_rows(copy) == _source_rows(warehouse, table)

            # Terminate in the UI while the run syncs: it is canceled, not retried, the copy holds a whole
            # version, and the stream's next run is not held up.
            tables.upsert(warehouse.root, table, _events(ROWS, 1), ["event_id"])
            stopped = launch_ui_run(stack, key)
            wait_until(lambda: _holds_stream(instance, stopped), 120, "the run to hold its stream")
            terminate_run(stack, stopped)
            wait_until(lambda: instance.get_run_by_id(stopped).is_finished, 120, "the run to stop")  # type: ignore[union-attr]
            assert instance.get_run_by_id(stopped).status == dg.DagsterRunStatus.CANCELED  # type: ignore[union-attr]
            later = launch_ui_run(stack, key)
            wait_until(lambda: instance.get_run_by_id(later).is_finished, 180, "the next run to end")  # type: ignore[union-attr]
            assert instance.get_run_by_id(later).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
            assert not _retries(instance, stopped)
            assert _copy_rows(copy) == _source_rows(warehouse, table)


def _holds_stream(instance: dg.DagsterInstance, run_id: str) -> bool:
    return any((entry.user_message or "").endswith(HOLDS) for entry in instance.all_logs(run_id))


def _retries(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterRun]:
    records = instance.get_run_records(dg.RunsFilter(tags={PARENT_RUN_TAG: run_id}), ascending=True)
    return [record.dagster_run for record in records]


def _slots_freed_soon(instance: dg.DagsterInstance, run_id: str) -> bool:
    """The daemon frees an ended run's slots a minute after it ended (`free_slots_after_run_end_seconds`)."""
    wait_until(
        lambda: run_id not in instance.event_log_storage.get_concurrency_run_ids(),
        150,
        "the killed run's slots to be freed",
    )
    return True

"""One writer per stream on an instance with storage (the local instance's dagster.yaml, SQLite): a run that
does not go through the run queue (as `zenskar-pipeline sync` runs) waits while another run holds its stream,
takes over a slot whose run has ended, and a new session fails the runs an earlier one left in progress."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from zenskar_devtools.recovery import fail_runs_of_earlier_session
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.defs.stream_lock import HOLDS, lock_key
from zenskar_pipeline.runner import LOCAL_INSTANCE_SETTINGS
from zenskar_pipeline_tests.test_defs.conftest import EVENTS, Project

EVENTS_KEY = dg.AssetKey(["zenskar", *EVENTS.split(".")])


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(LOCAL_INSTANCE_SETTINGS, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _holder(instance: dg.DagsterInstance, status: dg.DagsterRunStatus) -> str:
    """A run of another process holding the stream's slot, as its step does while it writes."""
    run = create_run_for_test(instance, job_name="sync", status=status)
    storage = instance.event_log_storage
    storage.set_concurrency_slots(lock_key(EVENTS), 1)
    assert storage.claim_concurrency_slot(lock_key(EVENTS), run.run_id, "sync_step").is_claimed
    return run.run_id


def _materialize_in_thread(project: Project, instance: dg.DagsterInstance) -> tuple[threading.Thread, list]:
    defs = build_definitions(project.config, project.state, databricks=project.databricks)
    results: list[dg.ExecuteInProcessResult] = []

    def run() -> None:
        asset = defs.resolve_assets_def(EVENTS_KEY)
        results.append(dg.materialize([asset], instance=instance, partition_key="2026-01-02"))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def _waiting(instance: dg.DagsterInstance) -> bool:
    """The new run has said whom it waits for (it is queued for the slot before it looks who holds it: freeing
    the slot as soon as it is queued could leave it nobody to name)."""
    pending = instance.event_log_storage.get_concurrency_info(lock_key(EVENTS)).pending_run_ids
    return any("waiting for run" in message for run in pending for message in _messages(instance, run))


def _messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_a_run_waits_while_another_holds_its_stream(project: Project, instance: dg.DagsterInstance) -> None:
    holder = _holder(instance, dg.DagsterRunStatus.STARTED)
    thread, results = _materialize_in_thread(project, instance)
    deadline = threading.Event()
    while not _waiting(instance) and thread.is_alive():
        deadline.wait(0.1)
    assert thread.is_alive() and not results  # waiting, nothing written
    assert not (project.destination / "zdefs").exists()
    instance.event_log_storage.free_concurrency_slot_for_step(holder, "sync_step")  # the writer is done
    thread.join(timeout=120)
    (result,) = results
    assert result.success
    messages = _messages(instance, result.run_id)
    assert f"{EVENTS}: waiting for run {holder}, which is writing this stream" in messages
    assert f"{EVENTS}{HOLDS}" in messages
    assert not instance.event_log_storage.get_concurrency_info(lock_key(EVENTS)).claimed_slots


def test_a_slot_left_by_a_run_that_ended_is_taken_over(
    project: Project, instance: dg.DagsterInstance
) -> None:
    holder = _holder(instance, dg.DagsterRunStatus.FAILURE)  # its worker was killed before it freed it
    thread, results = _materialize_in_thread(project, instance)
    thread.join(timeout=120)
    (result,) = results
    assert result.success
    assert f"{EVENTS}: freed the stream's slot left by run {holder}, which has ended" in _messages(
        instance, result.run_id
    )


def test_a_new_session_fails_the_runs_an_earlier_one_left_in_progress(instance: dg.DagsterInstance) -> None:
    started = create_run_for_test(instance, job_name="sync", status=dg.DagsterRunStatus.STARTED)
    done = create_run_for_test(instance, job_name="sync", status=dg.DagsterRunStatus.SUCCESS)
    not_started = create_run_for_test(instance, job_name="sync", status=dg.DagsterRunStatus.NOT_STARTED)
    storage = instance.event_log_storage
    storage.set_concurrency_slots("databricks_warehouse", 4)
    storage.claim_concurrency_slot("databricks_warehouse", started.run_id, "sync_step")

    recovered = fail_runs_of_earlier_session(instance)

    assert [r.run_id for r in recovered] == [started.run_id]
    assert instance.get_run_by_id(started.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
    assert instance.get_run_by_id(done.run_id).status == dg.DagsterRunStatus.SUCCESS  # type: ignore[union-attr]
    assert instance.get_run_by_id(not_started.run_id).status == dg.DagsterRunStatus.NOT_STARTED  # type: ignore[union-attr]
    assert started.run_id not in storage.get_concurrency_run_ids()  # its warehouse slot is free again

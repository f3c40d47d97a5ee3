"""Runs left in progress by an earlier session of a one-machine stack (`make dev`, `make prod-local`).

When the whole stack stops at once (Ctrl-C, a closed laptop, a killed terminal), nothing is left to mark its
runs as ended: they read "Started" forever, and the run queue's `zenskar/stream` limit holds every later run
of their streams behind them. On one machine, a new session knows that no worker of an earlier one is alive,
so before its daemon starts it fails those runs (the daemon's run retries then run them again from their
failed step) and frees the pool slots they held. Never use this where workers of the same instance may
still run elsewhere (Kubernetes: there the launcher checks each run worker's health).
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

IN_PROGRESS = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
REASON = "its worker did not survive the end of the earlier session; failed at the start of this one"


@dataclass(frozen=True)
class Recovered:
    run_id: str
    job_name: str
    status: str  # what the run read before


def fail_runs_of_earlier_session(instance: dg.DagsterInstance) -> list[Recovered]:
    """Fail every run that reads in progress, and free what it held; the runs failed, oldest first."""
    records = instance.get_run_records(RunsFilter(statuses=IN_PROGRESS), ascending=True)
    recovered = []
    for record in records:
        run = record.dagster_run
        if run.status == DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message=REASON)
        else:
            instance.report_run_failed(run, message=REASON)
        recovered.append(Recovered(run.run_id, run.job_name, run.status.value))
    # Slots held by runs that ended (the ones above, and any freed by no one before) are given back.
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        ended = {r.run_id for r in recovered}
        for run_id in storage.get_concurrency_run_ids():
            holder = instance.get_run_by_id(run_id)
            if run_id in ended or holder is None or holder.is_finished:
                storage.free_concurrency_slots_for_run(run_id)
    return recovered

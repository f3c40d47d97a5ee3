"""Two Dagster runs of one partition at once, as two deployments without a shared run queue would start them:
the harness of the race tests on local disk (`test_races.py`) and on object stores
(`test_object_store_copies.py`)."""

from __future__ import annotations

import threading
from typing import Any

import dagster as dg

from zenskar_devtools.local_warehouse.faults import FaultKind, FaultRule
from zenskar_devtools.local_warehouse.server import LocalWarehouse

# Every statement waits this long at the warehouse, so that both runs have read the copy's high-water mark
# before either commits (each run's read comes one statement after its planning).
STATEMENT_DELAY_S = 1.5


def race_two_runs(
    warehouse: LocalWarehouse, asset: dg.AssetsDefinition, partition: str
) -> list[dict[str, Any]]:
    """Materialize `partition` of `asset` twice at once, each run on an instance of its own, every warehouse
    statement delayed; the materialization metadata of each run. Fails on any run's error, and unless both
    planned from the same empty copy (a real race, not two runs one after the other)."""
    reports: dict[int, dict[str, Any]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(index: int) -> None:
        try:
            start.wait()
            with dg.DagsterInstance.ephemeral() as instance:  # two deployments: no shared run queue
                result = dg.materialize([asset], instance=instance, partition_key=partition)
            (materialization,) = result.asset_materializations_for_node(result.all_node_events[0].node_name)
            reports[index] = {name: value.value for name, value in materialization.metadata.items()}
        except BaseException as error:
            errors.append(error)

    warehouse.faults.add(
        FaultRule(FaultKind.DELAY, count=None, seconds=STATEMENT_DELAY_S, rpc="ExecuteStatement")
    )
    runs = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=120)
    warehouse.faults.clear()
    assert not errors, errors
    both = [reports[index] for index in range(2)]
    assert [report["cursor_before"] for report in both] == [None, None]
    return both

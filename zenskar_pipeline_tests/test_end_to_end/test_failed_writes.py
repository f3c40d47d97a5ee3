"""A full refresh whose read fails after its first page: `sync` exits 1 with one line naming the stream and
the warehouse's error, the copy keeps its version and rows, and the next sync lands the source whole."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.faults import FaultKind, FaultRule
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline import runner
from zenskar_pipeline.databricks import quote_table
from zenskar_pipeline.databricks.resource import DEFAULT_BATCH_ROWS
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_end_to_end.project import (
    copy_state,
    land,
    new_dagster_home,
    run_cli_in_process,
    secrets_left,
)

CUSTOMERS = "ze2e_fail.billing.customers"
# More rows than one page of the read (the session fetches DEFAULT_BATCH_ROWS at a time), so that the
# warehouse fails it after the first page has reached the writer.
ROWS = DEFAULT_BATCH_ROWS + 10_000


def _customers(plan: str, rows: int = ROWS) -> pa.Table:
    return pa.table({"customer_id": pa.array(range(rows), pa.int64()), "plan": pa.array([plan] * rows)})


def test_a_full_refresh_failing_midway_keeps_the_previous_copy(
    warehouse: LocalWarehouse, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tables.create_table(warehouse.root, CUSTOMERS, _customers("free"))
    config = tmp_path / "streams.yaml"
    config.write_text(
        f"destination: {{uri: destination}}\nstreams:\n  - {{table: {CUSTOMERS}, sync_mode: full_refresh}}\n"
    )
    land(warehouse, config, runner.Selection())
    copy = tmp_path / "destination" / "ze2e_fail" / "billing" / "customers"
    before = copy_state(copy)
    assert len(before.rows) == ROWS

    tables.overwrite(warehouse.root, CUSTOMERS, _customers("pro", ROWS + 1))  # every row changes
    warehouse.faults.add(FaultRule(FaultKind.FAIL_AFTER_ROWS, count=None, rows=DEFAULT_BATCH_ROWS))
    with databricks_resource(warehouse).session() as session:  # the premise: a first page, then the failure
        received: list[int] = []
        with pytest.raises(Exception, match="INJECTED_FAULT"):
            for batch in session.query_batches(f"SELECT * FROM {quote_table(*CUSTOMERS.split('.'))}"):
                received.append(batch.num_rows)
    assert sum(received) == DEFAULT_BATCH_ROWS
    home = new_dagster_home(tmp_path / "dagster_home")
    env = {**warehouse.info.env(), "DAGSTER_HOME": str(home)}
    result = run_cli_in_process("sync", "--config", str(config), env=env)
    warehouse.faults.clear()
    assert result.returncode == 1
    assert result.error_lines == [
        f"{CUSTOMERS}: [INJECTED_FAULT] The statement failed after {DEFAULT_BATCH_ROWS} rows, as the test "
        "asked. SQLSTATE: 58000"
    ]
    assert copy_state(copy) == before
    outputs = [result.stdout, result.stderr, caplog.text]
    assert secrets_left([warehouse.info.access_token], outputs=outputs, folders=[tmp_path]) == []

    land(warehouse, config, runner.Selection())
    after = copy_state(copy)
    assert after.version == before.version + 1
    assert len(after.rows) == ROWS + 1

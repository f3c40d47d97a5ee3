"""Bad input met at sync time: a misspelt table is not pointed at a table another stream copies, and a copy
that cannot be written is named with its path and the setting to change."""

from __future__ import annotations

from pathlib import Path

import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline_tests.test_end_to_end.landed_copies import (
    CUSTOMERS,
    EVENTS,
    LandedCopies,
    land_copies,
    write_source_tables,
    write_streams,
)
from zenskar_pipeline_tests.test_end_to_end.project import run_cli_in_process


@pytest.fixture(scope="module")
def landed(warehouse: LocalWarehouse, tmp_path_factory: pytest.TempPathFactory) -> LandedCopies:
    return land_copies(warehouse, tmp_path_factory.mktemp("landed"))


def test_a_misspelt_table_is_not_pointed_at_another_stream(
    landed: LandedCopies, warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    misspelt = CUSTOMERS.removesuffix("s")  # the table exists as ...customers, next to the events
    config = write_streams(tmp_path, landed.streams_text((f"table: {CUSTOMERS}", f"table: {misspelt}")))
    result = run_cli_in_process("sync", "--config", str(config), env=warehouse.info.env())
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr
    (line,) = result.error_lines
    assert line.startswith(f"streams file {config}: stream {misspelt}: table: not found"), line
    # Discovery only reads the tables the file names, so the real neighbour is not a candidate; the table
    # the other stream copies must not be offered instead.
    assert EVENTS not in line
    assert f"did you mean '{CUSTOMERS}'?" in line or "check the name" in line
    assert landed.now() == landed.before


def test_an_unwritable_copy_is_named_with_the_setting_to_check(
    warehouse: LocalWarehouse, tmp_path: Path
) -> None:
    write_source_tables(warehouse.root)
    destination = tmp_path / "destination"
    blocked = destination / "ze2e_bad" / "billing" / "customers"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where the customers copy would go")
    config = write_streams(tmp_path / "project", LandedCopies(destination, {}).streams_text())
    result = run_cli_in_process(
        "sync",
        "--config",
        str(config),
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-03",
        env=warehouse.info.env(),
    )
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr
    (line,) = result.error_lines
    assert line.startswith(f"{CUSTOMERS}: "), line
    assert str(blocked) in line and "destination.uri" in line, line
    events = DeltaTable(str(destination / "ze2e_bad" / "billing" / "usage_events"))
    assert events.to_pyarrow_table().num_rows == 9  # the other stream still landed

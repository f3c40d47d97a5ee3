"""`zenskar-pipeline sync` given bad input: exit 1 with one line naming the stream, the setting and the fix
(or the variable to check), in seconds, no secret shown; the copies landed before keep version and rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline_tests.test_end_to_end.landed_copies import (
    CUSTOMERS,
    EVENTS,
    LandedCopies,
    land_copies,
    write_streams,
)
from zenskar_pipeline_tests.test_end_to_end.project import (
    connection_files,
    new_dagster_home,
    run_cli,
    run_cli_in_process,
    secrets_left,
    user_env,
)

WRONG_TOKEN = "dapi-wrong-0123456789abcdef0123456789ab"


@pytest.fixture(scope="module")
def landed(warehouse: LocalWarehouse, tmp_path_factory: pytest.TempPathFactory) -> LandedCopies:
    return land_copies(warehouse, tmp_path_factory.mktemp("landed"))


# Streams-file problems run the command in process: a new interpreter would only add seconds of imports.
# Connection failures run it as a separate process, where the connector's own logging would show.


@pytest.mark.parametrize(
    ("edit", "where", "setting", "fix"),
    [
        pytest.param(
            ("sync_mode: incremental_append", "sync_mode: incremental_apend"),
            f"stream {EVENTS}",
            "sync_mode",
            "did you mean 'incremental_append'?",
            id="misspelt-mode",
        ),
        pytest.param(
            ("cursor_field: updated_at", "cursor_feild: updated_at"),
            f"stream {EVENTS}",
            "cursor_feild",
            "did you mean 'cursor_field'?",
            id="misspelt-key",
        ),
        pytest.param(
            ('start: "2026-01-01"', 'start: "2026-01-01-13:00"'),
            f"stream {EVENTS}",
            "partitions.start",
            "write '2026-01-01' (YYYY-MM-DD)",
            id="bad-start",
        ),
        pytest.param(
            (f"table: {CUSTOMERS}", f"table: '{CUSTOMERS}; DROP TABLE x'"),
            "streams[1]",
            "table",
            "write catalog.schema.table, such as main.billing.usage_events",
            id="table-name-carrying-sql",
        ),
    ],
)
def test_a_bad_streams_file_stops_sync_before_it_reaches_the_warehouse(
    landed: LandedCopies,
    warehouse: LocalWarehouse,
    tmp_path: Path,
    edit: tuple[str, str],
    where: str,
    setting: str,
    fix: str,
) -> None:
    config = write_streams(tmp_path, landed.streams_text(edit))
    result = run_cli_in_process("sync", "--config", str(config), env=warehouse.info.env())
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr
    (line,) = result.error_lines
    assert line.startswith(f"streams file {config}: {where}: {setting}: "), line
    assert fix in line
    assert result.stdout == ""
    assert not (tmp_path / ".zenskar-pipeline").exists()  # discovery never ran: no statement was sent
    assert landed.now() == landed.before


@pytest.mark.parametrize(
    ("edit", "stream", "setting", "fix"),
    [
        pytest.param(
            ("cursor_field: updated_at", "cursor_field: updatedat"),
            EVENTS,
            "cursor_field",
            f"'updatedat' is not a column of {EVENTS}; did you mean 'updated_at'?",
            id="unknown-column",
        ),
        pytest.param(
            (
                "sync_mode: full_refresh",
                "sync_mode: incremental_append_deduped\n    cursor_field: updated_at",
            ),
            CUSTOMERS,
            "primary_key",
            "set primary_key ('customer_id' looks like one)",
            id="deduped-without-key",
        ),
    ],
)
def test_a_stream_the_source_cannot_serve_stops_sync_before_anything_lands(
    landed: LandedCopies,
    warehouse: LocalWarehouse,
    tmp_path: Path,
    edit: tuple[str, str],
    stream: str,
    setting: str,
    fix: str,
) -> None:
    config = write_streams(tmp_path, landed.streams_text(edit))
    result = run_cli_in_process("sync", "--config", str(config), env=warehouse.info.env())
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr
    (line,) = result.error_lines
    assert line.startswith(f"streams file {config}: stream {stream}: {setting}: "), line
    assert fix in line
    assert result.stdout == ""
    assert landed.now() == landed.before


@pytest.mark.parametrize(
    ("wrong", "reason", "variable"),
    [
        pytest.param(
            {"DATABRICKS_TOKEN": WRONG_TOKEN},
            "the warehouse rejected the credentials (HTTP 401)",
            "DATABRICKS_TOKEN",
            id="wrong-token",
        ),
        pytest.param(
            {"DATABRICKS_SERVER_HOSTNAME": "no-such-workspace.invalid"},
            "cannot resolve the host 'no-such-workspace.invalid'",
            "DATABRICKS_SERVER_HOSTNAME",
            id="unreachable-host",
        ),
        pytest.param(
            {"DATABRICKS_HTTP_PATH": "/sql/1.0/warehouses/nope"},
            "no SQL warehouse at that HTTP path (HTTP 404)",
            "DATABRICKS_HTTP_PATH",
            id="wrong-http-path",
        ),
    ],
)
def test_a_wrong_connection_setting_fails_in_seconds_naming_the_variable(
    landed: LandedCopies,
    warehouse: LocalWarehouse,
    tmp_path: Path,
    wrong: dict[str, str],
    reason: str,
    variable: str,
) -> None:
    token_env, _ = connection_files(warehouse)
    home = new_dagster_home(tmp_path / "dagster_home")
    config = write_streams(tmp_path / "project", landed.streams_text())
    env = user_env({**token_env, **wrong}, dagster_home=home)
    # The timeout only guards against a hang; the connector's retry loop alone would take minutes.
    result = run_cli("sync", "--config", str(config), env=env, cwd=config.parent, timeout=60)
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr  # no log lines of the connector besides ours
    (line,) = result.error_lines
    assert line.startswith("cannot discover tables: ") and reason in line, line
    assert f"; check {variable}" in line
    assert result.seconds < 60
    secrets = [token_env["DATABRICKS_TOKEN"], WRONG_TOKEN]
    outputs = [result.stdout, result.stderr]
    assert secrets_left(secrets, outputs=outputs, folders=[home, config.parent]) == []
    assert landed.now() == landed.before

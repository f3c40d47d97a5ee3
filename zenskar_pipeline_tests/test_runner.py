"""`zenskar-pipeline sync` and `reset` run as a user runs them (separate processes) against the local
warehouse, and the demo, in process, with small tables."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from zenskar_devtools.demo import run_demo
from zenskar_devtools.local_warehouse.seed import demo_start
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.runner import LOCAL_INSTANCE_SETTINGS
from zenskar_pipeline_tests.test_defs.conftest import CUSTOMERS, EVENTS, source_tables

CLI = [sys.executable, "-m", "zenskar_pipeline.cli"]
REPO = Path(__file__).resolve().parent.parent

STREAMS = """\
destination:
  uri: {uri}
streams:
  - table: {events}
    sync_mode: incremental_append_deduped
    cursor_field: updated_at
    primary_key: [event_id]
    partitions:
      field: event_time
      granularity: daily
      start: "2026-01-01"
  - table: {customers}
    sync_mode: full_refresh
    partitions: null
"""


class Project:
    def __init__(self, warehouse: LocalWarehouse, folder: Path) -> None:
        source_tables(warehouse.root)
        self.folder = folder
        self.destination = folder / "destination"
        self.config = folder / "streams.yaml"
        text = STREAMS.format(uri=self.destination, events=EVENTS, customers=CUSTOMERS)
        self.config.write_text(textwrap.dedent(text))
        self.token = warehouse.info.access_token
        self.env = {**os.environ, **warehouse.info.env(), "TZ": "UTC"}
        self.env.pop("DAGSTER_HOME", None)  # a temporary instance per run

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*CLI, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.folder,
            timeout=300,
        )
        assert self.token not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        return result

    def landed(self, table: str) -> int:
        return DeltaTable(str(self.destination / "zdefs" / "billing" / table)).to_pyarrow_table().num_rows


@pytest.fixture
def project(warehouse: LocalWarehouse, tmp_path: Path) -> Project:
    return Project(warehouse, tmp_path)


def test_sync_lands_everything_then_nothing_new(project: Project) -> None:
    first = project.run("sync")
    assert first.returncode == 0, first.stderr
    assert f"-> {EVENTS}: 2026-01-01.." in first.stdout
    assert "rows read  rows written  seconds  status" in first.stdout
    assert project.landed("usage_events") == 6 and project.landed("customers") == 2
    summary = {
        line.split()[0]: line.split() for line in first.stdout.splitlines() if line.startswith("zdefs.")
    }
    assert summary[EVENTS][-3:-2] == ["6"] and summary[EVENTS][-1] == "ok"
    assert summary[CUSTOMERS][-3:-2] == ["2"]
    again = project.run("sync")
    assert again.returncode == 0, again.stderr
    assert f"{EVENTS}: 0 rows written" in again.stdout
    assert project.landed("usage_events") == 6 and project.landed("customers") == 2


def test_sync_on_an_empty_dagster_home_prints_no_first_run_banner_and_keeps_its_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = project.folder / "dagster_home"
    home.mkdir()
    project.env["DAGSTER_HOME"] = str(home)
    result = project.run("sync", "--select", CUSTOMERS)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "No dagster instance configuration file" not in output
    assert "Telemetry" not in output and "Welcome to Dagster" not in output
    assert project.landed("customers") == 2
    # The folder is now a local instance like make dev's: its settings written, the run kept there.
    assert (home / "dagster.yaml").read_text() == LOCAL_INSTANCE_SETTINGS.read_text()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the settings keep the storage under DAGSTER_HOME
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [run.status for run in instance.get_runs()] == [dg.DagsterRunStatus.SUCCESS]


def test_sync_one_partition_a_range_and_a_selection(project: Project) -> None:
    one = project.run("sync", "--select", "*.usage_events", "--partition", "2026-01-02")
    assert one.returncode == 0, one.stderr
    assert project.landed("usage_events") == 2
    assert not (project.destination / "zdefs" / "billing" / "customers").exists()
    assert CUSTOMERS not in one.stdout
    ranged = project.run(
        "sync", "--select", "zdefs.billing.usage_*", "--from", "2026-01-01", "--to", "2026-01-03"
    )
    assert ranged.returncode == 0, ranged.stderr
    assert "2026-01-01..2026-01-03 (3)" in ranged.stdout
    assert project.landed("usage_events") == 6


def test_bad_options_and_selections_say_what_is_wrong(project: Project) -> None:
    nothing = project.run("sync", "--select", "nope.*")
    assert nothing.returncode == 1 and "matches no stream" in nothing.stderr
    half = project.run("sync", "--from", "2026-01-01")
    assert half.returncode == 1 and "--from and --to go together" in half.stderr
    unknown = project.run("sync", "--select", EVENTS, "--partition", "2025-01-01")
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == [
        f"{EVENTS}: '2025-01-01' is not one of its partitions "
        + unknown.stderr.split("is not one of its partitions ", 1)[1].strip()
    ]


def test_a_failing_stream_exits_1_with_one_line_naming_it(project: Project) -> None:
    blocked = project.destination / "zdefs" / "billing" / "customers"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("not a Delta table folder")  # the copy cannot be written
    result = project.run("sync")
    assert result.returncode == 1
    failures = result.stderr.strip().splitlines()
    assert len(failures) == 1 and failures[0].startswith(f"{CUSTOMERS}:"), result.stderr
    assert project.landed("usage_events") == 6  # the other stream still ran


def test_reset_removes_the_copy_and_the_next_sync_lands_it_again(project: Project) -> None:
    assert project.run("sync", "--select", CUSTOMERS).returncode == 0
    copy = project.destination / "zdefs" / "billing" / "customers"
    assert copy.exists()
    unknown = project.run("reset", "zdefs.billing.customer", "--yes")
    assert unknown.returncode == 1 and f"did you mean {CUSTOMERS}?" in unknown.stderr
    declined = subprocess.run(
        [*CLI, "reset", CUSTOMERS, "--config", str(project.config)],
        input="n\n",
        capture_output=True,
        text=True,
        env=project.env,
        cwd=project.folder,
    )
    assert declined.returncode == 1 and copy.exists()
    reset = project.run("reset", CUSTOMERS, "--yes")
    assert reset.returncode == 0, reset.stderr
    assert not copy.exists()
    assert project.run("sync", "--select", CUSTOMERS).returncode == 0
    assert project.landed("customers") == 2


def test_the_demo_lands_every_demo_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copyfile(REPO / "streams.yaml", tmp_path / "streams.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ZENSKAR_PIPELINE_DESTINATION", raising=False)
    monkeypatch.delenv("ZENSKAR_PIPELINE_STATE", raising=False)
    monkeypatch.delenv("ZENSKAR_DEMO_START", raising=False)  # the demo sets it: restored afterwards
    assert run_demo(tmp_path / "wh", rows=2000, config_file=tmp_path / "streams.yaml", dagster_home="") == 0
    out = capsys.readouterr().out
    for table in ("main/billing/usage_events", "main/billing/customers", "main/metering/compute_hours"):
        copy = tmp_path / "data" / "destination" / table
        assert DeltaTable(str(copy)).to_pyarrow_table().num_rows > 0
        assert str(copy) in out
    assert "make dev" in out
    # The partitions start where the seeded data does, and the demo says what it filled and how to fill
    # the rest: the change feed's first run snapshots every partition; compute hours ran its last 7 days.
    start = os.environ["ZENSKAR_DEMO_START"]
    assert start == demo_start(tmp_path / "wh")
    days = (dt.datetime.now(dt.UTC).date() - dt.date.fromisoformat(start)).days + 1
    assert f"main.billing.usage_events: {days} of {days} partitions filled ({start}.." in out
    assert f"main.metering.compute_hours: 7 of {days} partitions filled ({start}.." in out
    assert "main.billing.customers: copied whole" in out
    before = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=7)).isoformat()
    assert f"zenskar-pipeline sync --select main.metering.compute_hours --from {start} --to {before}" in out
    assert "set -a; . wh/.warehouse/connection.env; set +a" in out  # make dev's warehouse, from the cwd
    assert f"ZENSKAR_DEMO_START={start} " in out

"""What the end-to-end tests share: the command run as a user runs it, copies landed beforehand through the
runner, a copy's state to compare, and scans for secrets left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from click.testing import CliRunner
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline import runner
from zenskar_pipeline.cli import main
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.state import save_state
from zenskar_pipeline.streams import load_config, validate_streams
from zenskar_pipeline_tests.conftest import databricks_resource

REPO = Path(__file__).resolve().parents[2]
COMMAND = str(Path(sys.executable).with_name("zenskar-pipeline"))  # the console script a user runs
# The bearer tokens the local warehouse's OAuth endpoint hands a service principal: secrets too.
ISSUED_OAUTH_TOKEN = re.compile(rb"local-oauth-[0-9a-f]{32}")
_USER_PREFIXES = ("DATABRICKS_", "ZENSKAR_PIPELINE_", "DAGSTER_HOME")  # what a user's environment sets


def user_env(connection: Mapping[str, str], dagster_home: Path | None = None) -> dict[str, str]:
    """This process's environment without DATABRICKS_*, ZENSKAR_PIPELINE_* or DAGSTER_HOME, plus `connection`
    (the variables a user exports) and `dagster_home` when given."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(_USER_PREFIXES)}
    env.update(connection)
    env["TZ"] = "UTC"
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


def connection_files(warehouse: LocalWarehouse) -> tuple[dict[str, str], dict[str, str]]:
    """The variables in `connection.env` (token) and `oauth.env` (service principal), as `serve` writes."""
    token_file = warehouse.write_connection_env()

    def read(path: Path) -> dict[str, str]:
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)

    return read(token_file), read(token_file.with_name("oauth.env"))


def new_dagster_home(folder: Path) -> Path:
    """A Dagster home as `make dev` prepares one: the local instance's dagster.yaml in an empty folder."""
    folder.mkdir(parents=True, exist_ok=True)
    runner.write_instance_settings(folder, replace=True)
    return folder


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_cli(*args: str, env: Mapping[str, str], cwd: Path, timeout: float = 120) -> CliRun:
    """`zenskar-pipeline ARGS` as a separate process; `timeout` only guards against a hang."""
    started = time.monotonic()
    done = subprocess.run(
        [COMMAND, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def run_cli_in_process(*args: str, env: Mapping[str, str]) -> CliRun:
    """The same command through click's test runner in this process, with `env` as the only DATABRICKS_*,
    ZENSKAR_PIPELINE_* and DAGSTER_HOME, where a separate interpreter would only add seconds of imports.
    Its stderr holds the command's own lines; logging goes to pytest, so tests of what a process prints
    through logging use `run_cli`."""
    unset: dict[str, str | None] = {name: None for name in os.environ if name.startswith(_USER_PREFIXES)}
    started = time.monotonic()
    result = CliRunner().invoke(main, list(args), env={**unset, **env}, catch_exceptions=False)
    return CliRun(result.exit_code, result.stdout, result.stderr, time.monotonic() - started)


@dataclass(frozen=True)
class CopyState:
    """A Delta copy as a user compares it: its version and every row, system columns included."""

    version: int
    rows: list[tuple[Any, ...]]


def copy_state(path: Path) -> CopyState:
    table = DeltaTable(str(path))
    data = table.to_pyarrow_table()
    columns = sorted(data.column_names)
    rows = sorted((tuple(row[name] for name in columns) for row in data.to_pylist()), key=repr)
    return CopyState(table.version(), rows)


def land(
    warehouse: LocalWarehouse, config_file: Path, selection: runner.Selection
) -> list[runner.StreamResult]:
    """Discover and sync every stream of `config_file` through the runner in this process: the setup of
    tests whose subject is a later run."""
    config = load_config(config_file, env={})
    databricks = databricks_resource(warehouse)
    with databricks.session() as session:
        state = discover_tables(session, config)
    save_state(state, config.state_path)
    defs = build_definitions(config, state, databricks=databricks)
    plans = [runner.plan_stream(stream, selection) for stream in validate_streams(config, state)]
    with dg.DagsterInstance.ephemeral() as instance:
        results = runner.run_streams(defs, plans, instance)
    assert all(result.ok for result in results), results
    return results


def secrets_left(
    secrets: Iterable[str], *, outputs: Iterable[str] = (), folders: Iterable[Path] = ()
) -> list[str]:
    """Where any of `secrets`, or a bearer token the local warehouse issued, shows up: in one of `outputs`
    (captured stdout and stderr) or in any file under `folders` (read as bytes: SQLite, logs, Delta logs)."""
    needles = [secret.encode() for secret in secrets if secret]
    found: list[str] = []

    def scan(where: str, data: bytes) -> None:
        found.extend(f"{where}: secret #{i}" for i, needle in enumerate(needles) if needle in data)
        if ISSUED_OAUTH_TOKEN.search(data):
            found.append(f"{where}: an issued OAuth token")

    for index, output in enumerate(outputs):
        scan(f"output #{index}", output.encode())
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                scan(str(path), path.read_bytes())
    return found


def files_holding(folder: Path, text: str) -> list[Path]:
    """The files under `folder` whose bytes hold `text`: shows that a scan reads what a run recorded."""
    needle = text.encode()
    return [path for path in sorted(folder.rglob("*")) if path.is_file() and needle in path.read_bytes()]

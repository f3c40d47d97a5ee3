"""Copies on object stores, end to end through Dagster, against moto's S3 and Azurite on loopback with
their credentials in the environment as a user exports them: `sync` lands there and `reset` deletes there,
leaving no secret in the output, the Dagster home or the store; bad store settings fail `sync` in seconds
with one line per stream naming the variable, and change nothing landed; two runs of one partition at once
land each row once."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_pipeline.databricks.discovery import discover_tables
from zenskar_pipeline.defs import build_definitions
from zenskar_pipeline.destinations import DeltaDestinationResource
from zenskar_pipeline.destinations.resource import SECRET_FIELDS, STORAGE_VARIABLES
from zenskar_pipeline.streams import load_config
from zenskar_pipeline_tests.conftest import databricks_resource
from zenskar_pipeline_tests.test_end_to_end.project import (
    new_dagster_home,
    run_cli_in_process,
    secrets_left,
)
from zenskar_pipeline_tests.test_end_to_end.races import race_two_runs

EVENTS = "ze2e_store.metering.events"
COPY = "ze2e_store/metering/events"
COPY_KEY = dg.AssetKey(["zenskar", "ze2e_store", "metering", "events"])
PARTITION = "2026-01-02"
STREAMS = """\
destination:
  uri: {uri}
streams:
  - table: {events}
    sync_mode: incremental_append
    cursor_field: read_at
    partitions: {{granularity: daily, start: "2026-01-01"}}
"""


def _events() -> pa.Table:
    """Keyless meter readings on 2026-01-02, two of them identical: a multiset the copy must hold exactly."""
    start = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    rows = [
        {"meter": f"m{i % 7}", "read_at": start + dt.timedelta(minutes=i), "value": i} for i in range(200)
    ]
    return pa.Table.from_pylist([*rows, dict(rows[0])])


@pytest.fixture(scope="module")
def source(warehouse: LocalWarehouse) -> pa.Table:
    events = _events()
    if not (warehouse.root / EVENTS.split(".")[0]).exists():
        tables.create_table(warehouse.root, EVENTS, events)
    return events


@dataclass(frozen=True)
class Store:
    """A bucket or container of its own on a store the session started: its url, the variables a user
    exports for it, and the objects under a prefix."""

    url: str
    env: dict[str, str]
    objects: Callable[[str], dict[str, bytes]]

    @property
    def secrets(self) -> list[str]:
        return [value for name, value in self.env.items() if name.lower() in SECRET_FIELDS]

    def resource(self) -> DeltaDestinationResource:
        fields = {name: self.env.get(variable) for name, variable in STORAGE_VARIABLES.items()}
        return DeltaDestinationResource(**{name: value for name, value in fields.items() if value})

    def copy_rows(self) -> pa.Table:
        return DeltaTable(
            f"{self.url}/{COPY}", storage_options=self.resource().storage_options()
        ).to_pyarrow_table()


@pytest.fixture(params=["s3", "azure"])
def store(request: pytest.FixtureRequest) -> Store:
    name = f"lake-{uuid.uuid4().hex[:12]}"
    if request.param == "s3":
        s3 = request.getfixturevalue("s3_store")
        s3.create_bucket(name)
        return Store(f"s3://{name}", s3.env(), lambda prefix: s3.objects(name, prefix))
    azurite = request.getfixturevalue("azurite")
    azurite.create_container(name)
    url = f"abfss://{name}@{azurite.account}.dfs.core.windows.net"
    return Store(url, azurite.env(), lambda prefix: azurite.objects(name, prefix))


def _project(folder: Path, store: Store) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "streams.yaml"
    config.write_text(STREAMS.format(uri=store.url, events=EVENTS))
    return config


def _sync(config: Path, env: dict[str, str], home: Path) -> Any:
    args = ["sync", "--config", str(config), "--partition", PARTITION]
    return run_cli_in_process(*args, env={**env, "DAGSTER_HOME": str(home)})


def test_sync_lands_on_the_store_reset_deletes_it_and_no_secret_is_left(
    source: pa.Table,
    warehouse: LocalWarehouse,
    store: Store,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _project(tmp_path / "project", store)
    home = new_dagster_home(tmp_path / "dagster_home")
    env = {**warehouse.info.env(), **store.env}
    first = _sync(config, env, home)
    assert first.returncode == 0, first.stderr
    assert store.copy_rows().num_rows == source.num_rows
    again = _sync(config, env, home)  # nothing new: nothing lands twice
    assert again.returncode == 0, again.stderr
    assert store.copy_rows().num_rows == source.num_rows
    landed = store.objects("")
    assert landed and all(key.startswith(COPY + "/") for key in landed)  # no probe left behind

    reset = run_cli_in_process("reset", EVENTS, "--yes", "--config", str(config), env=env)
    assert reset.returncode == 0, reset.stderr
    assert store.objects("") == {}

    captured = capfd.readouterr()
    outputs = [
        first.stdout,
        first.stderr,
        again.stdout,
        reset.stdout,
        captured.out,
        captured.err,
        caplog.text,
    ]
    outputs += [data.decode(errors="replace") for data in landed.values()]  # the Delta log and data files
    secrets = [*store.secrets, warehouse.info.access_token]
    assert secrets_left(secrets, outputs=outputs, folders=[home, config.parent]) == []


def _wrong(store: Store, case: str) -> tuple[dict[str, str], str, str]:
    """(the environment, the variable the line names, what it says) for one kind of bad store setting."""
    env = dict(store.env)
    if case == "wrong-key":
        name = next(variable for variable in env if variable.lower() in SECRET_FIELDS)
        env[name] = env[name][:-8] + ("AAAAAAA=" if env[name].endswith("=") else "wrongkey")
        return env, name, "the store refused the credentials (HTTP 403"
    if case == "missing-bucket":
        return env, "destination.uri", "does not exist (HTTP 404"
    endpoint = "AWS_ENDPOINT_URL" if "AWS_ENDPOINT_URL" in env else "AZURE_STORAGE_ENDPOINT"
    host = env[endpoint].split("://")[1].split("/")[0]
    env[endpoint] = env[endpoint].replace(host, "127.0.0.1:9")  # the discard port: nothing listens
    return env, endpoint, "the connection was refused"


@pytest.mark.parametrize("case", ["wrong-key", "missing-bucket", "unreachable-endpoint"])
def test_bad_store_settings_fail_sync_in_seconds_and_change_nothing_landed(
    source: pa.Table, warehouse: LocalWarehouse, store: Store, tmp_path: Path, case: str
) -> None:
    config = _project(tmp_path / "project", store)
    home = new_dagster_home(tmp_path / "dagster_home")
    landed = _sync(config, {**warehouse.info.env(), **store.env}, home)
    assert landed.returncode == 0, landed.stderr
    before = store.objects("")

    env, variable, reason = _wrong(store, case)
    if case == "missing-bucket":
        scheme, rest = store.url.split("://", 1)
        config.write_text(STREAMS.format(uri=f"{scheme}://no-such-{rest}", events=EVENTS))
    result = _sync(config, {**warehouse.info.env(), **env}, home)
    assert result.returncode == 1
    assert len(result.error_lines) == 1, result.stderr
    (line,) = result.error_lines
    assert line.startswith(f"{EVENTS}: cannot write the copy at "), line
    assert reason in line and variable in line, line
    assert result.seconds < 30  # a whole sync through Dagster; the probe itself gives up within 4 s
    assert store.objects("") == before
    secrets = [*store.secrets, *(value for name, value in env.items() if name.lower() in SECRET_FIELDS)]
    assert secrets_left(secrets, outputs=[result.stdout, result.stderr], folders=[home]) == []


def test_two_runs_of_one_partition_at_once_land_each_row_once(
    source: pa.Table, warehouse: LocalWarehouse, store: Store, tmp_path: Path
) -> None:
    """As `test_races.py` on local disk: both runs plan from the same empty copy, on the store."""
    config = load_config(_project(tmp_path, store), env={})
    databricks = databricks_resource(warehouse)
    with databricks.session() as session:
        state = discover_tables(session, config)
    definitions = build_definitions(config, state, databricks=databricks, destination=store.resource())
    asset = definitions.resolve_assets_def(COPY_KEY)

    reports = race_two_runs(warehouse, asset, PARTITION)

    columns = source.column_names
    landed = store.copy_rows().select(columns).to_pylist()
    assert Counter(tuple(row[c] for c in columns) for row in landed) == Counter(
        tuple(row[c] for c in columns) for row in source.to_pylist()
    )
    assert sorted(report["rows_written"] for report in reports) == [0, source.num_rows]

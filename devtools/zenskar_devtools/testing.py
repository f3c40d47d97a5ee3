"""The pytest plugin that every test tree of the project shares: one local warehouse per test session.

Registered under the `pytest11` entry-point group, so pytest loads it wherever zenskar-pipeline-devtools is
installed, for the product's tests and the warehouse's own alike; no conftest copies it. Fixtures:
`warehouse` (the session's `LocalWarehouse`, served over HTTPS to the real databricks-sql-connector; faults
a test switched on are cleared after it) and `cursor` (on a fresh `connect(warehouse.info)`); object stores on
loopback, each started once per session when a test first asks for it (`object_stores.py`): `s3_store` (moto's
S3, checking keys), `unconditional_s3_store` (one that ignores conditional writes) and `azurite`; and
`zenskar_api`, a local Zenskar usage API of the test's own (`zenskar_api/`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from zenskar_devtools.local_warehouse.server import ConnectionInfo, LocalWarehouse
    from zenskar_devtools.object_stores import AzuriteServer, S3Server
    from zenskar_devtools.zenskar_api import LocalZenskarApi


def pytest_configure(config: pytest.Config) -> None:
    # Whatever the tests start (the CLI, Dagster, the live writer) runs in UTC, as the warehouse's sessions
    # do and as `make` runs everything, whichever time zone the machine is in.
    os.environ["TZ"] = "UTC"


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWarehouse]:
    """One local warehouse for the whole session, on an empty root of its own; tests add their tables."""
    # Imported here, not at the top: pytest loads this plugin in every run, also runs that need no warehouse.
    from zenskar_devtools.local_warehouse.server import LocalWarehouse

    root = tmp_path_factory.mktemp("warehouse")
    server = LocalWarehouse(root, idle_timeout_s=60)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "warehouse" in request.fixturenames:
        request.getfixturevalue("warehouse").faults.clear()


def connect(info: ConnectionInfo, **kwargs: Any) -> Any:
    """A plain `databricks.sql.connect` with the printed settings, as a user would write it."""
    from databricks import sql

    options: dict[str, Any] = {
        "server_hostname": info.server_hostname,
        "port": info.port,
        "http_path": info.http_path,
        "access_token": info.access_token,
        "_tls_trusted_ca_file": info.tls_ca_file,
        "enable_telemetry": False,
    }
    options.update(kwargs)
    return sql.connect(**options)


@pytest.fixture
def cursor(warehouse: LocalWarehouse) -> Iterator[Any]:
    """A cursor on a fresh connection to the session's warehouse, closed after the test."""
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        yield cur


@pytest.fixture(scope="session")
def s3_store() -> Iterator[S3Server]:
    """moto's S3 server for the session; every request must carry its access key."""
    from zenskar_devtools.object_stores import start_s3

    server = start_s3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def unconditional_s3_store() -> Iterator[S3Server]:
    """An S3-compatible store that ignores conditional writes (If-None-Match), as some do."""
    from zenskar_devtools.object_stores import start_s3

    server = start_s3(checks_keys=False, conditional_writes=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[AzuriteServer]:
    """Azurite's Blob service for the session, with a storage account and key of its own."""
    from zenskar_devtools.object_stores import start_azurite

    server = start_azurite()
    yield server
    server.stop()


@pytest.fixture
def zenskar_api(tmp_path: Path) -> Iterator[LocalZenskarApi]:
    """A local Zenskar usage API for this test alone, served in-process and stopped after it; the test
    defines its usage events (`zenskar_api.define`) and reads back what arrived (`zenskar_api.events()`)."""
    from zenskar_devtools.zenskar_api import LocalZenskarApi

    with LocalZenskarApi(tmp_path / "zenskar-api").start() as api:
        yield api

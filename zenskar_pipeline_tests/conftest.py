"""One local warehouse per test session, served over HTTPS to the real databricks-sql-connector."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from databricks import sql

from zenskar_devtools.local_warehouse.server import ConnectionInfo, LocalWarehouse
from zenskar_pipeline.databricks import DatabricksResource

os.environ["TZ"] = "UTC"


@pytest.fixture(scope="session")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWarehouse]:
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


def databricks_resource(warehouse: LocalWarehouse) -> DatabricksResource:
    """The product's connection resource, pointed at the session's warehouse with its token."""
    info = warehouse.info
    return DatabricksResource(
        server_hostname=info.server_hostname,
        port=info.port,
        http_path=info.http_path,
        access_token=info.access_token,
        tls_ca_file=info.tls_ca_file,
    )


@pytest.fixture
def warehouse_root(warehouse: LocalWarehouse) -> Path:
    return warehouse.root


@pytest.fixture
def cursor(warehouse: LocalWarehouse) -> Iterator[Any]:
    """A cursor on a fresh connection to the session's warehouse, closed after the test."""
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        yield cur

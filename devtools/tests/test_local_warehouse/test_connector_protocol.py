"""Auth, OAuth M2M, async statements, cancelling, clean-up and injected faults, through the connector."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
import urllib.request
from typing import Any

import pyarrow as pa
import pytest
from databricks.sql.exc import DatabaseError, RequestError, ServerOperationError
from urllib3.exceptions import MaxRetryError

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.faults import FaultKind, FaultRule
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.testing import connect

# Fast retries so that a retried request costs a fraction of a second.
FAST_RETRIES = {
    "_retry_delay_min": 0.1,
    "_retry_delay_max": 5,
    "_retry_delay_default": 1,
    "_retry_stop_after_attempts_count": 5,
    "_retry_stop_after_attempts_duration": 30,
}
LONG_QUERY = "SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = -1"


@pytest.fixture(scope="module")
def numbers(warehouse: LocalWarehouse) -> str:
    ids = pa.array(range(50_000), pa.int64())
    tables.create_table(warehouse.root, "main.proto.numbers", pa.table({"id": ids}))
    return "main.proto.numbers"


def test_wrong_or_missing_token_is_refused_at_once(warehouse: LocalWarehouse) -> None:
    started = time.monotonic()
    with pytest.raises(RequestError, match="Invalid access token"):
        connect(warehouse.info, access_token="dapi-wrong")
    assert time.monotonic() - started < 10
    request = urllib.request.Request(
        f"https://localhost:{warehouse.info.port}{warehouse.info.http_path}", data=b"x", method="POST"
    )
    context = ssl.create_default_context(cafile=warehouse.info.tls_ca_file)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=context)
    assert refused.value.code == 401
    assert refused.value.headers["x-databricks-reason-phrase"] == "Missing access token"


def test_service_principal_through_databricks_sdk(
    warehouse: LocalWarehouse, numbers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from databricks.sdk.core import Config, oauth_service_principal

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", warehouse.info.tls_ca_file)
    info = warehouse.info
    config = Config(
        host=f"https://{info.server_hostname}:{info.port}",
        client_id=info.client_id,
        client_secret=info.client_secret,
    )
    with (
        connect(
            info, access_token=None, credentials_provider=lambda: oauth_service_principal(config)
        ) as connection,
        connection.cursor() as cur,
    ):
        cur.execute(f"SELECT count(*) FROM {numbers}")
        assert cur.fetchone()[0] == 50_000
    bad = Config(host=config.host, client_id=info.client_id, client_secret="wrong-secret")
    with pytest.raises(Exception, match=r"(?i)invalid_client|401|authentication"):
        connect(info, access_token=None, credentials_provider=lambda: oauth_service_principal(bad))


def test_a_long_statement_returns_a_handle_and_can_be_cancelled(warehouse: LocalWarehouse) -> None:
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        started = time.monotonic()
        cur.execute_async(LONG_QUERY)
        assert time.monotonic() - started < 2
        assert cur.get_query_state().name in ("RUNNING", "PENDING")
        cur.cancel()
        deadline = time.monotonic() + 10
        while cur.get_query_state().name in ("RUNNING", "PENDING") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cur.get_query_state().name == "CANCELLED"
        cur.execute("SELECT 1")
        assert cur.fetchone()[0] == 1


def test_cancel_from_another_thread_stops_a_blocking_execute(warehouse: LocalWarehouse) -> None:
    with connect(warehouse.info) as connection, connection.cursor() as cur:

        def cancel_once_running() -> None:
            # The connector can cancel only once ExecuteStatement has answered with a handle.
            while cur.active_command_id is None:
                time.sleep(0.05)
            cur.cancel()

        canceller = threading.Thread(target=cancel_once_running)
        canceller.start()
        started = time.monotonic()
        with pytest.raises(DatabaseError, match=r"OPERATION_CANCELED|cancel"):
            cur.execute(LONG_QUERY)
        assert time.monotonic() - started < 15
        canceller.join()


def test_async_result_is_fetched_later(warehouse: LocalWarehouse, numbers: str) -> None:
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        cur.execute_async(f"SELECT sum(id) FROM {numbers}")
        while cur.is_query_pending():
            time.sleep(0.05)
        result = cur.get_async_execution_result()
        assert result.fetchone()[0] == sum(range(50_000))


def test_abandoned_operations_and_sessions_are_reaped(tmp_path: Any) -> None:
    server = LocalWarehouse(tmp_path, idle_timeout_s=0.2)
    server.start()
    connection = connect(server.info)
    try:
        cursor = connection.cursor()
        cursor.execute_async("SELECT 1")
        assert server.service.counts()["operations"] == 1
        time.sleep(0.4)
        assert server.service.reap_idle() == 2
        assert server.service.counts() == {"sessions": 0, "operations": 0}
    finally:
        # Closing a reaped session is harmless; a connection left open would try to close itself against a
        # stopped server when it is collected, retrying for minutes wherever that happens.
        connection.close()
        server.stop()


@pytest.mark.parametrize("status", [503, 429])
def test_the_connector_retries_unavailable_and_throttled(
    warehouse: LocalWarehouse, numbers: str, status: int
) -> None:
    with connect(warehouse.info, **FAST_RETRIES) as connection, connection.cursor() as cur:
        warehouse.faults.add(
            FaultRule(FaultKind.STATUS, count=1, status=status, retry_after=1, rpc="ExecuteStatement")
        )
        cur.execute(f"SELECT count(*) FROM {numbers}")
        assert cur.fetchone()[0] == 50_000
    assert warehouse.faults.rules() == []


def test_a_statement_that_stays_unavailable_fails_with_the_status(
    warehouse: LocalWarehouse, numbers: str
) -> None:
    options = FAST_RETRIES | {"_retry_stop_after_attempts_count": 2}
    with connect(warehouse.info, **options) as connection, connection.cursor() as cur:
        warehouse.faults.add(
            FaultRule(FaultKind.STATUS, count=None, status=503, retry_after=1, rpc="ExecuteStatement")
        )
        with pytest.raises((RequestError, MaxRetryError), match="503"):
            cur.execute(f"SELECT count(*) FROM {numbers}")
        warehouse.faults.clear()
        cur.execute("SELECT 3")
        assert cur.fetchone()[0] == 3


def test_a_reset_connection_surfaces_as_an_error(warehouse: LocalWarehouse, numbers: str) -> None:
    with connect(warehouse.info, **FAST_RETRIES) as connection, connection.cursor() as cur:
        warehouse.faults.add(FaultRule(FaultKind.RESET, count=None, rpc="ExecuteStatement"))
        with pytest.raises((RequestError, MaxRetryError, OSError), match=r"(?i)abort|reset|closed"):
            cur.execute(f"SELECT count(*) FROM {numbers}")
        warehouse.faults.clear()
        cur.execute(f"SELECT count(*) FROM {numbers}")
        assert cur.fetchone()[0] == 50_000


def test_a_delayed_answer_arrives(warehouse: LocalWarehouse, numbers: str) -> None:
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        warehouse.faults.add(FaultRule(FaultKind.DELAY, count=1, seconds=0.5, rpc="ExecuteStatement"))
        started = time.monotonic()
        cur.execute(f"SELECT max(id) FROM {numbers}")
        assert cur.fetchone()[0] == 49_999
        assert time.monotonic() - started >= 0.5


def test_a_statement_failing_after_k_rows(warehouse: LocalWarehouse, numbers: str) -> None:
    with connect(warehouse.info) as connection, connection.cursor(arraysize=1000) as cur:
        warehouse.faults.add(FaultRule(FaultKind.FAIL_AFTER_ROWS, count=1, rows=2_500))
        cur.execute(f"SELECT id FROM {numbers}")
        received = 0
        with pytest.raises(DatabaseError, match="INJECTED_FAULT"):
            while (batch := cur.fetchmany_arrow(1000)).num_rows:
                received += batch.num_rows
        assert received <= 2_500
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {numbers}")
        assert cur.fetchone()[0] == 50_000


def test_faults_switched_from_another_process_over_http(warehouse: LocalWarehouse, numbers: str) -> None:
    info = warehouse.info
    context = ssl.create_default_context(cafile=info.tls_ca_file)
    headers = {"Authorization": f"Bearer {info.access_token}", "Content-Type": "application/json"}
    url = f"https://{info.server_hostname}:{info.port}/_local/faults"
    rule = {"kind": "status", "status": 503, "count": 1, "retry_after": 1, "rpc": "ExecuteStatement"}
    request = urllib.request.Request(url, data=json.dumps(rule).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, context=context) as answer:
        assert json.load(answer)["rules"][0]["status"] == 503
    with connect(info, **FAST_RETRIES) as connection, connection.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {numbers}")
        assert cur.fetchone()[0] == 50_000
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context) as answer:
        state = json.load(answer)
    assert state["rules"] == [] and state["injected"]["status"] >= 1
    delete = urllib.request.Request(url, headers=headers, method="DELETE")
    with urllib.request.urlopen(delete, context=context) as answer:
        assert json.load(answer) == {"rules": []}


def test_the_server_survives_garbage(warehouse: LocalWarehouse) -> None:
    info = warehouse.info
    context = ssl.create_default_context(cafile=info.tls_ca_file)
    headers = {"Authorization": f"Bearer {info.access_token}", "Content-Type": "application/x-thrift"}
    url = f"https://{info.server_hostname}:{info.port}{info.http_path}"
    for body in (b"", b"\x80\x01\x00\x01garbage", b"\x00" * 100):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with contextlib.suppress(urllib.error.HTTPError, urllib.error.URLError, ConnectionError):
            urllib.request.urlopen(request, context=context, timeout=5).read()
    with connect(info) as connection, connection.cursor() as cur:
        cur.execute("SELECT 42")
        assert cur.fetchone()[0] == 42


def test_server_operation_error_keeps_sqlstate(warehouse: LocalWarehouse) -> None:
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        with pytest.raises(ServerOperationError) as raised:
            cur.execute("SELECT * FROM main.nowhere.nothing")
        assert "TABLE_OR_VIEW_NOT_FOUND" in str(raised.value) and "42P01" in str(raised.value)

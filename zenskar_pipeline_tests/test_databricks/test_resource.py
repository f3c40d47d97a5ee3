"""The Databricks resource against the local warehouse, through the real connector: auth, sessions, streaming,
parameters, identifiers, and what each wrong setting gets."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.faults import FaultKind, FaultRule
from zenskar_devtools.local_warehouse.server import ConnectionInfo, LocalWarehouse
from zenskar_devtools.testing import connect
from zenskar_pipeline.databricks import (
    DatabricksConnectionError,
    DatabricksResource,
    InvalidIdentifierError,
    quote_identifier,
    quote_table,
)

STREAM_ROWS = 300_000
EVENTS = "zdb.resource.events"
STAMPS = "zdb.resource.stamps"


@pytest.fixture(scope="module")
def source_tables(warehouse: LocalWarehouse) -> None:
    ids = pa.array(range(STREAM_ROWS), pa.int64())
    tables.create_table(
        warehouse.root,
        EVENTS,
        pa.table({"id": ids, "amount": pa.array([i % 1000 for i in range(STREAM_ROWS)])}),
    )
    # One wall-clock column (TIMESTAMP_NTZ) and one instant column (TIMESTAMP) per row.
    hours = [datetime(2026, 1, 1) + timedelta(hours=h) for h in range(6)]
    tables.create_table(
        warehouse.root,
        STAMPS,
        pa.table(
            {
                "n": pa.array(range(6), pa.int32()),
                "wall": pa.array(hours, pa.timestamp("us")),
                "instant": pa.array([h.replace(tzinfo=UTC) for h in hours], pa.timestamp("us", tz="UTC")),
                "note": pa.array(["plain", "x'; DROP TABLE events; --", "c", "d", "e", "f"]),
            }
        ),
    )


def token_resource(info: ConnectionInfo, **overrides: object) -> DatabricksResource:
    settings: dict[str, object] = {
        "server_hostname": info.server_hostname,
        "port": info.port,
        "http_path": info.http_path,
        "access_token": info.access_token,
        "tls_ca_file": info.tls_ca_file,
    }
    return DatabricksResource(**{**settings, **overrides})  # type: ignore[arg-type]


def oauth_resource(info: ConnectionInfo, **overrides: object) -> DatabricksResource:
    settings = {"access_token": None, "client_id": info.client_id, "client_secret": info.client_secret}
    return token_resource(info, **{**settings, **overrides})


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- auth and session ----------------------------------------------------------------------------------------
def test_token_session_queries_and_pins_utc(warehouse: LocalWarehouse) -> None:
    with token_resource(warehouse.info).session() as session:
        assert session.query_one("SELECT 1 + 1 AS two") == {"two": 2}
        zone = session.query_one("SET spark.sql.session.timeZone")
    assert zone == {"key": "spark.sql.session.timeZone", "value": "UTC"}
    # The pin is ours: a plain connection leaves the key unset on the warehouse.
    with connect(warehouse.info) as plain, plain.cursor() as cursor:
        cursor.execute("SET spark.sql.session.timeZone")
        assert cursor.fetchall_arrow().to_pylist()[0]["value"] == "<undefined>"


def test_oauth_m2m_session_trusts_the_ca_only_while_the_sdk_runs(
    warehouse: LocalWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("DATABRICKS_TOKEN", "an-unrelated-token")  # must not compete with the client secret
    with oauth_resource(warehouse.info).session() as session:
        assert "REQUESTS_CA_BUNDLE" not in os.environ
        assert session.query_one("SELECT :x AS x", {"x": "oauth"}) == {"x": "oauth"}
    assert "REQUESTS_CA_BUNDLE" not in os.environ


@pytest.mark.parametrize(
    "auth",
    [
        {"access_token": None},
        {"client_id": "someone", "client_secret": "s3cret-value"},
        {"access_token": None, "client_id": "someone"},
        {"access_token": None, "client_secret": "s3cret-value"},
    ],
    ids=["none", "both", "id-without-secret", "secret-without-id"],
)
def test_exactly_one_way_to_authenticate(warehouse: LocalWarehouse, auth: dict[str, object]) -> None:
    with pytest.raises(DatabricksConnectionError) as raised, token_resource(warehouse.info, **auth).session():
        pass
    assert "DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID with DATABRICKS_CLIENT_SECRET" in str(raised.value)
    assert "s3cret-value" not in str(raised.value)
    assert warehouse.info.access_token not in str(raised.value)


def test_from_env_reads_the_databricks_variables(
    warehouse: LocalWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in warehouse.info.env().items():
        monkeypatch.setenv(name, value)
    resource = DatabricksResource.from_env()
    result = dg.materialize([_one_row_asset], resources={"databricks": resource})
    assert result.success
    assert result.output_for_node("_one_row_asset") == 1


def test_from_env_with_a_service_principal(
    warehouse: LocalWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = warehouse.info
    for name, value in info.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABRICKS_TOKEN")
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", info.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", info.client_secret)
    result = dg.materialize([_one_row_asset], resources={"databricks": DatabricksResource.from_env()})
    assert result.success


@dg.asset
def _one_row_asset(databricks: DatabricksResource) -> int:
    with databricks.session() as session:
        return int(session.query_table("SELECT 1 AS one").num_rows)


def test_secrets_never_show_in_repr_or_dagster_config(
    warehouse: LocalWarehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = warehouse.info
    literal = oauth_resource(info, access_token=info.access_token, client_secret=info.client_secret)
    for text in (repr(literal), str(literal)):
        assert info.access_token not in text
        assert info.client_secret not in text
        assert info.server_hostname in text
    for name, value in info.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", info.client_secret)
    defs = dg.Definitions(assets=[_one_row_asset], resources={"databricks": DatabricksResource.from_env()})
    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "DATABRICKS_TOKEN" in snapshot
    assert info.access_token not in snapshot
    assert info.client_secret not in snapshot


# -- statements and streaming --------------------------------------------------------------------------------
def test_counts_every_statement_it_issues(warehouse: LocalWarehouse, source_tables: None) -> None:
    with token_resource(warehouse.info).session() as session:
        assert session.statements_issued == 0
        for n in range(5):
            session.query_one("SELECT :n AS n", {"n": n})
        batches = session.query_batches(f"SELECT id FROM {quote_table('zdb', 'resource', 'events')}")
        assert session.statements_issued == 6  # issued when asked, before the first batch is read
        next(batches)
        batches.close()
        with pytest.raises(Exception, match="TABLE_OR_VIEW_NOT_FOUND"):
            session.query_table("SELECT * FROM `zdb`.`resource`.`missing`")
        assert session.statements_issued == 7
        assert session.query_one("SELECT 2 AS two") == {"two": 2}  # the session survives an error


def test_streams_a_large_table_in_bounded_batches(warehouse: LocalWarehouse, source_tables: None) -> None:
    with token_resource(warehouse.info).session() as session:
        sizes, total_rows, total_amount = [], 0, 0
        for batch in session.query_batches(
            "SELECT id, amount FROM `zdb`.`resource`.`events`", batch_rows=20_000
        ):
            assert isinstance(batch, pa.RecordBatch)
            sizes.append(batch.num_rows)
            total_rows += batch.num_rows
            total_amount += pc.sum(batch.column("amount")).as_py()
        assert session.statements_issued == 1
    assert total_rows == STREAM_ROWS
    assert total_amount == sum(i % 1000 for i in range(STREAM_ROWS))
    assert max(sizes) <= 20_000
    assert len(sizes) >= STREAM_ROWS // 20_000


def test_empty_results_keep_their_schema(warehouse: LocalWarehouse, source_tables: None) -> None:
    with token_resource(warehouse.info).session() as session:
        sql = "SELECT id, amount FROM `zdb`.`resource`.`events` WHERE id < 0"
        reader = session.query_reader(sql)
        assert reader.schema.names == ["id", "amount"]
        assert reader.read_all().num_rows == 0
        assert list(session.query_batches(sql)) == []
        assert session.query_one(sql) is None
        with pytest.raises(ValueError, match="at most one row"):
            session.query_one("SELECT id FROM `zdb`.`resource`.`events` WHERE id < 3")


# -- parameters and identifiers ------------------------------------------------------------------------------
def test_naive_datetimes_bind_as_ntz_and_aware_ones_as_instants(
    warehouse: LocalWarehouse, source_tables: None
) -> None:
    with token_resource(warehouse.info).session() as session:
        bound = session.query_table(
            "SELECT :wall AS wall, :instant AS instant",
            {"wall": datetime(2026, 1, 1, 3), "instant": datetime(2026, 1, 1, 3, tzinfo=UTC)},
        )
        assert bound.schema.field("wall").type.tz is None  # TIMESTAMP_NTZ
        assert bound.schema.field("instant").type.tz is not None  # TIMESTAMP
        # 03:00 wall-clock time selects the NTZ rows from 03:00 on.
        ntz = session.query_table(
            "SELECT n FROM `zdb`.`resource`.`stamps` WHERE wall >= :since ORDER BY n",
            {"since": datetime(2026, 1, 1, 3)},
        )
        assert ntz.column("n").to_pylist() == [3, 4, 5]
        # 06:30 at +05:30 is 01:00 UTC: an instant, compared as one.
        india = timezone(timedelta(hours=5, minutes=30))
        instants = session.query_table(
            "SELECT n FROM `zdb`.`resource`.`stamps` WHERE instant >= :since ORDER BY n",
            {"since": datetime(2026, 1, 1, 6, 30, tzinfo=india)},
        )
        assert instants.column("n").to_pylist() == [1, 2, 3, 4, 5]


def test_values_carrying_sql_stay_values(warehouse: LocalWarehouse, source_tables: None) -> None:
    payload = "x'; DROP TABLE events; --"
    with token_resource(warehouse.info).session() as session:
        assert session.query_one("SELECT :s AS s", {"s": payload}) == {"s": payload}
        hit = session.query_table("SELECT n FROM `zdb`.`resource`.`stamps` WHERE note = :s", {"s": payload})
        assert hit.column("n").to_pylist() == [1]
        assert session.query_one("SELECT count(*) AS c FROM `zdb`.`resource`.`events`") == {"c": STREAM_ROWS}


ANY_NAMES = ["número", "order", "with space", "a.b", "we`ird", "``", "t; DROP TABLE x", "'q'", "a--b", "1st"]


def test_any_name_is_quoted_a_backtick_inside_doubled() -> None:
    assert quote_identifier("usage_events") == "`usage_events`"
    assert quote_identifier("we`ird") == "`we``ird`"
    assert quote_identifier("``") == "``````"
    assert quote_identifier("número") == "`número`"
    assert quote_identifier("a.b") == "`a.b`"
    assert quote_identifier("x" * 255) == f"`{'x' * 255}`"
    assert quote_table("zdb", "resource", "Events") == "`zdb`.`resource`.`Events`"


@pytest.mark.parametrize("name", ANY_NAMES)
def test_a_quoted_name_reaches_the_warehouse_as_that_one_name(
    warehouse: LocalWarehouse, source_tables: None, name: str
) -> None:
    with token_resource(warehouse.info).session() as session:
        result = session.query_table(f"SELECT 1 AS {quote_identifier(name)}, 2 AS after")
    assert result.column_names == [name, "after"]
    assert result.to_pylist() == [{name: 1, "after": 2}]


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "it is empty"),
        ("x" * 256, "256 characters long, and names are at most 255"),
        ("a\x00b", "NUL character"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_only_what_no_unity_catalog_name_can_be_is_refused(name: str, problem: str) -> None:
    with pytest.raises(InvalidIdentifierError, match=problem):
        quote_identifier(name)
    with pytest.raises(InvalidIdentifierError, match="cannot be a Unity Catalog name"):
        quote_table("main", "billing", name)


def test_parameter_marker_names_stay_plain(warehouse: LocalWarehouse, source_tables: None) -> None:
    with (
        pytest.raises(InvalidIdentifierError, match="parameter name"),
        token_resource(warehouse.info).session() as session,
    ):
        session.query_one("SELECT 1", {"x; DROP": 1})


# -- failures ------------------------------------------------------------------------------------------------
def _fails_fast(resource: DatabricksResource, setting: str, secrets: list[str]) -> DatabricksConnectionError:
    started = time.monotonic()
    with pytest.raises(DatabricksConnectionError) as raised, resource.session():
        pass
    elapsed = time.monotonic() - started
    error = raised.value
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert f"check {setting}" in str(error)
    chain: list[str] = []
    link: BaseException | None = error
    while link is not None:
        chain += [str(link), repr(link), repr(getattr(link, "context", ""))]
        link = link.__cause__ or link.__context__
    for secret in secrets:
        assert not any(secret in text for text in chain)
    return error


def test_wrong_token(warehouse: LocalWarehouse) -> None:
    wrong = "dapi-wrong-0123456789abcdef"
    error = _fails_fast(token_resource(warehouse.info, access_token=wrong), "DATABRICKS_TOKEN", [wrong])
    assert "HTTP 401" in str(error)


def test_wrong_http_path(warehouse: LocalWarehouse) -> None:
    info = warehouse.info
    resource = token_resource(info, http_path="/sql/1.0/warehouses/nope")
    error = _fails_fast(resource, "DATABRICKS_HTTP_PATH", [info.access_token])
    assert "HTTP 404" in str(error)


def test_closed_port(warehouse: LocalWarehouse) -> None:
    info = warehouse.info
    resource = token_resource(info, port=closed_port())
    _fails_fast(resource, "DATABRICKS_SERVER_HOSTNAME / DATABRICKS_PORT", [info.access_token])


def test_unresolvable_host(warehouse: LocalWarehouse) -> None:
    info = warehouse.info
    resource = token_resource(info, server_hostname="no-such-workspace.invalid")
    error = _fails_fast(resource, "DATABRICKS_SERVER_HOSTNAME / DATABRICKS_PORT", [info.access_token])
    assert "no-such-workspace.invalid" in str(error)


def test_untrusted_certificate(warehouse: LocalWarehouse, tmp_path: Path) -> None:
    info = warehouse.info
    _fails_fast(token_resource(info, tls_ca_file=None), "DATABRICKS_TLS_CA_FILE", [info.access_token])
    missing = str(tmp_path / "missing.pem")
    _fails_fast(token_resource(info, tls_ca_file=missing), "DATABRICKS_TLS_CA_FILE", [info.access_token])


def test_wrong_client_secret(warehouse: LocalWarehouse) -> None:
    wrong = "wrong-client-secret-0123456789"
    resource = oauth_resource(warehouse.info, client_secret=wrong)
    error = _fails_fast(resource, "DATABRICKS_CLIENT_ID / DATABRICKS_CLIENT_SECRET", [wrong])
    assert "invalid_client" in str(error)


def test_a_transient_503_is_retried(warehouse: LocalWarehouse) -> None:
    with token_resource(warehouse.info).session() as session:
        before = warehouse.faults.injected.get(FaultKind.STATUS, 0)
        warehouse.faults.add(FaultRule(FaultKind.STATUS, count=1, status=503, rpc="ExecuteStatement"))
        started = time.monotonic()
        assert session.query_one("SELECT 'after a 503' AS s") == {"s": "after a 503"}
        # The connector sleeps at least `retry_delay_max` before a 503 retry: 5 s here, not its default 60.
        assert 4 < time.monotonic() - started < 10
        assert warehouse.faults.injected.get(FaultKind.STATUS, 0) == before + 1
        assert session.statements_issued == 1


def test_retry_settings_outside_the_connectors_bounds_are_refused(warehouse: LocalWarehouse) -> None:
    for setting in ({"retry_delay_max": 1}, {"retry_stop_after_attempts_count": 0}, {"socket_timeout": 0}):
        with pytest.raises(ValueError, match=next(iter(setting))):
            token_resource(warehouse.info, **setting)

"""The SQL engine over real Delta tables: names, parameters, time travel, commands, types, errors, streams."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, WriterProperties, write_deltalake

from zenskar_devtools.local_warehouse.arrow_types import BatchConformer, databricks_result_columns
from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.engine import Engine
from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.statement import Parameter, SessionState, StatementResult

NOON_UTC = datetime(2024, 1, 1, 12, tzinfo=UTC)


def _orders(ids: list[int]) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "amount": pa.array([Decimal(i) + Decimal("0.25") for i in ids], pa.decimal128(10, 2)),
            "region": pa.array(["eu" if i % 2 else "us" for i in ids], pa.string()),
            "ts": pa.array([NOON_UTC + timedelta(hours=i - 1) for i in ids], pa.timestamp("us", "UTC")),
            "ntz": pa.array([datetime(2024, 1, 1, 11 + i) for i in ids], pa.timestamp("us")),
        }
    )


@pytest.fixture(scope="module")
def delta_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime]:
    """main.sales.orders (v0: ids 1-3, v1: id 4, change feed on), analytics.ref.regions, main.default.t."""
    root = tmp_path_factory.mktemp("engine")
    orders = root / "main" / "sales" / "orders"
    write_deltalake(orders, _orders([1, 2, 3]), configuration={"delta.enableChangeDataFeed": "true"})
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    write_deltalake(orders, _orders([4]), mode="append")
    regions = pa.table({"code": ["eu", "us"], "label": ["Europe", "United States"]})
    write_deltalake(root / "analytics" / "ref" / "regions", regions)
    write_deltalake(root / "main" / "default" / "t", pa.table({"x": pa.array([10], pa.int32())}))
    return root, between


@pytest.fixture(scope="module")
def engine(delta_root: tuple[Path, datetime]) -> Engine:
    return Engine(Catalog(delta_root[0]))


def run(
    engine: Engine, sql: str, parameters: Sequence[Parameter] = (), session: SessionState | None = None
) -> pa.Table:
    result = engine.execute(sql, list(parameters), session or SessionState())
    try:
        return pa.Table.from_batches(list(result.batches), result.schema)
    finally:
        result.close()


def rows(engine: Engine, sql: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
    table = run(engine, sql, *args, **kwargs)  # type: ignore[arg-type]
    return [tuple(row.values()) for row in table.to_pylist()]


def fails(engine: Engine, sql: str, parameters: Sequence[Parameter] = ()) -> WarehouseError:
    with pytest.raises(WarehouseError) as caught:
        run(engine, sql, parameters)
    return caught.value


def named(name: str, kind: str, value: str | None) -> Parameter:
    return Parameter(name=name, ordinal=0, type=kind, value=value)


def positional(ordinal: int, kind: str, value: str | None) -> Parameter:
    return Parameter(name=None, ordinal=ordinal, type=kind, value=value)


# -- names ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "session"),
    [
        ("SELECT count(*) FROM main.sales.orders", SessionState()),
        ("SELECT count(*) FROM `MAIN`.`Sales`.`orders`", SessionState()),
        ("SELECT count(*) FROM sales.orders", SessionState()),
        ("SELECT count(*) FROM orders", SessionState(schema="sales")),
        ("SELECT count(*) FROM sales.orders", SessionState(catalog="main", schema="other")),
    ],
)
def test_one_two_and_three_part_names_resolve(engine: Engine, sql: str, session: SessionState) -> None:
    assert rows(engine, sql, session=session) == [(4,)]


def test_qualified_columns_keep_the_written_table_name(engine: Engine) -> None:
    sql = (
        "SELECT orders.id, o2.id FROM main.sales.orders JOIN sales.orders o2 ON orders.id = o2.id "
        "WHERE o2.id = 2"
    )
    assert rows(engine, sql) == [(2, 2)]


def test_use_changes_the_session_catalog_and_schema(engine: Engine) -> None:
    session = SessionState()
    run(engine, "USE CATALOG analytics", session=session)
    assert (session.catalog, session.schema) == ("analytics", "default")
    run(engine, "USE SCHEMA ref", session=session)
    assert rows(engine, "SELECT label FROM regions ORDER BY code", session=session) == [
        ("Europe",),
        ("United States",),
    ]
    run(engine, "USE main.sales", session=session)
    assert rows(engine, "SELECT current_catalog(), current_schema()", session=session) == [("main", "sales")]
    run(engine, "USE DATABASE default", session=session)
    assert rows(engine, "SELECT x FROM t", session=session) == [(10,)]
    assert fails(engine, "USE SCHEMA nowhere").error_class == "SCHEMA_NOT_FOUND"
    assert fails(engine, "USE CATALOG nowhere").error_class == "NO_SUCH_CATALOG_EXCEPTION"


def test_joins_across_catalogs_with_ctes_windows_and_aggregates(engine: Engine) -> None:
    sql = """
        WITH totals AS (
            SELECT region, sum(amount) AS total, count(*) AS n FROM main.sales.orders GROUP BY region
        )
        SELECT r.label, t.total, t.n, rank() OVER (ORDER BY t.total DESC) AS position
        FROM totals t JOIN analytics.ref.regions r ON r.code = t.region
        ORDER BY position LIMIT 5
    """
    assert rows(engine, sql) == [
        ("United States", Decimal("6.50"), 2, 1),
        ("Europe", Decimal("4.50"), 2, 2),
    ]


def test_select_without_a_table_and_session_functions(engine: Engine) -> None:
    table = run(engine, "SELECT 1, current_catalog(), current_database(), current_timestamp(), version()")
    one, catalog, schema, now, version = table.to_pylist()[0].values()
    assert (one, catalog, schema) == (1, "main", "default")
    assert abs(now - datetime.now(UTC)) < timedelta(minutes=1)
    assert table.schema.field(3).type == pa.timestamp("us", "UTC")
    assert version.startswith("3.")
    assert table.column_names == [
        "1",
        "current_catalog()",
        "current_database()",
        "current_timestamp()",
        "version()",
    ]
    assert rows(engine, "SELECT current_date()") == [(datetime.now(UTC).date(),)]


# -- parameters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "expected", "databricks_type"),
    [
        ("INT", "5", 5, "INT"),
        ("BIGINT", "5000000000", 5_000_000_000, "BIGINT"),
        ("SMALLINT", "7", 7, "SMALLINT"),
        ("TINYINT", "-3", -3, "TINYINT"),
        ("DOUBLE", "1.5", 1.5, "DOUBLE"),
        ("FLOAT", "0.5", 0.5, "FLOAT"),
        ("DECIMAL(10,2)", "3.14", Decimal("3.14"), "DECIMAL(10,2)"),
        ("BOOLEAN", "True", True, "BOOLEAN"),
        ("STRING", "héllo 'quoted'", "héllo 'quoted'", "STRING"),
        ("DATE", "2024-02-29", date(2024, 2, 29), "DATE"),
        ("TIMESTAMP", "2024-01-01 13:00:00+01:00", NOON_UTC, "TIMESTAMP"),
        ("TIMESTAMP_NTZ", "2024-01-01 12:00:00", datetime(2024, 1, 1, 12), "TIMESTAMP_NTZ"),
        ("BINARY", "ab", b"ab", "BINARY"),
        ("INT", None, None, "INT"),
    ],
)
def test_parameters_bind_with_their_type(
    engine: Engine, kind: str, value: str | None, expected: object, databricks_type: str
) -> None:
    result = engine.execute("SELECT :p AS v", [named("p", kind, value)], SessionState())
    assert [c.databricks_type for c in result.columns] == [databricks_type]
    assert pa.Table.from_batches(list(result.batches), result.schema).column("v").to_pylist() == [expected]


def test_void_parameter_is_null(engine: Engine) -> None:
    assert rows(engine, "SELECT :p IS NULL", [named("p", "VOID", None)]) == [(True,)]


def test_positional_parameters_follow_text_order_and_are_never_pasted(engine: Engine) -> None:
    sql = "WITH c AS (SELECT ? AS a) SELECT a, ? FROM c WHERE a = ? LIMIT ?"
    params = [positional(i + 1, kind, v) for i, (kind, v) in enumerate(
        [("STRING", "x'; DROP TABLE t; --"), ("INT", "2"), ("STRING", "x'; DROP TABLE t; --"), ("INT", "5")]
    )]  # fmt: skip
    assert rows(engine, sql, params) == [("x'; DROP TABLE t; --", 2)]
    assert rows(engine, "SELECT '?' AS q, ? AS p -- ?", [positional(1, "INT", "1")]) == [("?", 1)]


def test_timestamp_parameters_compare_as_instants_and_ntz_as_wall_time(engine: Engine) -> None:
    # TIMESTAMP column vs TIMESTAMP parameter: the same instant written in another offset matches.
    instant = [named("at", "TIMESTAMP", "2024-01-01 14:00:00+02:00")]
    assert rows(engine, "SELECT id FROM main.sales.orders WHERE ts = :at", instant) == [(1,)]
    # TIMESTAMP_NTZ column vs TIMESTAMP_NTZ parameter: wall-clock equality, no zone involved.
    wall = [named("at", "TIMESTAMP_NTZ", "2024-01-01 13:00:00")]
    assert rows(engine, "SELECT id FROM main.sales.orders WHERE ntz = :at", wall) == [(2,)]
    # A TIMESTAMP without offset is wall time in the session's zone.
    session = SessionState(configuration={"spark.sql.session.timeZone": "America/New_York"})
    local = [named("at", "TIMESTAMP", "2024-01-01 07:00:00")]
    assert rows(engine, "SELECT id FROM main.sales.orders WHERE ts = :at", local, session) == [(1,)]


def test_unbound_and_malformed_parameters_are_errors(engine: Engine) -> None:
    assert fails(engine, "SELECT :missing").error_class == "UNBOUND_SQL_PARAMETER"
    assert fails(engine, "SELECT ?, ?", [positional(1, "INT", "1")]).error_class == "UNBOUND_SQL_PARAMETER"
    assert fails(engine, "SELECT :p", [named("p", "INT", "abc")]).error_class == "CAST_INVALID_INPUT"


# -- time travel, information_schema, change feed ------------------------------------------------------------


def test_version_and_timestamp_as_of(engine: Engine, delta_root: tuple[Path, datetime]) -> None:
    assert rows(engine, "SELECT count(*) FROM main.sales.orders VERSION AS OF 0") == [(3,)]
    assert rows(engine, "SELECT count(*) FROM main.sales.orders VERSION AS OF 1") == [(4,)]
    between = delta_root[1].strftime("%Y-%m-%d %H:%M:%S.%f")
    assert rows(engine, f"SELECT count(*) FROM main.sales.orders TIMESTAMP AS OF '{between}'") == [(3,)]
    at = [named("at", "TIMESTAMP", delta_root[1].isoformat())]
    assert rows(engine, "SELECT count(*) FROM sales.orders TIMESTAMP AS OF :at AS o", at) == [(3,)]
    assert fails(engine, "SELECT * FROM main.sales.orders VERSION AS OF 7").sqlstate != "XX000"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT table_name FROM main.information_schema.tables WHERE table_schema = 'sales'", [("orders",)]),
        ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'default'", [("t",)]),
        (
            "SELECT table_catalog, table_name FROM system.information_schema.tables "
            "WHERE table_schema <> 'information_schema' ORDER BY 1, 2",
            [("analytics", "regions"), ("main", "orders"), ("main", "t")],
        ),
        (
            "SELECT column_name FROM main.information_schema.columns WHERE table_name = 'orders' "
            "ORDER BY ordinal_position",
            [("id",), ("amount",), ("region",), ("ts",), ("ntz",)],
        ),
    ],
)
def test_information_schema_views(engine: Engine, sql: str, expected: list[tuple[object, ...]]) -> None:
    assert rows(engine, sql) == expected


def test_table_changes_by_version_and_timestamp(engine: Engine, delta_root: tuple[Path, datetime]) -> None:
    sql = "SELECT id, _change_type, _commit_version FROM table_changes('main.sales.orders', {}) ORDER BY id"
    assert rows(engine, sql.format("1")) == [(4, "insert", 1)]
    assert [r[0] for r in rows(engine, sql.format("0, 0"))] == [1, 2, 3]
    assert [r[0] for r in rows(engine, sql.format(f"'{delta_root[1].isoformat()}'"))] == [4]
    session = SessionState(schema="sales")
    assert rows(engine, "SELECT count(*) FROM table_changes('orders', 0)", session=session) == [(4,)]
    result = engine.execute("SELECT * FROM table_changes('main.sales.orders', 0)", [], SessionState())
    assert result.columns[-2].databricks_type == "BIGINT"  # _commit_version, uint64 in delta-rs
    result.close()


def test_string_filters_work_on_files_delta_rs_wrote_with_string_views(tmp_path: Path) -> None:
    path = tmp_path / "main" / "default" / "people"
    write_deltalake(path, pa.table({"name": ["a", "b"], "n": [1, 2]}))
    write_deltalake(path, pa.table({"name": ["c"], "n": [3]}), mode="append")
    DeltaTable(path).merge(
        pa.table({"name": ["a"], "n": [9]}), "s.name = t.name", source_alias="s", target_alias="t"
    ).when_matched_update_all().execute()  # MERGE writes `string_view` columns
    engine = Engine(Catalog(tmp_path))
    assert rows(engine, "SELECT name, n FROM people WHERE name IN ('a', 'c') ORDER BY name") == [
        ("a", 9),
        ("c", 3),
    ]
    assert run(engine, "SELECT name FROM people").schema.field("name").type == pa.string()


# -- commands ------------------------------------------------------------------------------------------------


def test_show_catalogs_schemas_and_tables(engine: Engine) -> None:
    assert rows(engine, "SHOW CATALOGS") == [("analytics",), ("main",)]
    assert run(engine, "SHOW SCHEMAS IN main").column_names == ["databaseName"]
    assert rows(engine, "SHOW SCHEMAS FROM main") == [("default",), ("sales",)]
    assert rows(engine, "SHOW SCHEMAS IN main LIKE 'sa*|nothing'") == [("sales",)]
    assert rows(engine, "show databases") == [("default",), ("sales",)]
    tables = run(engine, "SHOW TABLES IN main.sales")
    assert tables.column_names == ["database", "tableName", "isTemporary"]
    assert tables.to_pylist() == [{"database": "sales", "tableName": "orders", "isTemporary": False}]
    assert rows(engine, "SHOW TABLES", session=SessionState(catalog="analytics", schema="ref")) == [
        ("ref", "regions", False)
    ]


def test_describe_and_history(engine: Engine) -> None:
    described = run(engine, "DESCRIBE TABLE main.sales.orders").to_pylist()
    assert [(r["col_name"], r["data_type"]) for r in described][:2] == [
        ("id", "bigint"),
        ("amount", "decimal(10,2)"),
    ]
    extended = rows(engine, "DESCRIBE TABLE EXTENDED sales.orders")
    assert ("# Detailed Table Information", "", "") in extended
    assert len(rows(engine, "DESC main.sales.orders")) == 5
    history = run(engine, "DESCRIBE HISTORY main.sales.orders")
    assert history.column("version").to_pylist() == [1, 0]
    assert run(engine, "DESCRIBE HISTORY main.sales.orders LIMIT 1").column("version").to_pylist() == [1]


def test_set_stores_configuration_and_time_zone(engine: Engine) -> None:
    session = SessionState()
    assert rows(engine, "SET my.key = some value", session=session) == [("my.key", "some value")]
    assert rows(engine, "SET my.key", session=session) == [("my.key", "some value")]
    run(engine, "SET TIME ZONE 'America/New_York'", session=session)
    assert ("spark.sql.session.timeZone", "America/New_York") in rows(engine, "SET", session=session)
    wall = rows(
        engine, "SELECT CAST(ts AS TIMESTAMP_NTZ) FROM main.sales.orders WHERE id = 1", session=session
    )
    assert wall == [(datetime(2024, 1, 1, 7),)]
    assert fails(engine, "SET TIME ZONE 'Mars/Olympus'").error_class.startswith("INVALID_CONF_VALUE")


# -- types ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "databricks_type", "arrow_type"),
    [
        ("true", "BOOLEAN", pa.bool_()),
        ("CAST(1 AS TINYINT)", "TINYINT", pa.int8()),
        ("CAST(1 AS SMALLINT)", "SMALLINT", pa.int16()),
        ("CAST(1 AS INT)", "INT", pa.int32()),
        ("CAST(1 AS BIGINT)", "BIGINT", pa.int64()),
        ("CAST(1 AS FLOAT)", "FLOAT", pa.float32()),
        ("CAST(1 AS DOUBLE)", "DOUBLE", pa.float64()),
        ("CAST(1 AS DECIMAL(12,3))", "DECIMAL(12,3)", pa.decimal128(12, 3)),
        ("'text'", "STRING", pa.string()),
        ("CAST('ab' AS BINARY)", "BINARY", pa.binary()),
        ("DATE'2024-01-01'", "DATE", pa.date32()),
        ("TIMESTAMP'2024-01-01 00:00:00'", "TIMESTAMP", pa.timestamp("us", "UTC")),
        ("CAST('2024-01-01 00:00:00' AS TIMESTAMP_NTZ)", "TIMESTAMP_NTZ", pa.timestamp("us")),
        ("array(1, 2)", "ARRAY<INT>", pa.list_(pa.int32())),
        ("map('k', 1)", "MAP<STRING, INT>", pa.map_(pa.string(), pa.int32())),
        ("named_struct('a', 1, 'b', 'x')", "STRUCT<a: INT, b: STRING>", None),
        ("NULL", "VOID", pa.null()),
        ("ts", "TIMESTAMP", pa.timestamp("us", "UTC")),
        ("ntz", "TIMESTAMP_NTZ", pa.timestamp("us")),
        ("amount", "DECIMAL(10,2)", pa.decimal128(10, 2)),
    ],
)
def test_result_types_have_databricks_names(
    engine: Engine, expression: str, databricks_type: str, arrow_type: pa.DataType | None
) -> None:
    result = engine.execute(f"SELECT {expression} AS v FROM main.sales.orders LIMIT 1", [], SessionState())
    batches = list(result.batches)
    assert [c.databricks_type for c in result.columns] == [databricks_type]
    assert all(batch.schema.equals(result.schema) for batch in batches)
    if arrow_type is not None:
        assert result.schema.field("v").type == arrow_type


def test_unsupported_arrow_types_are_cast() -> None:
    schema = pa.schema(
        [
            ("u8", pa.uint8()),
            ("u64", pa.uint64()),
            ("huge", pa.decimal256(50, 2)),
            ("t", pa.time64("us")),
            ("iv", pa.month_day_nano_interval()),
            ("e", pa.dictionary(pa.int8(), pa.string())),
            ("big", pa.large_string()),
            ("ns", pa.timestamp("ns", "Europe/Paris")),
            ("nested", pa.list_(pa.struct([("x", pa.uint32())]))),
        ]
    )
    target, columns = databricks_result_columns(schema)
    assert [c.databricks_type for c in columns] == [
        "SMALLINT", "DECIMAL(20,0)", "STRING", "STRING", "STRING", "STRING", "STRING", "TIMESTAMP",
        "ARRAY<STRUCT<x: BIGINT>>",
    ]  # fmt: skip
    batch = pa.RecordBatch.from_pydict(
        {
            "u8": [255],
            "u64": [2**64 - 1],
            "huge": [Decimal("1.50")],
            "t": [datetime(2024, 1, 1, 1, 2, 3).time()],
            "iv": [pa.scalar((1, 2, 3), pa.month_day_nano_interval()).as_py()],
            "e": ["red"],
            "big": ["x"],
            "ns": [datetime(2024, 1, 1, 12, tzinfo=UTC)],
            "nested": [[{"x": 7}]],
        },
        schema=schema,
    )
    converted = BatchConformer(target)(batch)
    assert converted.schema.equals(target)
    values = converted.to_pylist()[0]
    assert (values["u8"], values["u64"], values["huge"]) == (255, Decimal(2**64 - 1), "1.50")
    assert values["t"].startswith("01:02:03")
    assert (values["e"], values["ns"], values["nested"]) == ("red", NOON_UTC, [{"x": 7}])
    assert values["iv"] is not None and "1" in values["iv"]
    assert target.field("ns").type == pa.timestamp("us", "UTC")


# -- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "error_class", "sqlstate", "mentions"),
    [
        ("SELEC 1", "PARSE_SYNTAX_ERROR", "42601", "SELEC"),
        ("SELECT 1 +", "PARSE_SYNTAX_ERROR", "42601", "+"),
        ("SELECT * FROM main.sales.nothing", "TABLE_OR_VIEW_NOT_FOUND", "42P01", "nothing"),
        ("SELECT * FROM nothing", "TABLE_OR_VIEW_NOT_FOUND", "42P01", "nothing"),
        ("SELECT amout FROM main.sales.orders", "UNRESOLVED_COLUMN.WITH_SUGGESTION", "42703", "amout"),
        ("SELECT 'a' + DATE'2024-01-01' FROM main.sales.orders", "DATATYPE_MISMATCH", "42K09", ""),
        ("SELECT CAST('abc' AS INT)", "CAST_INVALID_INPUT", "22018", "abc"),
        ("SELECT 1 / 0", "DIVIDE_BY_ZERO", "22012", ""),
        ("SELECT id / (id - 1) FROM main.sales.orders", "DIVIDE_BY_ZERO", "22012", ""),
        ("INSERT INTO main.sales.orders VALUES (1)", "UNSUPPORTED_FEATURE", "0A000", "read-only"),
        ("DROP TABLE main.sales.orders", "UNSUPPORTED_FEATURE", "0A000", "read-only"),
        ("CREATE TABLE x (a INT)", "UNSUPPORTED_FEATURE", "0A000", "read-only"),
        ("SELECT 1; SELECT 2", "PARSE_SYNTAX_ERROR", "42601", ""),
        ("SELECT * FROM read_csv('/etc/passwd')", "", "", ""),
    ],
)
def test_errors_carry_databricks_classes(
    engine: Engine, sql: str, error_class: str, sqlstate: str, mentions: str
) -> None:
    error = fails(engine, sql)
    assert error.error_class.startswith(error_class)
    assert error.sqlstate == sqlstate or not sqlstate
    assert mentions in error.message
    assert error.error_class != "INTERNAL_ERROR"


def test_an_error_in_a_later_batch_is_a_warehouse_error() -> None:
    engine = Engine(Catalog(Path("/nonexistent")), batch_rows=1_000)
    result = engine.execute("SELECT 10 / (range - 250000) AS v FROM range(300000)", [], SessionState())
    with pytest.raises(WarehouseError) as caught:
        for _ in result.batches:
            pass
    assert caught.value.error_class == "DIVIDE_BY_ZERO"


# -- streaming, cancellation, threads ------------------------------------------------------------------------


def test_batches_are_produced_lazily() -> None:
    """A trillion-row result: only lazy batches can answer at all; the first one arrives, then we stop."""
    engine = Engine(Catalog(Path("/nonexistent")), batch_rows=10_000)
    result = engine.execute("SELECT range AS n, range * 2 AS m FROM range(1000000000000)", [], SessionState())
    first, second = next(result.batches), next(result.batches)
    assert first.num_rows == second.num_rows == 10_000
    assert first.column("n")[0].as_py() == 0
    result.close()
    with pytest.raises(WarehouseError):
        next(result.batches)


def test_a_delta_table_streams_in_bounded_batches(tmp_path: Path) -> None:
    ids = pa.array(range(200_000), pa.int64())
    write_deltalake(tmp_path / "main" / "default" / "big", pa.table({"id": ids}))
    engine = Engine(Catalog(tmp_path), batch_rows=8_192)
    result = engine.execute("SELECT id FROM big", [], SessionState())
    sizes = [batch.num_rows for batch in result.batches]
    assert sum(sizes) == 200_000 and len(sizes) > 10 and max(sizes) <= 8_192


def test_partitioned_multi_row_group_tables_filter_and_project_row_group_by_row_group(tmp_path: Path) -> None:
    """Tables are scanned one row group at a time; partitions, pruned row groups and filters still hold."""
    path = tmp_path / "main" / "default" / "usage"
    small_groups = WriterProperties(max_row_group_size=1_000)
    for start in (0, 10_000):  # two commits: several files per partition, each of several row groups
        ids = list(range(start, start + 10_000))
        usage = pa.table({"id": pa.array(ids, pa.int64()), "region": ["eu" if i % 3 else "us" for i in ids]})
        write_deltalake(path, usage, partition_by=["region"], mode="append", writer_properties=small_groups)
    engine = Engine(Catalog(tmp_path))
    expected_us = [i for i in range(20_000) if i % 3 == 0]
    assert rows(engine, "SELECT count(*), sum(id) FROM usage WHERE region = 'us'") == [
        (len(expected_us), sum(expected_us))
    ]
    assert rows(engine, "SELECT region, id FROM usage WHERE id BETWEEN 4998 AND 5001 ORDER BY id") == [
        ("us", 4998),
        ("eu", 4999),
        ("eu", 5000),
        ("us", 5001),
    ]
    assert rows(engine, "SELECT count(*) FROM usage WHERE region = 'us' AND id > 19990") == [(3,)]
    assert rows(engine, "SELECT id FROM usage WHERE id < 0") == []
    assert rows(engine, "SELECT count(*) FROM usage") == [(20_000,)]


def test_a_slow_reader_does_not_make_the_scan_decode_ahead(tmp_path: Path) -> None:
    """After one batch, the rest of the table is still on disk, however long the reader takes."""
    ids = pa.array(range(2_000_000), pa.int64())
    write_deltalake(
        tmp_path / "main" / "default" / "big",
        pa.table({"id": ids}),
        writer_properties=WriterProperties(max_row_group_size=100_000),
    )
    engine = Engine(Catalog(tmp_path), batch_rows=8_192)
    before = pa.total_allocated_bytes()
    result = engine.execute("SELECT id FROM big", [], SessionState())
    next(result.batches)
    time.sleep(0.5)  # long enough for a read-ahead scan to decode the whole 16 MB column
    held = pa.total_allocated_bytes() - before
    result.close()
    assert held < ids.nbytes // 4


def test_cancel_interrupts_a_running_query() -> None:
    engine = Engine(Catalog(Path("/nonexistent")))
    sql = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b"
    started = time.monotonic()
    result = engine.execute(sql, [], SessionState())
    assert time.monotonic() - started < 5  # planning only: the work happens while batches are read
    outcome: list[BaseException] = []

    def read(result: StatementResult = result) -> None:
        try:
            list(result.batches)
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    cancelled_at = time.monotonic()
    result.cancel()
    reader.join(timeout=10)
    assert not reader.is_alive() and time.monotonic() - cancelled_at < 5
    assert isinstance(outcome[0], WarehouseError) and outcome[0].error_class == "OPERATION_CANCELED"
    result.close()


def test_statements_run_in_parallel_threads(engine: Engine) -> None:
    answers: dict[int, list[tuple[object, ...]]] = {}

    def work(i: int) -> None:
        session = SessionState(catalog="analytics" if i % 2 else "main", schema="ref" if i % 2 else "sales")
        table = "regions" if i % 2 else "orders"
        answers[i] = rows(engine, f"SELECT count(*), :i FROM {table}", [named("i", "INT", str(i))], session)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {i: [(2 if i % 2 else 4, i)] for i in range(16)}

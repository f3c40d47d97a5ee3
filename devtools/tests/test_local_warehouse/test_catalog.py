"""The catalog over real Delta tables: listing, time travel, types, information_schema, history, changes."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from zenskar_devtools.local_warehouse.catalog import Catalog
from zenskar_devtools.local_warehouse.delta_types import databricks_data_type, databricks_type
from zenskar_devtools.local_warehouse.errors import WarehouseError
from zenskar_devtools.local_warehouse.layout import PRIMARY_KEY_PROPERTY, TableName

ORDERS = TableName("main", "sales", "orders")
CUSTOMERS = TableName("main", "sales", "customers")
EVENTS = TableName("dev", "default", "events")
CDF_ON = {"delta.enableChangeDataFeed": "true"}


def _write(root: Path, name: TableName, data: pa.Table, **options: Any) -> DeltaTable:
    write_deltalake(str(name.path(root)), data, **options)
    time.sleep(0.01)  # distinct commit timestamps (milliseconds) for the time-travel tests
    return DeltaTable(str(name.path(root)))


def _set_properties(root: Path, name: TableName, properties: dict[str, str]) -> None:
    # delta-rs refuses unknown properties at create time; ALTER accepts them with raise_if_not_exists=False.
    DeltaTable(str(name.path(root))).alter.set_table_properties(properties, raise_if_not_exists=False)
    time.sleep(0.01)


def _orders(ids: list[int], amounts: list[str]) -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array(ids, pa.int64()),
            "amount": pa.array([Decimal(a) for a in amounts], pa.decimal128(18, 6)),
        }
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """main.sales.orders (CDF on, primary key, 5 versions), main.sales.customers, dev.default.events."""
    _write(
        tmp_path, ORDERS, _orders([1, 2, 3], ["10", "20", "30"]), configuration=CDF_ON, description="Orders"
    )
    _set_properties(tmp_path, ORDERS, {PRIMARY_KEY_PROPERTY: "order_id"})  # v1
    _write(tmp_path, ORDERS, _orders([4], ["40"]), mode="append")  # v2
    (
        DeltaTable(str(ORDERS.path(tmp_path)))
        .merge(_orders([1, 5], ["11", "50"]), "t.order_id = s.order_id", source_alias="s", target_alias="t")
        .when_matched_update_all()
        .when_not_matched_insert_all()
        .execute()
    )  # v3
    time.sleep(0.01)
    DeltaTable(str(ORDERS.path(tmp_path))).delete("order_id = 2")  # v4
    time.sleep(0.01)
    customers = pa.table({"region": ["eu", "us"], "customer_id": ["c1", "c2"], "name": ["Ann", "Bo"]})
    _write(tmp_path, CUSTOMERS, customers)
    _set_properties(tmp_path, CUSTOMERS, {PRIMARY_KEY_PROPERTY: "region, customer_id"})
    _write(tmp_path, EVENTS, pa.table({"event_id": ["e1"]}))
    (tmp_path / "main" / "sales" / "not_a_table").mkdir()  # no _delta_log: not listed
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "main" / "empty_schema").mkdir()
    return tmp_path


@pytest.fixture
def catalog(root: Path) -> Catalog:
    return Catalog(root)


def _error(excinfo: pytest.ExceptionInfo[WarehouseError]) -> tuple[str, str]:
    return excinfo.value.error_class, excinfo.value.sqlstate


def _commit_time(root: Path, name: TableName, version: int) -> datetime:
    commit = next(c for c in DeltaTable(str(name.path(root))).history() if c["version"] == version)
    return datetime.fromtimestamp(commit["timestamp"] / 1000, tz=UTC)


# -- listing and names ---------------------------------------------------------------------------------------


def test_lists_catalogs_schemas_and_tables_from_the_folders(catalog: Catalog) -> None:
    assert catalog.catalogs() == ["dev", "main"]
    assert catalog.schemas("main") == ["empty_schema", "sales"]
    assert catalog.tables("main", "sales") == ["customers", "orders"]
    assert catalog.tables("main", "empty_schema") == []
    assert catalog.schemas("nope") == [] and catalog.tables("../..", "x") == []
    assert catalog.exists(ORDERS) and not catalog.exists(TableName("main", "sales", "not_a_table"))


def test_resolves_one_two_and_three_part_names_case_insensitively(catalog: Catalog) -> None:
    assert catalog.resolve(["ORDERS"], "main", "sales") == ORDERS
    assert catalog.resolve(["Sales", "Orders"], "main", "default") == ORDERS
    assert catalog.resolve(["dev", "default", "EVENTS"], "main", "sales") == EVENTS


def test_resolve_reports_the_name_as_written(catalog: Catalog) -> None:
    with pytest.raises(WarehouseError) as excinfo:
        catalog.resolve(["Sales", "Missing"], "main", "default")
    assert _error(excinfo) == ("TABLE_OR_VIEW_NOT_FOUND", "42P01")
    assert "`Sales`.`Missing`" in excinfo.value.message


def test_a_table_written_after_the_catalog_was_made_is_seen(catalog: Catalog, root: Path) -> None:
    late = TableName("main", "sales", "late")
    assert not catalog.exists(late)
    _write(root, late, pa.table({"x": [1]}))
    assert catalog.tables("main", "sales") == ["customers", "late", "orders"]
    _write(root, ORDERS, _orders([9], ["90"]), mode="append")
    assert catalog.latest_version(ORDERS) == 5


# -- reading and time travel ---------------------------------------------------------------------------------


def test_dataset_reads_the_latest_version_or_the_one_asked_for(catalog: Catalog, root: Path) -> None:
    latest = catalog.dataset(ORDERS).to_table().sort_by("order_id")
    assert latest.column("order_id").to_pylist() == [1, 3, 4, 5]
    assert latest.column("amount").to_pylist()[0] == Decimal("11")
    assert sorted(catalog.dataset(ORDERS, version=0).to_table().column("order_id").to_pylist()) == [1, 2, 3]
    at_v2 = _commit_time(root, ORDERS, 2) + timedelta(microseconds=500)
    assert sorted(catalog.dataset(ORDERS, timestamp=at_v2).to_table().column("order_id").to_pylist()) == [
        1,
        2,
        3,
        4,
    ]
    naive_v0 = _commit_time(root, ORDERS, 0).replace(tzinfo=None)  # a timestamp without a zone is UTC
    assert catalog.dataset(ORDERS, timestamp=naive_v0).to_table().num_rows == 3


def test_time_travel_errors_like_databricks(catalog: Catalog, root: Path) -> None:
    with pytest.raises(WarehouseError) as excinfo:
        catalog.dataset(ORDERS, version=7)
    assert _error(excinfo) == ("DELTA_VERSION_NOT_FOUND", "22003")
    assert "Available versions: [0, 4]" in excinfo.value.message
    with pytest.raises(WarehouseError) as excinfo:
        catalog.dataset(ORDERS, timestamp=_commit_time(root, ORDERS, 4) + timedelta(seconds=1))
    assert _error(excinfo) == ("DELTA_TIMESTAMP_GREATER_THAN_COMMIT", "42816")
    with pytest.raises(WarehouseError) as excinfo:
        catalog.dataset(ORDERS, timestamp=_commit_time(root, ORDERS, 0) - timedelta(seconds=1))
    assert _error(excinfo) == ("DELTA_TIMESTAMP_EARLIER_THAN_COMMIT_RETENTION", "42816")
    with pytest.raises(WarehouseError) as excinfo:
        catalog.dataset(TableName("main", "sales", "nope"))
    assert _error(excinfo) == ("TABLE_OR_VIEW_NOT_FOUND", "42P01")


def test_versions_before_a_cleaned_log_are_gone(catalog: Catalog, root: Path) -> None:
    DeltaTable(str(ORDERS.path(root))).create_checkpoint()  # at v4
    for version in range(4):
        (ORDERS.path(root) / "_delta_log" / f"{version:020d}.json").unlink()
    with pytest.raises(WarehouseError) as excinfo:
        catalog.dataset(ORDERS, version=1)
    assert excinfo.value.error_class == "DELTA_VERSION_NOT_FOUND"
    assert "Available versions: [4, 4]" in excinfo.value.message
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(ORDERS, 1)
    assert excinfo.value.error_class == "DELTA_VERSION_NOT_FOUND"
    assert catalog.dataset(ORDERS, version=4).to_table().num_rows == 4


# -- types ---------------------------------------------------------------------------------------------------

ALL_TYPES = pa.schema(
    [
        pa.field("c_boolean", pa.bool_()),
        pa.field("c_tinyint", pa.int8()),
        pa.field("c_smallint", pa.int16()),
        pa.field("c_int", pa.int32(), nullable=False, metadata={"comment": "an int"}),
        pa.field("c_bigint", pa.int64()),
        pa.field("c_float", pa.float32()),
        pa.field("c_double", pa.float64()),
        pa.field("c_decimal", pa.decimal128(38, 10)),
        pa.field("c_string", pa.string()),
        pa.field("c_binary", pa.binary()),
        pa.field("c_date", pa.date32()),
        pa.field("c_timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("c_timestamp_ntz", pa.timestamp("us")),
        pa.field("c_array", pa.list_(pa.string())),
        pa.field("c_map", pa.map_(pa.string(), pa.int64())),
        pa.field(
            "c_struct",
            pa.struct([("a", pa.int32()), ("n", pa.struct([("x", pa.list_(pa.decimal128(18, 6)))]))]),
        ),
    ]
)
EXPECTED_TYPES = [
    ("c_boolean", "boolean", "BOOLEAN"),
    ("c_tinyint", "tinyint", "TINYINT"),
    ("c_smallint", "smallint", "SMALLINT"),
    ("c_int", "int", "INT"),
    ("c_bigint", "bigint", "BIGINT"),
    ("c_float", "float", "FLOAT"),
    ("c_double", "double", "DOUBLE"),
    ("c_decimal", "decimal(38,10)", "DECIMAL"),
    ("c_string", "string", "STRING"),
    ("c_binary", "binary", "BINARY"),
    ("c_date", "date", "DATE"),
    ("c_timestamp", "timestamp", "TIMESTAMP"),
    ("c_timestamp_ntz", "timestamp_ntz", "TIMESTAMP_NTZ"),
    ("c_array", "array<string>", "ARRAY"),
    ("c_map", "map<string,bigint>", "MAP"),
    ("c_struct", "struct<a:int,n:struct<x:array<decimal(18,6)>>>", "STRUCT"),
]
TYPED = TableName("main", "types", "all_types")


@pytest.fixture
def typed(catalog: Catalog, root: Path) -> Catalog:
    _write(root, TYPED, pa.Table.from_pylist([], schema=ALL_TYPES), description="every type")
    return catalog


def test_every_delta_type_gets_its_databricks_names(typed: Catalog, root: Path) -> None:
    fields = DeltaTable(str(TYPED.path(root))).schema().fields
    names = [(f.name, databricks_type(f.type), databricks_data_type(f.type)) for f in fields]
    assert names == EXPECTED_TYPES


def test_information_schema_columns_describe_every_type(typed: Catalog) -> None:
    columns = typed.information_schema("main", "columns").to_pylist()
    rows = [row for row in columns if row["table_name"] == "all_types"]
    assert [(r["column_name"], r["full_data_type"], r["data_type"]) for r in rows] == EXPECTED_TYPES
    assert [r["ordinal_position"] for r in rows] == list(range(len(EXPECTED_TYPES)))
    by_name = {r["column_name"]: r for r in rows}
    assert by_name["c_int"]["is_nullable"] == "NO" and by_name["c_bigint"]["is_nullable"] == "YES"
    assert by_name["c_int"]["comment"] == "an int" and by_name["c_bigint"]["comment"] is None
    decimal = by_name["c_decimal"]
    assert (decimal["numeric_precision"], decimal["numeric_precision_radix"], decimal["numeric_scale"]) == (
        38,
        10,
        10,
    )
    assert (by_name["c_int"]["numeric_precision"], by_name["c_int"]["numeric_precision_radix"]) == (32, 2)
    assert by_name["c_string"]["numeric_precision"] is None
    assert by_name["c_date"]["datetime_precision"] == 0
    assert by_name["c_int"]["is_identity"] == "NO" and by_name["c_int"]["is_updatable"] == "YES"


def test_describe_prints_full_type_names(typed: Catalog) -> None:
    described = typed.describe(TYPED).to_pylist()
    assert [(r["col_name"], r["data_type"]) for r in described] == [(n, t) for n, t, _ in EXPECTED_TYPES]
    assert described[3]["comment"] == "an int"
    extended = {r["col_name"]: r["data_type"] for r in typed.describe_extended(TYPED).to_pylist()}
    assert (
        extended["Catalog"] == "main"
        and extended["Type"] == "MANAGED"
        and extended["Comment"] == "every type"
    )


def test_jdbc_columns_carry_java_sql_types(typed: Catalog) -> None:
    columns = typed.jdbc_columns("main", "types", "all%", None).to_pylist()
    by_name = {c["COLUMN_NAME"]: c for c in columns}
    assert [c["COLUMN_NAME"] for c in columns] == [n for n, _, _ in EXPECTED_TYPES]
    assert by_name["c_bigint"]["DATA_TYPE"] == -5 and by_name["c_bigint"]["TYPE_NAME"] == "BIGINT"
    assert (
        by_name["c_decimal"]["TYPE_NAME"] == "DECIMAL(38,10)" and by_name["c_decimal"]["DECIMAL_DIGITS"] == 10
    )
    assert by_name["c_string"]["DATA_TYPE"] == 12 and by_name["c_timestamp"]["DATA_TYPE"] == 93
    assert by_name["c_map"]["TYPE_NAME"] == "MAP<STRING, BIGINT>"
    assert by_name["c_int"]["NULLABLE"] == 0 and by_name["c_int"]["IS_NULLABLE"] == "NO"
    assert by_name["c_int"]["REMARKS"] == "an int" and by_name["c_int"]["ORDINAL_POSITION"] == 3
    assert typed.jdbc_columns("main", "types", "all_types", "c\\_d%").column("COLUMN_NAME").to_pylist() == [
        "c_double",
        "c_decimal",
        "c_date",
    ]


# -- information_schema --------------------------------------------------------------------------------------


def test_a_catalogs_views_cover_that_catalog_and_system_covers_all(catalog: Catalog) -> None:
    main_tables = catalog.information_schema("main", "tables")
    assert [(r["table_schema"], r["table_name"]) for r in main_tables.to_pylist()] == [
        ("sales", "customers"),
        ("sales", "orders"),
    ]
    every = catalog.information_schema("SYSTEM", "TABLES").to_pylist()
    assert [(r["table_catalog"], r["table_name"]) for r in every] == [
        ("dev", "events"),
        ("main", "customers"),
        ("main", "orders"),
    ]
    assert [r["catalog_name"] for r in catalog.information_schema("system", "catalogs").to_pylist()] == [
        "dev",
        "main",
    ]
    schemata = catalog.information_schema("main", "schemata").to_pylist()
    assert [r["schema_name"] for r in schemata] == ["empty_schema", "information_schema", "sales"]


def test_tables_view_shows_comment_format_and_last_commit(catalog: Catalog, root: Path) -> None:
    table = catalog.information_schema("main", "tables")
    assert table.schema.field("last_altered").type == pa.timestamp("us", tz="UTC")
    orders = next(r for r in table.to_pylist() if r["table_name"] == "orders")
    assert orders["table_type"] == "MANAGED" and orders["data_source_format"] == "DELTA"
    assert orders["comment"] == "Orders" and orders["commit_action"] == "PRESERVE"
    assert orders["last_altered"] == _commit_time(root, ORDERS, 4)
    assert orders["created"] <= orders["last_altered"]


def test_primary_keys_show_in_constraint_views(catalog: Catalog) -> None:
    constraints = catalog.information_schema("main", "table_constraints").to_pylist()
    assert [
        (c["table_name"], c["constraint_name"], c["constraint_type"], c["enforced"]) for c in constraints
    ] == [
        ("customers", "customers_pk", "PRIMARY KEY", "NO"),
        ("orders", "orders_pk", "PRIMARY KEY", "NO"),
    ]
    usage = catalog.information_schema("main", "key_column_usage").to_pylist()
    assert [(u["table_name"], u["column_name"], u["ordinal_position"]) for u in usage] == [
        ("customers", "region", 1),
        ("customers", "customer_id", 2),
        ("orders", "order_id", 1),
    ]
    assert catalog.information_schema("dev", "table_constraints").num_rows == 0


def test_unknown_views_and_catalogs_are_not_found(catalog: Catalog) -> None:
    for catalog_name, view in [("main", "routines"), ("nope", "tables")]:
        with pytest.raises(WarehouseError) as excinfo:
            catalog.information_schema(catalog_name, view)
        assert _error(excinfo) == ("TABLE_OR_VIEW_NOT_FOUND", "42P01")


def test_jdbc_listings_filter_with_like_patterns(catalog: Catalog) -> None:
    assert catalog.jdbc_catalogs().column("TABLE_CAT").to_pylist() == ["dev", "main"]
    schemas = catalog.jdbc_schemas("main", "s%").to_pylist()
    assert schemas == [{"TABLE_SCHEM": "sales", "TABLE_CATALOG": "main"}]
    tables = catalog.jdbc_tables(None, None, "%ers", None).to_pylist()
    assert [(t["TABLE_CAT"], t["TABLE_NAME"], t["TABLE_TYPE"]) for t in tables] == [
        ("main", "customers", "TABLE"),
        ("main", "orders", "TABLE"),
    ]
    assert tables[1]["REMARKS"] == "Orders"
    assert catalog.jdbc_tables("main", "sales", "orders", ["VIEW"]).num_rows == 0
    assert catalog.jdbc_tables("main", "sales", "order_", ["TABLE"]).num_rows == 1


# -- DESCRIBE HISTORY ----------------------------------------------------------------------------------------


def test_history_is_newest_first_in_databricks_columns(catalog: Catalog) -> None:
    history = catalog.history(ORDERS)
    assert history.schema.field("version").type == pa.int64()
    assert history.schema.field("operationParameters").type == pa.map_(pa.string(), pa.string())
    rows = history.to_pylist()
    assert [(r["version"], r["operation"]) for r in rows] == [
        (4, "DELETE"),
        (3, "MERGE"),
        (2, "WRITE"),
        (1, "SET TBLPROPERTIES"),
        (0, "WRITE"),
    ]
    assert dict(rows[2]["operationParameters"])["mode"] == "Append" and rows[2]["isBlindAppend"] is True
    assert dict(rows[2]["operationMetrics"])["numOutputRows"] == "1"
    assert dict(rows[1]["operationMetrics"])["numTargetRowsUpdated"] == "1"
    assert dict(rows[0]["operationMetrics"])["numDeletedRows"] == "1"
    assert rows[0]["readVersion"] == 3 and rows[1]["isBlindAppend"] is False
    assert [r["version"] for r in catalog.history(ORDERS, limit=1).to_pylist()] == [4]


# -- table_changes -------------------------------------------------------------------------------------------


def _changes(reader: pa.RecordBatchReader) -> list[tuple[int, str, int, str]]:
    rows = reader.read_all().to_pylist()
    found = [(r["_commit_version"], r["_change_type"], r["order_id"], str(r["amount"])) for r in rows]
    return sorted(found)


def test_changes_after_append_merge_and_delete(catalog: Catalog) -> None:
    reader = catalog.changes(ORDERS, 2)
    assert reader.schema.field("_change_type").type == pa.string()
    assert reader.schema.field("_commit_version").type == pa.int64()
    assert reader.schema.field("_commit_timestamp").type == pa.timestamp("us", tz="UTC")
    assert reader.schema.field("amount").type == pa.decimal128(18, 6)
    assert _changes(reader) == [
        (2, "insert", 4, "40.000000"),
        (3, "insert", 5, "50.000000"),
        (3, "update_postimage", 1, "11.000000"),
        (3, "update_preimage", 1, "10.000000"),
        (4, "delete", 2, "20.000000"),
    ]


def test_changes_end_is_inclusive_and_clamped_to_the_latest(catalog: Catalog) -> None:
    assert [c[:2] for c in _changes(catalog.changes(ORDERS, 0, 2))] == [(0, "insert")] * 3 + [(2, "insert")]
    assert [c[:2] for c in _changes(catalog.changes(ORDERS, 4, 99))] == [(4, "delete")]


def test_changes_by_timestamp(catalog: Catalog, root: Path) -> None:
    start = _commit_time(root, ORDERS, 3) - timedelta(microseconds=500)  # after v2: starts at v3
    end = _commit_time(root, ORDERS, 3) + timedelta(microseconds=500)  # before v4: ends at v3
    assert {c[0] for c in _changes(catalog.changes(ORDERS, start, end))} == {3}
    commit = _commit_time(root, ORDERS, 4)
    rows = catalog.changes(ORDERS, commit).read_all().to_pylist()
    assert [(r["_change_type"], r["_commit_timestamp"]) for r in rows] == [("delete", commit)]
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(ORDERS, commit + timedelta(seconds=1))
    assert _error(excinfo) == ("DELTA_TIMESTAMP_GREATER_THAN_COMMIT", "42816")


def test_change_range_errors(catalog: Catalog) -> None:
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(ORDERS, 5)
    assert _error(excinfo) == ("DELTA_CDC_START_VERSION_AFTER_LATEST", "22003")
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(ORDERS, 3, 2)
    assert _error(excinfo) == ("DELTA_INVALID_CDC_RANGE", "22003")


def test_changes_need_the_change_data_feed(catalog: Catalog, root: Path) -> None:
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(EVENTS, 0)
    assert _error(excinfo) == ("DELTA_MISSING_CHANGE_DATA", "KD002")
    _set_properties(root, EVENTS, CDF_ON)  # v1: changes are recorded from here on
    _write(root, EVENTS, pa.table({"event_id": ["e2"]}), mode="append")  # v2
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(EVENTS, 0)
    assert "not recorded for version [0]" in excinfo.value.message
    rows = catalog.changes(EVENTS, 1).read_all().to_pylist()
    assert [(r["event_id"], r["_change_type"], r["_commit_version"]) for r in rows] == [("e2", "insert", 2)]


def test_changes_after_the_feed_was_switched_off_are_refused(catalog: Catalog, root: Path) -> None:
    _set_properties(root, ORDERS, {"delta.enableChangeDataFeed": "false"})  # v5
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(ORDERS, 3)
    assert excinfo.value.error_class == "DELTA_MISSING_CHANGE_DATA"
    assert "range [3 , 5]" in excinfo.value.message and "version [5]" in excinfo.value.message
    assert len(_changes(catalog.changes(ORDERS, 3, 4))) == 4


def test_vacuumed_change_files_are_reported(catalog: Catalog, root: Path) -> None:
    shutil.rmtree(ORDERS.path(root) / "_change_data")
    with pytest.raises(WarehouseError) as excinfo:
        catalog.changes(ORDERS, 3)
    assert _error(excinfo) == ("DELTA_CHANGE_DATA_FILE_NOT_FOUND", "42K03")
    assert len(_changes(catalog.changes(ORDERS, 0, 2))) == 4  # versions without change files still read

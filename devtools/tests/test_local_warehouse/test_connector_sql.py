"""Databricks SQL through the real databricks-sql-connector against the local warehouse."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from databricks.sql.exc import DatabaseError, ServerOperationError
from deltalake import DeltaTable

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse
from zenskar_devtools.testing import connect

UTC = dt.UTC


def _events(ids: range, updated: dt.datetime) -> pa.Table:
    return pa.table(
        {
            "event_id": pa.array([f"e{i:07d}" for i in ids], pa.string()),
            "customer_id": pa.array([f"c{i % 7}" for i in ids], pa.string()),
            "quantity": pa.array([Decimal(i) / 4 for i in ids], pa.decimal128(18, 6)),
            "updated_at": pa.array(
                [updated + dt.timedelta(seconds=i) for i in ids], pa.timestamp("us", "UTC")
            ),
        }
    )


@pytest.fixture(scope="module")
def sales(warehouse: LocalWarehouse) -> str:
    """`main.sales.events`: v0 is empty, v1 has 100 rows, v2 adds 50, v3 updates 10, v4 deletes 5."""
    root = warehouse.root
    t0 = dt.datetime(2026, 3, 1, tzinfo=UTC)
    tables.create_table(
        root,
        "main.sales.events",
        _events(range(100), t0),
        primary_key=["event_id"],
        change_data_feed=True,
        comment="Sales events",
    )
    tables.append(root, "main.sales.events", _events(range(100, 150), t0))
    updated = _events(range(10), t0 + dt.timedelta(days=1))
    tables.upsert(
        root,
        "main.sales.events",
        updated.set_column(2, "quantity", pa.array([Decimal(99)] * 10, pa.decimal128(18, 6))),
        ["event_id"],
    )
    tables.delete(root, "main.sales.events", "event_id >= 'e0000145'")
    return "main.sales.events"


def test_three_two_and_one_part_names_and_use(cursor: Any, sales: str) -> None:
    cursor.execute("SELECT count(*) FROM main.sales.events")
    assert cursor.fetchone()[0] == 145
    cursor.execute("USE CATALOG main")
    cursor.execute("SELECT count(*) FROM `sales`.`events`")
    assert cursor.fetchone()[0] == 145
    cursor.execute("USE SCHEMA sales")
    cursor.execute("SELECT count(*) AS n FROM events WHERE customer_id = 'c1'")
    assert cursor.fetchone().n == len([i for i in range(145) if i % 7 == 1])
    cursor.execute("SELECT current_catalog(), current_schema(), current_timezone()")
    assert tuple(cursor.fetchone()) == ("main", "sales", "UTC")
    cursor.execute("SET TIME ZONE 'Europe/Berlin'")
    cursor.execute("SELECT current_timezone()")
    assert cursor.fetchone()[0] == "Europe/Berlin"


def test_initial_namespace_from_connect(warehouse: LocalWarehouse, sales: str) -> None:
    with connect(warehouse.info, catalog="main", schema="sales") as connection, connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        assert cur.fetchone()[0] == 145


def test_reads_each_version_and_timestamp(cursor: Any, sales: str) -> None:
    counts = {}
    for version in range(5):
        cursor.execute(f"SELECT count(*) FROM {sales} VERSION AS OF {version}")
        counts[version] = cursor.fetchone()[0]
    assert counts == {0: 0, 1: 100, 2: 150, 3: 150, 4: 145}
    cursor.execute(f"SELECT max(quantity) FROM {sales} VERSION AS OF 2")
    assert cursor.fetchone()[0] == Decimal("37.25")
    cursor.execute(f"SELECT max(quantity) FROM {sales} VERSION AS OF 3")
    assert cursor.fetchone()[0] == Decimal(99)
    cursor.execute(f"DESCRIBE HISTORY {sales}")
    history = cursor.fetchall()
    assert [row.version for row in history] == [4, 3, 2, 1, 0]
    as_of = history[2].timestamp  # version 2's commit time
    cursor.execute(f"SELECT count(*) FROM {sales} TIMESTAMP AS OF '{as_of.isoformat()}'")
    assert cursor.fetchone()[0] == 150


def test_describe_history_limit_and_operations(cursor: Any, sales: str) -> None:
    cursor.execute(f"DESCRIBE HISTORY {sales} LIMIT 1")
    rows = cursor.fetchall()
    assert len(rows) == 1 and rows[0].version == 4 and rows[0].operation == "DELETE"


def test_table_changes_after_append_update_and_delete(cursor: Any, sales: str) -> None:
    cursor.execute(
        "SELECT _change_type, _commit_version, count(*) AS n FROM table_changes('main.sales.events', 2) "
        "GROUP BY ALL ORDER BY 2, 1"
    )
    got = [tuple(r) for r in cursor.fetchall()]
    assert got == [
        ("insert", 2, 50),
        ("update_postimage", 3, 10),
        ("update_preimage", 3, 10),
        ("delete", 4, 5),
    ]
    cursor.execute("SELECT count(*) FROM table_changes('main.sales.events', 2, 2)")
    assert cursor.fetchone()[0] == 50


def test_table_changes_errors(cursor: Any, sales: str, warehouse: LocalWarehouse) -> None:
    with pytest.raises(ServerOperationError, match="DELTA_CDC_START_VERSION_AFTER_LATEST"):
        cursor.execute("SELECT * FROM table_changes('main.sales.events', 99)")
    tables.create_table(
        warehouse.root, "main.sales.no_feed", _events(range(3), dt.datetime(2026, 1, 1, tzinfo=UTC))
    )
    with pytest.raises(ServerOperationError, match=r"(?i)change data"):
        cursor.execute("SELECT * FROM table_changes('main.sales.no_feed', 0)")
    cursor.execute("SELECT 1 AS still_usable")
    assert cursor.fetchone()[0] == 1


def test_named_and_positional_parameters(cursor: Any, sales: str) -> None:
    since = dt.datetime(2026, 3, 1, 0, 1, 30, tzinfo=UTC)
    cursor.execute(
        f"SELECT count(*) FROM {sales} WHERE updated_at >= :since AND customer_id = :customer",
        {"since": since, "customer": "c3"},
    )
    # rows 0-9 were updated a day later by version 3, so they are all after `since`
    expected = len([i for i in range(145) if (i < 10 or i >= 90) and i % 7 == 3])
    assert cursor.fetchone()[0] == expected
    cursor.execute(
        f"SELECT count(*) FROM {sales} WHERE customer_id = ? AND quantity > ?", ["c3", Decimal("20")]
    )
    quantity = {i: (99 if i < 10 else i / 4) for i in range(145)}  # version 3 set rows 0-9 to 99
    assert cursor.fetchone()[0] == len([i for i in range(145) if i % 7 == 3 and quantity[i] > 20])


def test_parameter_is_never_sql(cursor: Any, sales: str) -> None:
    cursor.execute(f"SELECT count(*) FROM {sales} WHERE customer_id = :c", {"c": "c1' OR '1'='1"})
    assert cursor.fetchone()[0] == 0


def test_information_schema_is_per_catalog(cursor: Any, sales: str, warehouse: LocalWarehouse) -> None:
    tables.create_table(warehouse.root, "other.ops.jobs", pa.table({"id": pa.array([1], pa.int64())}))
    cursor.execute(
        "SELECT table_catalog, table_name FROM main.information_schema.tables WHERE table_schema = 'sales'"
    )
    names = {tuple(r) for r in cursor.fetchall()}
    assert ("main", "events") in names and all(c == "main" for c, _ in names)
    cursor.execute("SELECT table_catalog FROM system.information_schema.tables")
    assert {"main", "other"} <= {r[0] for r in cursor.fetchall()}
    cursor.execute(
        "SELECT column_name, ordinal_position, full_data_type, is_nullable "
        "FROM main.information_schema.columns WHERE table_schema = 'sales' AND table_name = 'events' "
        "ORDER BY ordinal_position"
    )
    assert [tuple(r) for r in cursor.fetchall()] == [
        ("event_id", 0, "string", "NO"),
        ("customer_id", 1, "string", "YES"),
        ("quantity", 2, "decimal(18,6)", "YES"),
        ("updated_at", 3, "timestamp", "YES"),
    ]
    cursor.execute(
        "SELECT k.column_name FROM main.information_schema.table_constraints c "
        "JOIN main.information_schema.key_column_usage k "
        "USING (constraint_catalog, constraint_schema, constraint_name) "
        "WHERE c.table_name = 'events' AND c.constraint_type = 'PRIMARY KEY'"
    )
    assert [r[0] for r in cursor.fetchall()] == ["event_id"]
    cursor.execute(
        "SELECT comment, last_altered FROM main.information_schema.tables WHERE table_name = 'events'"
    )
    comment, last_altered = cursor.fetchone()
    assert comment == "Sales events" and last_altered.tzinfo is not None


def test_show_and_describe(cursor: Any, sales: str) -> None:
    cursor.execute("SHOW CATALOGS")
    assert "main" in {r[0] for r in cursor.fetchall()}
    cursor.execute("SHOW SCHEMAS IN main")
    assert "sales" in {r[0] for r in cursor.fetchall()}
    cursor.execute("SHOW TABLES IN main.sales")
    assert "events" in {r.tableName for r in cursor.fetchall()}
    cursor.execute(f"DESCRIBE TABLE {sales}")
    described = {r.col_name: r.data_type for r in cursor.fetchall()}
    assert described["quantity"] == "decimal(18,6)" and described["updated_at"] == "timestamp"


def test_metadata_calls(cursor: Any, sales: str) -> None:
    cursor.catalogs()
    assert "main" in {r.TABLE_CAT for r in cursor.fetchall()}
    cursor.schemas(catalog_name="main")
    assert "sales" in {r.TABLE_SCHEM for r in cursor.fetchall()}
    cursor.tables(catalog_name="main", schema_name="sal%")
    assert "events" in {r.TABLE_NAME for r in cursor.fetchall()}
    cursor.columns(catalog_name="main", schema_name="sales", table_name="events")
    columns = [(r.COLUMN_NAME, r.TYPE_NAME) for r in cursor.fetchall()]
    assert [c for c, _ in columns] == ["event_id", "customer_id", "quantity", "updated_at"]


def test_errors_name_the_class_and_keep_the_session(cursor: Any, sales: str) -> None:
    cases = {
        "SELEC 1": "PARSE_SYNTAX_ERROR",
        "SELECT * FROM main.sales.nope": "TABLE_OR_VIEW_NOT_FOUND",
        f"SELECT no_such_column FROM {sales}": "UNRESOLVED_COLUMN",
        "SELECT 1 / 0": "DIVIDE_BY_ZERO",
        "SELECT CAST('abc' AS INT)": "CAST_INVALID_INPUT",
    }
    for statement, error_class in cases.items():
        with pytest.raises(ServerOperationError, match=error_class) as raised:
            cursor.execute(statement)
        assert "SQLSTATE" in str(raised.value)
    cursor.execute("SELECT 2 AS still_usable")
    assert cursor.fetchone()[0] == 2


def test_a_table_written_by_another_process_is_seen_next_statement(
    cursor: Any, warehouse: LocalWarehouse
) -> None:
    tables.create_table(warehouse.root, "main.live.t", pa.table({"id": pa.array([1, 2], pa.int64())}))
    cursor.execute("SELECT count(*) FROM main.live.t")
    assert cursor.fetchone()[0] == 2
    tables.append(warehouse.root, "main.live.t", pa.table({"id": pa.array([3], pa.int64())}))
    cursor.execute("SELECT count(*) FROM main.live.t")
    assert cursor.fetchone()[0] == 3
    widened = pa.table({"id": pa.array([4], pa.int64()), "note": pa.array(["new column"], pa.string())})
    from deltalake import write_deltalake

    write_deltalake(str(Path(warehouse.root) / "main/live/t"), widened, mode="append", schema_mode="merge")
    cursor.execute("SELECT id, note FROM main.live.t ORDER BY id")
    assert [tuple(r) for r in cursor.fetchall()][-2:] == [(3, None), (4, "new column")]


def test_pages_one_million_rows_exactly(warehouse: LocalWarehouse) -> None:
    n = 1_000_000
    ids = pa.array(range(n), pa.int64())
    data = pa.table(
        {
            "id": ids,
            "bucket": pc.cast(pc.bit_wise_and(ids, 1023), pa.int32()),
            "label": pc.cast(ids, pa.string()),
        }
    )
    tables.create_table(warehouse.root, "main.big.rows", data)
    expected = DeltaTable(str(Path(warehouse.root) / "main/big/rows")).to_pyarrow_table()
    with connect(warehouse.info) as connection, connection.cursor(arraysize=100_000) as cur:
        cur.execute("SELECT id, bucket, label FROM main.big.rows")
        count, id_sum, label_chars = 0, 0, 0
        while (batch := cur.fetchmany_arrow(50_000)).num_rows:
            count += batch.num_rows
            id_sum += pc.sum(batch["id"]).as_py()
            label_chars += pc.sum(pc.utf8_length(batch["label"])).as_py()
    assert count == n
    assert id_sum == pc.sum(expected["id"]).as_py()
    assert label_chars == pc.sum(pc.utf8_length(expected["label"])).as_py()


def test_four_clients_at_once(warehouse: LocalWarehouse, sales: str) -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with connect(warehouse.info) as connection, connection.cursor() as cur:
                results[k] = []
                for _ in range(5):
                    cur.execute(f"SELECT count(*) FROM {sales} WHERE customer_id = :c", {"c": f"c{k}"})
                    results[k].append(cur.fetchone()[0])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    for k in range(4):
        assert results[k] == [len([i for i in range(145) if i % 7 == k])] * 5


def test_table_changes_after_update_and_merge_from_another_process(
    cursor: Any, warehouse: LocalWarehouse
) -> None:
    tables.create_table(
        warehouse.root,
        "main.sales.plans",
        pa.table({"id": pa.array([1, 2, 3], pa.int64()), "plan": ["free", "pro", "team"]}),
        primary_key=["id"],
        change_data_feed=True,
    )
    # Another process writes the next versions while this session stays open: an UPDATE, then a MERGE.
    script = (
        "import sys, pyarrow as pa\n"
        "from deltalake import DeltaTable\n"
        "t = DeltaTable(sys.argv[1])\n"
        "t.update(updates={'plan': \"'enterprise'\"}, predicate='id = 2')\n"
        "src = pa.table({'id': pa.array([3, 4], pa.int64()), 'plan': ['pro', 'free']})\n"
        "(t.merge(src, 'target.id = source.id', source_alias='source', target_alias='target')\n"
        "  .when_matched_update_all().when_not_matched_insert_all().execute())\n"
    )
    path = Path(warehouse.root) / "main" / "sales" / "plans"
    subprocess.run([sys.executable, "-c", script, str(path)], check=True)
    cursor.execute(
        "SELECT _commit_version, _change_type, id, plan FROM table_changes('main.sales.plans', 2) "
        "ORDER BY _commit_version, id, _change_type"
    )
    assert [tuple(r) for r in cursor.fetchall()] == [
        (2, "update_postimage", 2, "enterprise"),
        (2, "update_preimage", 2, "pro"),
        (3, "update_postimage", 3, "pro"),
        (3, "update_preimage", 3, "team"),
        (3, "insert", 4, "free"),
    ]
    cursor.execute("SELECT id, plan FROM main.sales.plans ORDER BY id")
    assert [tuple(r) for r in cursor.fetchall()] == [(1, "free"), (2, "enterprise"), (3, "pro"), (4, "free")]


def test_from_json_reads_a_parameter_into_typed_rows(cursor: Any) -> None:
    """`explode(from_json(:json, '<DDL>'))` in FROM, as a read of many windows sends its windows."""
    cursor.execute(
        "SELECT x.w.id AS id, CAST(x.w.at AS TIMESTAMP) AS at, x.w.note AS note "
        "FROM explode(from_json(:rows, 'ARRAY<STRUCT<id: BIGINT, at: STRING, note: STRING>>')) AS x(w) "
        "ORDER BY id",
        {"rows": '[{"id": 2, "at": "2026-01-01T01:30:00.000001+00:00", "note": null}, {"id": 1}]'},
    )
    table = cursor.fetchall_arrow()
    assert table.column("id").to_pylist() == [1, 2]
    assert table.column("at").to_pylist() == [None, dt.datetime(2026, 1, 1, 1, 30, 0, 1, tzinfo=dt.UTC)]
    assert table.column("note").to_pylist() == [None, None]  # a missing field reads as NULL, as in Spark


def test_a_row_limit_ends_the_result_there_across_pages(warehouse: LocalWarehouse) -> None:
    data = pa.table({"id": pa.array(range(2_000), pa.int64())})
    tables.create_table(warehouse.root, "main.limits.rows", data)
    query = "SELECT id FROM main.limits.rows ORDER BY id"
    with connect(warehouse.info) as connection:
        with connection.cursor(arraysize=300, row_limit=1_000) as cur:
            cur.execute(query)
            # Fetched in pages of 300: the limit holds across them.
            assert [row[0] for row in cur.fetchall()] == list(range(1_000))
        with connection.cursor(row_limit=5_000) as cur:
            cur.execute(query)
            assert len(cur.fetchall()) == 2_000  # a limit above the result leaves it whole
        with connection.cursor() as cur:
            cur.execute(query)
            assert len(cur.fetchall()) == 2_000


def test_timestamps_come_back_in_the_session_time_zone(warehouse: LocalWarehouse) -> None:
    amsterdam = ZoneInfo("Europe/Amsterdam")
    instant = "CAST('2021-09-30 11:27:35.123+04:00' AS TIMESTAMP)"
    amsterdam_session = connect(warehouse.info, session_configuration={"timezone": "Europe/Amsterdam"})
    with amsterdam_session as connection, connection.cursor() as cur:
        cur.execute(f"SELECT {instant} AS t, current_timezone() AS zone")
        moment, zone = cur.fetchone()
        assert zone == "Europe/Amsterdam"
        assert moment == dt.datetime(2021, 9, 30, 9, 27, 35, 123000, tzinfo=amsterdam)
        assert moment.utcoffset() == dt.timedelta(hours=2)  # the same instant, shown in CEST
        cur.execute("SET TIME ZONE 'America/New_York'")
        cur.execute(f"SELECT {instant} AS t")
        (moment,) = cur.fetchone()
        assert moment.utcoffset() == dt.timedelta(hours=-4)
        assert moment == dt.datetime(2021, 9, 30, 7, 27, 35, 123000, tzinfo=dt.UTC)
        cur.execute("SELECT TIMESTAMP'2021-12-01 10:00:00' AS t")  # no offset: read in the session's zone
        assert cur.fetchone()[0] == dt.datetime(2021, 12, 1, 15, tzinfo=dt.UTC)
    with connect(warehouse.info) as connection, connection.cursor() as cur:
        cur.execute(f"SELECT {instant} AS t")
        assert cur.fetchone()[0].utcoffset() == dt.timedelta(0)  # a session left as it is: UTC
    with pytest.raises(DatabaseError, match="Europe/Atlantis"):
        connect(warehouse.info, session_configuration={"timezone": "Europe/Atlantis"})

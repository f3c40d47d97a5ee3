"""Column names as Unity Catalog allows them (Unicode, keywords, spaces, dots, commas, backticks), written
with `deltalake`, through the real connector: quoted in statements, answered by the metadata calls."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse

TABLE = "main.odd.names"
NAMES = ["número", "order", "with space", "a.b", "we`ird", "c,d"]
KEY = ["número", "c,d"]


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@pytest.fixture(scope="module")
def odd(warehouse: LocalWarehouse) -> str:
    """Two versions of rows, the change data feed on, a primary key of two odd columns (one with a comma)."""
    schema = pa.schema(
        [
            ("número", pa.string()),
            ("order", pa.int64()),
            ("with space", pa.timestamp("us", tz="UTC")),
            ("a.b", pa.float64()),
            ("we`ird", pa.string()),
            ("c,d", pa.string()),
        ]
    )
    day = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [
        {
            "número": f"n{i}",
            "order": i,
            "with space": day + dt.timedelta(hours=i),
            "a.b": i / 2,
            "we`ird": "`",
        }
        | {"c,d": "x"}
        for i in range(4)
    ]
    tables.create_table(
        warehouse.root, TABLE, pa.Table.from_pylist(rows, schema), primary_key=KEY, change_data_feed=True
    )
    changed = {**rows[1], "order": 10}
    tables.upsert(warehouse.root, TABLE, pa.Table.from_pylist([changed], schema), KEY)
    return TABLE


def test_quoted_names_select_filter_group_and_order(cursor: Any, odd: str) -> None:
    columns = ", ".join(_quoted(n) for n in NAMES)
    cursor.execute(
        f"SELECT {columns} FROM {odd} VERSION AS OF 1 WHERE `order` >= :low ORDER BY `número` DESC",
        {"low": 2},
    )
    table = cursor.fetchall_arrow()
    assert table.column_names == NAMES
    assert table.column("número").to_pylist() == ["n3", "n2"]
    assert table.column("we`ird").to_pylist() == ["`", "`"]
    cursor.execute(
        f"SELECT date_trunc('DAY', `with space`) AS bucket, count(*) AS n, sum(`a.b`) AS total FROM {odd} "
        "GROUP BY 1"
    )
    assert [tuple(r) for r in cursor.fetchall()] == [(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), 4, 3.0)]


def test_the_change_feed_keeps_odd_names(cursor: Any, odd: str) -> None:
    cursor.execute(
        f"SELECT `número`, `order`, `c,d`, _change_type FROM table_changes('{odd}', 2, 2) ORDER BY `order`"
    )
    assert [tuple(r) for r in cursor.fetchall()] == [
        ("n1", 1, "x", "update_preimage"),
        ("n1", 10, "x", "update_postimage"),
    ]


def test_information_schema_and_metadata_calls_answer_the_names(cursor: Any, odd: str) -> None:
    cursor.execute(
        "SELECT column_name FROM main.information_schema.columns "
        "WHERE table_schema = 'odd' AND table_name = 'names' ORDER BY ordinal_position"
    )
    assert [r[0] for r in cursor.fetchall()] == NAMES
    cursor.execute(
        "SELECT k.column_name FROM main.information_schema.table_constraints c "
        "JOIN main.information_schema.key_column_usage k "
        "USING (constraint_catalog, constraint_schema, constraint_name) "
        "WHERE c.table_name = 'names' AND c.constraint_type = 'PRIMARY KEY' ORDER BY k.ordinal_position"
    )
    assert [r[0] for r in cursor.fetchall()] == KEY
    cursor.execute(f"DESCRIBE TABLE {odd}")
    assert [r.col_name for r in cursor.fetchall()][: len(NAMES)] == NAMES
    cursor.columns(catalog_name="main", schema_name="odd", table_name="names")
    assert [r.COLUMN_NAME for r in cursor.fetchall()] == NAMES

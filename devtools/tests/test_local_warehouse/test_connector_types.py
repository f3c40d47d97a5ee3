"""Every Databricks type both ways: stored in Delta, read through the connector, and sent as a parameter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from zenskar_devtools.local_warehouse import tables
from zenskar_devtools.local_warehouse.server import LocalWarehouse

ALL_TYPES = pa.schema(
    [
        ("b", pa.bool_()),
        ("i8", pa.int8()),
        ("i16", pa.int16()),
        ("i32", pa.int32()),
        ("i64", pa.int64()),
        ("f32", pa.float32()),
        ("f64", pa.float64()),
        ("dec", pa.decimal128(38, 10)),
        ("s", pa.string()),
        ("bin", pa.binary()),
        ("d", pa.date32()),
        ("ts", pa.timestamp("us", "UTC")),
        ("ntz", pa.timestamp("us")),
        ("arr", pa.list_(pa.string())),
        ("m", pa.map_(pa.string(), pa.int64())),
        ("st", pa.struct([("region", pa.string()), ("units", pa.int32())])),
    ]
)
ROW = {
    "b": True,
    "i8": -8,
    "i16": 1600,
    "i32": -320000,
    "i64": 2**62,
    "f32": 1.5,
    "f64": 2.25,
    "dec": Decimal("1234567890123456789012345678.0123456789"),
    "s": "usage ✓",
    "bin": b"\x00\x01\xff",
    "d": dt.date(2026, 2, 28),
    "ts": dt.datetime(2026, 2, 28, 23, 30, 0, 123456, tzinfo=dt.UTC),
    "ntz": dt.datetime(2026, 2, 28, 23, 30, 0, 123456),
    "arr": ["a", "b"],
    "m": [("k", 1)],
    "st": {"region": "eu", "units": 3},
}
DATABRICKS_NAMES = {
    "b": "boolean",
    "i8": "tinyint",
    "i16": "smallint",
    "i32": "int",
    "i64": "bigint",
    "f32": "float",
    "f64": "double",
    "dec": "decimal",
    "s": "string",
    "bin": "binary",
    "d": "date",
    "ts": "timestamp",
    "ntz": "timestamp",
    "arr": "array",
    "m": "map",
    "st": "struct",
}


@pytest.fixture(scope="module")
def typed(warehouse: LocalWarehouse) -> str:
    nulls = {name: None for name in ALL_TYPES.names}
    tables.create_table(warehouse.root, "main.types.all_types", pa.Table.from_pylist([ROW, nulls], ALL_TYPES))
    return "main.types.all_types"


def test_every_type_reads_back_as_written(cursor: Any, typed: str) -> None:
    cursor.execute(f"SELECT * FROM {typed} ORDER BY i64 NULLS LAST")
    table = cursor.fetchall_arrow()
    assert table.schema.names == ALL_TYPES.names
    for name in ALL_TYPES.names:
        expected_type = ALL_TYPES.field(name).type
        assert table.schema.field(name).type.equals(expected_type) or (
            name == "ts" and pa.types.is_timestamp(table.schema.field(name).type)
        ), name
    assert table.to_pylist()[0] == ROW | {"m": [("k", 1)]}
    assert all(v is None for v in table.to_pylist()[1].values())
    described = {d[0]: d[1] for d in cursor.description}
    assert described == DATABRICKS_NAMES
    precision_scale = {d[0]: (d[4], d[5]) for d in cursor.description}
    assert precision_scale["dec"] == (38, 10)


def test_timestamp_is_an_instant_and_ntz_is_wall_time(cursor: Any, typed: str) -> None:
    cursor.execute(f"SELECT ts, ntz FROM {typed} WHERE ts IS NOT NULL")
    ts, ntz = cursor.fetchone()
    assert ts.utcoffset() == dt.timedelta(0) and ts.replace(tzinfo=None) == ntz
    cursor.execute(
        f"SELECT count(*) FROM {typed} WHERE ts = :instant",
        {"instant": dt.datetime(2026, 3, 1, 0, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))},
    )
    assert cursor.fetchone()[0] == 1


PARAMETERS = [
    (True, bool),
    (7, int),
    (2**40, int),
    (1.25, float),
    (Decimal("12.345"), Decimal),
    ("text", str),
    (dt.date(2026, 1, 31), dt.date),
    (dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC), dt.datetime),
]


@pytest.mark.parametrize(("value", "python_type"), PARAMETERS, ids=[type(v).__name__ for v, _ in PARAMETERS])
def test_parameters_of_each_type_round_trip(cursor: Any, value: Any, python_type: type) -> None:
    cursor.execute("SELECT :v AS v", {"v": value})
    got = cursor.fetchone()[0]
    assert isinstance(got, python_type) and got == value


def test_null_parameter(cursor: Any) -> None:
    cursor.execute("SELECT :v IS NULL AS missing", {"v": None})
    assert cursor.fetchone()[0] is True


def test_ntz_parameter_compares_as_wall_time(cursor: Any, typed: str) -> None:
    from databricks.sql.parameters import TimestampNTZParameter

    wall = dt.datetime(2026, 2, 28, 23, 30, 0, 123456)
    cursor.execute(
        f"SELECT count(*) FROM {typed} WHERE ntz = :w", [TimestampNTZParameter(name="w", value=wall)]
    )
    assert cursor.fetchone()[0] == 1

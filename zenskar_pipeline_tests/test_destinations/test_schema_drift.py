"""Source columns that change: added ones appear, safe widenings widen, the rest stop before writing."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from zenskar_pipeline.destinations import PARTITION, DeltaDestination, SchemaDriftError

from .rows import landed


def usage(tmp_path: Path) -> DeltaDestination:
    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    copy.merge_deduped(
        pa.table(
            {
                "id": pa.array([1], pa.int32()),
                "qty": pa.array([Decimal("1.5")], pa.decimal128(18, 6)),
                PARTITION: ["p1"],
            }
        ),
        ["id"],
        None,
        source_version=1,
    )
    return copy


def test_an_added_column_appears_with_older_rows_null(tmp_path: Path) -> None:
    copy = usage(tmp_path)

    copy.merge_deduped(
        pa.table(
            {
                "id": pa.array([2], pa.int32()),
                "qty": pa.array([Decimal(2)], pa.decimal128(18, 6)),
                "unit": ["kg"],
                PARTITION: ["p1"],
            }
        ),
        ["id"],
        None,
        source_version=2,
    )
    copy.replace(
        pa.table(
            {
                "id": pa.array([3], pa.int32()),
                "qty": pa.array([None], pa.decimal128(18, 6)),
                "unit": ["g"],
                "site": ["x"],
                PARTITION: ["p2"],
            }
        ),
        ["p2"],
        source_version=3,
    )

    assert landed(copy.table_uri, "id", "unit", "site") == [(1, None, None), (2, "kg", None), (3, "g", "x")]


@pytest.mark.parametrize(
    ("column", "new_type", "old_name", "new_name"),
    [
        ("id", pa.string(), "integer", "string"),
        ("id", pa.int16(), "integer", "short"),
        ("qty", pa.decimal128(10, 2), "decimal(18,6)", "decimal(10,2)"),
        ("qty", pa.decimal128(20, 8), "decimal(18,6)", "decimal(20,8)"),
    ],
)
def test_an_incompatible_type_change_names_the_column_and_writes_nothing(
    tmp_path: Path, column: str, new_type: pa.DataType, old_name: str, new_name: str
) -> None:
    copy = usage(tmp_path)
    version = copy.version()
    values = {
        "id": pa.array([1], pa.int32()),
        "qty": pa.array([None], pa.decimal128(18, 6)),
        PARTITION: ["p1"],
    }
    values[column] = pa.array([None], new_type)

    with pytest.raises(SchemaDriftError, match=re.escape(f"from {old_name} to {new_name}")) as raised:
        copy.merge_deduped(pa.table(values), ["id"], None, source_version=2)
    with pytest.raises(SchemaDriftError):
        copy.replace(pa.table(values), ["p1"], source_version=2)

    assert raised.value.column == column
    assert copy.version() == version
    assert landed(copy.table_uri, "id", "qty") == [(1, Decimal("1.5"))]


def test_timestamp_and_timestamp_ntz_do_not_mix(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "events"), partitioned=False)
    copy.append_new(pa.table({"at": pa.array([0], pa.timestamp("us", tz="UTC"))}), None, source_version=1)

    with pytest.raises(SchemaDriftError, match="from timestamp to timestamp_ntz"):
        copy.append_new(pa.table({"at": pa.array([1], pa.timestamp("us"))}), None, source_version=2)


def test_a_safe_widening_widens_the_copy(tmp_path: Path) -> None:
    copy = usage(tmp_path)

    copy.merge_deduped(
        pa.table(
            {
                "id": pa.array([2**40], pa.int64()),
                "qty": pa.array([Decimal(3)], pa.decimal128(24, 6)),
                PARTITION: ["p1"],
            }
        ),
        ["id"],
        None,
        source_version=2,
    )

    schema = copy.schema()
    assert schema is not None
    assert (schema.field("id").type, schema.field("qty").type) == (pa.int64(), pa.decimal128(24, 6))
    assert landed(copy.table_uri, "id", "qty") == [(1, Decimal("1.5")), (2**40, Decimal(3))]

"""What the copy tells the sync engine: high-water marks per partition, and app transaction versions."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from zenskar_pipeline.destinations import AppTransaction, DeltaDestination

from .rows import at, events


def test_high_water_marks_per_partition_in_one_scan(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    assert copy.high_water_marks("updated_at", ["2026-01-01"]) == {"2026-01-01": None}
    copy.append_new(
        events(
            [
                (1, "a", None, at(1, 3)),
                (2, "b", None, at(1, 9)),
                (3, "c", None, at(2, 1)),
                (4, "d", None, at(3)),
            ]
        ),
        ["event_id", "updated_at"],
        source_version=1,
    )
    copy.append_new(
        events([(5, "e", None, None, "2026-01-03")]), ["event_id", "updated_at"], source_version=2
    )

    assert copy.high_water_marks("updated_at", ["2026-01-01", "2026-01-02", "2026-01-04"]) == {
        "2026-01-01": at(1, 9),
        "2026-01-02": at(2, 1),
        "2026-01-04": None,
    }
    assert copy.high_water_marks("updated_at") == {
        "2026-01-01": at(1, 9),
        "2026-01-02": at(2, 1),
        "2026-01-03": at(3),
    }


def test_an_unpartitioned_copy_has_one_mark(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "plans"), partitioned=False)
    assert copy.high_water_marks("seq") == {None: None}

    copy.merge_deduped(pa.table({"id": [1, 2], "seq": [40, 12]}), ["id"], "seq", source_version=1)

    assert copy.high_water_marks("seq") == {None: 40}


def test_an_app_transaction_commits_with_the_data(tmp_path: Path) -> None:
    copy = DeltaDestination(str(tmp_path / "usage"), partitioned=True)
    app = "zenskar-pipeline:main.billing.usage"
    assert copy.transaction_version(app) is None

    copy.replace(
        events([(1, "a", None, at(1))]), None, source_version=7, app_transaction=AppTransaction(app, 7)
    )
    assert copy.transaction_version(app) == 7
    copy.merge_deduped(
        events([(1, "b", None, at(1, 1))]),
        ["event_id"],
        "updated_at",
        source_version=9,
        app_transaction=AppTransaction(app, 9),
    )
    assert copy.transaction_version(app) == 9
    with pytest.raises(ValueError, match="not written by a key-less append"):
        copy.append_new(events([(2, "c", None, at(1))]), None, source_version=11)
    copy.append_new(
        events([(2, "c", None, at(1))]),
        ["event_id"],
        source_version=11,
        app_transaction=AppTransaction(app, 11),
    )
    assert copy.transaction_version(app) == 11
    assert copy.transaction_version("someone-else") is None
